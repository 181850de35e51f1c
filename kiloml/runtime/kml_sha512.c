/* SPDX-License-Identifier: Apache-2.0 */
/* kiloml runtime: SHA-512 (FIPS 180-4, section 6.4). Integer only: uint64_t arithmetic,
 * which a 32-bit core does in register pairs. The message schedule is kept as a rolling
 * window of 16 words (128 bytes of stack, not 640), and words are read and written
 * big-endian byte by byte, so the code is the same on every target. */
#include "kml_fp.h" /* first: kiloml's build rules (no float here) */

#include "kml_sha512.h"

#include <string.h> /* memcpy, memset */

/* first 64 bits of the fractional parts of the cube roots of the first 80 primes */
static const uint64_t kml_sha512_k[80] = {
    UINT64_C(0x428a2f98d728ae22), UINT64_C(0x7137449123ef65cd), UINT64_C(0xb5c0fbcfec4d3b2f),
    UINT64_C(0xe9b5dba58189dbbc), UINT64_C(0x3956c25bf348b538), UINT64_C(0x59f111f1b605d019),
    UINT64_C(0x923f82a4af194f9b), UINT64_C(0xab1c5ed5da6d8118), UINT64_C(0xd807aa98a3030242),
    UINT64_C(0x12835b0145706fbe), UINT64_C(0x243185be4ee4b28c), UINT64_C(0x550c7dc3d5ffb4e2),
    UINT64_C(0x72be5d74f27b896f), UINT64_C(0x80deb1fe3b1696b1), UINT64_C(0x9bdc06a725c71235),
    UINT64_C(0xc19bf174cf692694), UINT64_C(0xe49b69c19ef14ad2), UINT64_C(0xefbe4786384f25e3),
    UINT64_C(0x0fc19dc68b8cd5b5), UINT64_C(0x240ca1cc77ac9c65), UINT64_C(0x2de92c6f592b0275),
    UINT64_C(0x4a7484aa6ea6e483), UINT64_C(0x5cb0a9dcbd41fbd4), UINT64_C(0x76f988da831153b5),
    UINT64_C(0x983e5152ee66dfab), UINT64_C(0xa831c66d2db43210), UINT64_C(0xb00327c898fb213f),
    UINT64_C(0xbf597fc7beef0ee4), UINT64_C(0xc6e00bf33da88fc2), UINT64_C(0xd5a79147930aa725),
    UINT64_C(0x06ca6351e003826f), UINT64_C(0x142929670a0e6e70), UINT64_C(0x27b70a8546d22ffc),
    UINT64_C(0x2e1b21385c26c926), UINT64_C(0x4d2c6dfc5ac42aed), UINT64_C(0x53380d139d95b3df),
    UINT64_C(0x650a73548baf63de), UINT64_C(0x766a0abb3c77b2a8), UINT64_C(0x81c2c92e47edaee6),
    UINT64_C(0x92722c851482353b), UINT64_C(0xa2bfe8a14cf10364), UINT64_C(0xa81a664bbc423001),
    UINT64_C(0xc24b8b70d0f89791), UINT64_C(0xc76c51a30654be30), UINT64_C(0xd192e819d6ef5218),
    UINT64_C(0xd69906245565a910), UINT64_C(0xf40e35855771202a), UINT64_C(0x106aa07032bbd1b8),
    UINT64_C(0x19a4c116b8d2d0c8), UINT64_C(0x1e376c085141ab53), UINT64_C(0x2748774cdf8eeb99),
    UINT64_C(0x34b0bcb5e19b48a8), UINT64_C(0x391c0cb3c5c95a63), UINT64_C(0x4ed8aa4ae3418acb),
    UINT64_C(0x5b9cca4f7763e373), UINT64_C(0x682e6ff3d6b2b8a3), UINT64_C(0x748f82ee5defb2fc),
    UINT64_C(0x78a5636f43172f60), UINT64_C(0x84c87814a1f0ab72), UINT64_C(0x8cc702081a6439ec),
    UINT64_C(0x90befffa23631e28), UINT64_C(0xa4506cebde82bde9), UINT64_C(0xbef9a3f7b2c67915),
    UINT64_C(0xc67178f2e372532b), UINT64_C(0xca273eceea26619c), UINT64_C(0xd186b8c721c0c207),
    UINT64_C(0xeada7dd6cde0eb1e), UINT64_C(0xf57d4f7fee6ed178), UINT64_C(0x06f067aa72176fba),
    UINT64_C(0x0a637dc5a2c898a6), UINT64_C(0x113f9804bef90dae), UINT64_C(0x1b710b35131c471b),
    UINT64_C(0x28db77f523047d84), UINT64_C(0x32caab7b40c72493), UINT64_C(0x3c9ebe0a15c9bebc),
    UINT64_C(0x431d67c49c100d4c), UINT64_C(0x4cc5d4becb3e42b6), UINT64_C(0x597f299cfc657e2a),
    UINT64_C(0x5fcb6fab3ad6faec), UINT64_C(0x6c44198c4a475817)};

