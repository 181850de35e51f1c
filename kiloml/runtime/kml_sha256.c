/* SPDX-License-Identifier: Apache-2.0 */
/* kiloml runtime: SHA-256 (FIPS 180-4, section 6.2). Integer only. The message schedule
 * is kept as a rolling window of 16 words (64 bytes of stack, not 256), and words are
 * read and written big-endian byte by byte, so the code is the same on every target. */
#include "kml_fp.h" /* first: kiloml's build rules (no float here) */

#include "kml_sha256.h"

#include <string.h> /* memcpy, memset */

/* first 32 bits of the fractional parts of the cube roots of the first 64 primes */
static const uint32_t kml_sha256_k[64] = {
    0x428a2f98u, 0x71374491u, 0xb5c0fbcfu, 0xe9b5dba5u, 0x3956c25bu, 0x59f111f1u,
    0x923f82a4u, 0xab1c5ed5u, 0xd807aa98u, 0x12835b01u, 0x243185beu, 0x550c7dc3u,
    0x72be5d74u, 0x80deb1feu, 0x9bdc06a7u, 0xc19bf174u, 0xe49b69c1u, 0xefbe4786u,
    0x0fc19dc6u, 0x240ca1ccu, 0x2de92c6fu, 0x4a7484aau, 0x5cb0a9dcu, 0x76f988dau,
    0x983e5152u, 0xa831c66du, 0xb00327c8u, 0xbf597fc7u, 0xc6e00bf3u, 0xd5a79147u,
    0x06ca6351u, 0x14292967u, 0x27b70a85u, 0x2e1b2138u, 0x4d2c6dfcu, 0x53380d13u,
    0x650a7354u, 0x766a0abbu, 0x81c2c92eu, 0x92722c85u, 0xa2bfe8a1u, 0xa81a664bu,
    0xc24b8b70u, 0xc76c51a3u, 0xd192e819u, 0xd6990624u, 0xf40e3585u, 0x106aa070u,
    0x19a4c116u, 0x1e376c08u, 0x2748774cu, 0x34b0bcb5u, 0x391c0cb3u, 0x4ed8aa4au,
    0x5b9cca4fu, 0x682e6ff3u, 0x748f82eeu, 0x78a5636fu, 0x84c87814u, 0x8cc70208u,
    0x90befffau, 0xa4506cebu, 0xbef9a3f7u, 0xc67178f2u};

/* n in 1..31 only (a shift by 32 would be undefined) */
#define KML_ROR32(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static uint32_t kml_sha256_load(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) |
           (uint32_t)p[3];
}

static void kml_sha256_store(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* One 64-byte block into the state. Rounds t >= 16 extend the schedule in place:
 * w[t & 15] still holds W[t-16] when W[t] overwrites it. */
static void kml_sha256_block(uint32_t state[8], const uint8_t *p)
{
    uint32_t w[16], a, b, c, d, e, f, g, h, t1, t2;
    uint32_t t;
    for (t = 0; t < 16; ++t) {
        w[t] = kml_sha256_load(p + 4u * t);
    }
    a = state[0];
    b = state[1];
    c = state[2];
    d = state[3];
    e = state[4];
    f = state[5];
    g = state[6];
    h = state[7];
    for (t = 0; t < 64; ++t) {
        if (t >= 16) {
            const uint32_t w15 = w[(t - 15) & 15], w2 = w[(t - 2) & 15];
            w[t & 15] += (KML_ROR32(w2, 17) ^ KML_ROR32(w2, 19) ^ (w2 >> 10)) + w[(t - 7) & 15] +
                         (KML_ROR32(w15, 7) ^ KML_ROR32(w15, 18) ^ (w15 >> 3));
        }
        t1 = h + (KML_ROR32(e, 6) ^ KML_ROR32(e, 11) ^ KML_ROR32(e, 25)) + ((e & f) ^ (~e & g)) +
             kml_sha256_k[t] + w[t & 15];
        t2 = (KML_ROR32(a, 2) ^ KML_ROR32(a, 13) ^ KML_ROR32(a, 22)) +
             ((a & b) ^ (a & c) ^ (b & c));
        h = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    state[0] += a;
    state[1] += b;
    state[2] += c;
    state[3] += d;
    state[4] += e;
    state[5] += f;
    state[6] += g;
    state[7] += h;
}

void kml_sha256_init(kml_sha256_ctx *c)
{
    /* first 32 bits of the fractional parts of the square roots of the first 8 primes */
    static const uint32_t iv[8] = {0x6a09e667u, 0xbb67ae85u, 0x3c6ef372u, 0xa54ff53au,
                                   0x510e527fu, 0x9b05688cu, 0x1f83d9abu, 0x5be0cd19u};
    memcpy(c->state, iv, sizeof iv);
    c->bytes = 0;
    c->fill = 0;
}

void kml_sha256_update(kml_sha256_ctx *c, const uint8_t *data, uint32_t n)
{
    if (n == 0) { /* data may be NULL: no memcpy from it, no arithmetic on it */
        return;
    }
    c->bytes += n;
    if (c->fill != 0) { /* top up the waiting block first */
        uint32_t take = 64u - c->fill;
        if (take > n) {
            take = n;
        }
        memcpy(c->block + c->fill, data, take);
        c->fill += take;
        data += take;
        n -= take;
        if (c->fill < 64u) {
            return;
        }
        kml_sha256_block(c->state, c->block);
        c->fill = 0;
    }
    for (; n >= 64u; n -= 64u, data += 64) { /* whole blocks straight from the input */
        kml_sha256_block(c->state, data);
    }
    if (n != 0) {
        memcpy(c->block, data, n);
        c->fill = n;
    }
}

void kml_sha256_final(kml_sha256_ctx *c, uint8_t out[KML_SHA256_BYTES])
{
    const uint64_t bits = c->bytes << 3; /* the length mod 2^64, as FIPS 180-4 says */
    uint32_t i;
    /* padding: 0x80, zeros to 56 mod 64, the bit length big-endian in the last 8 bytes */
    c->block[c->fill++] = 0x80u;
    if (c->fill > 56u) {
        memset(c->block + c->fill, 0, 64u - c->fill);
        kml_sha256_block(c->state, c->block);
        c->fill = 0;
    }
    memset(c->block + c->fill, 0, 56u - c->fill);
    kml_sha256_store(c->block + 56, (uint32_t)(bits >> 32));
    kml_sha256_store(c->block + 60, (uint32_t)bits);
    kml_sha256_block(c->state, c->block);
    for (i = 0; i < 8; ++i) {
        kml_sha256_store(out + 4u * i, c->state[i]);
    }
    memset(c, 0, sizeof *c);
}

void kml_sha256(const uint8_t *data, uint32_t n, uint8_t out[KML_SHA256_BYTES])
{
    kml_sha256_ctx c;
    kml_sha256_init(&c);
    kml_sha256_update(&c, data, n);
    kml_sha256_final(&c, out);
}