/* n in 1..63 only (a shift by 64 would be undefined) */
#define KML_ROR64(x, n) (((x) >> (n)) | ((x) << (64 - (n))))

static uint64_t kml_sha512_load(const uint8_t *p)
{
    uint64_t v = 0;
    uint32_t i;
    for (i = 0; i < 8; ++i) {
        v = (v << 8) | p[i];
    }
    return v;
}

static void kml_sha512_store(uint8_t *p, uint64_t v)
{
    uint32_t i;
    for (i = 8; i-- > 0;) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

/* One 128-byte block into the state. Rounds t >= 16 extend the schedule in place:
 * w[t & 15] still holds W[t-16] when W[t] overwrites it. */
static void kml_sha512_block(uint64_t state[8], const uint8_t *p)
{
    uint64_t w[16], a, b, c, d, e, f, g, h, t1, t2;
    uint32_t t;
    for (t = 0; t < 16; ++t) {
        w[t] = kml_sha512_load(p + 8u * t);
    }
    a = state[0];
    b = state[1];
    c = state[2];
    d = state[3];
    e = state[4];
    f = state[5];
    g = state[6];
    h = state[7];
    for (t = 0; t < 80; ++t) {
        if (t >= 16) {
            const uint64_t w15 = w[(t - 15) & 15], w2 = w[(t - 2) & 15];
            w[t & 15] += (KML_ROR64(w2, 19) ^ KML_ROR64(w2, 61) ^ (w2 >> 6)) + w[(t - 7) & 15] +
                         (KML_ROR64(w15, 1) ^ KML_ROR64(w15, 8) ^ (w15 >> 7));
        }
        t1 = h + (KML_ROR64(e, 14) ^ KML_ROR64(e, 18) ^ KML_ROR64(e, 41)) + ((e & f) ^ (~e & g)) +
             kml_sha512_k[t] + w[t & 15];
        t2 = (KML_ROR64(a, 28) ^ KML_ROR64(a, 34) ^ KML_ROR64(a, 39)) +
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

void kml_sha512_init(kml_sha512_ctx *c)
{
    /* first 64 bits of the fractional parts of the square roots of the first 8 primes */
    static const uint64_t iv[8] = {
        UINT64_C(0x6a09e667f3bcc908), UINT64_C(0xbb67ae8584caa73b),
        UINT64_C(0x3c6ef372fe94f82b), UINT64_C(0xa54ff53a5f1d36f1),
        UINT64_C(0x510e527fade682d1), UINT64_C(0x9b05688c2b3e6c1f),
        UINT64_C(0x1f83d9abfb41bd6b), UINT64_C(0x5be0cd19137e2179)};
    memcpy(c->state, iv, sizeof iv);
    c->bytes = 0;
    c->fill = 0;
}

void kml_sha512_update(kml_sha512_ctx *c, const uint8_t *data, uint32_t n)
{
    if (n == 0) { /* data may be NULL: no memcpy from it, no arithmetic on it */
        return;
    }
    c->bytes += n;
    if (c->fill != 0) { /* top up the waiting block first */
        uint32_t take = 128u - c->fill;
        if (take > n) {
            take = n;
        }
        memcpy(c->block + c->fill, data, take);
        c->fill += take;
        data += take;
        n -= take;
        if (c->fill < 128u) {
            return;
        }
        kml_sha512_block(c->state, c->block);
        c->fill = 0;
    }
    for (; n >= 128u; n -= 128u, data += 128) { /* whole blocks straight from the input */
        kml_sha512_block(c->state, data);
    }
    if (n != 0) {
        memcpy(c->block, data, n);
        c->fill = n;
    }
}

void kml_sha512_final(kml_sha512_ctx *c, uint8_t out[KML_SHA512_BYTES])
{
    uint32_t i;
    /* padding: 0x80, zeros to 112 mod 128, the 128-bit bit length big-endian */
    c->block[c->fill++] = 0x80u;
    if (c->fill > 112u) {
        memset(c->block + c->fill, 0, 128u - c->fill);
        kml_sha512_block(c->state, c->block);
        c->fill = 0;
    }
    memset(c->block + c->fill, 0, 112u - c->fill);
    kml_sha512_store(c->block + 112, c->bytes >> 61); /* the bits above 2^64 */
    kml_sha512_store(c->block + 120, c->bytes << 3);
    kml_sha512_block(c->state, c->block);
    for (i = 0; i < 8; ++i) {
        kml_sha512_store(out + 8u * i, c->state[i]);
    }
    memset(c, 0, sizeof *c);
}

void kml_sha512(const uint8_t *data, uint32_t n, uint8_t out[KML_SHA512_BYTES])
{
    kml_sha512_ctx c;
    kml_sha512_init(&c);
    kml_sha512_update(&c, data, n);
    kml_sha512_final(&c, out);
}
