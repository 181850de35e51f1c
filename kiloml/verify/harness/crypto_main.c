/* SPDX-License-Identifier: Apache-2.0 */
/* kiloml crypto harness: kml_sha256, kml_sha512 and kml_ed25519_verify on cases from the
 * tests (tests/test_kml_crypto.py, through kiloml/blob/crypto_harness.py). Built for the
 * host (-DKML_CRYPTO_HOST: cases on stdin, results on stdout) or for QEMU (semihosting,
 * kml_in.bin -> kml_out.bin; each case's call between kml_bench_begin/kml_bench_end for the
 * instruction counter, its stack depth measured by painting).
 *   in:  per case: uint32 op, uint32 length, length bytes of payload (little-endian):
 *          1 / 2  SHA-256 / SHA-512 of the payload, one call
 *          3 / 4  SHA-256 / SHA-512 in pieces: uint32 k, uint32 size[k], then the data
 *                 (the sizes add up to it): init, k updates, final
 *          5 / 6  SHA-256 / SHA-512 of a payload of any length, streamed through
 *                 updates of STREAM_CHUNK bytes as it is read (host only: not measured)
 *          7      Ed25519: signature[64], public key[32], then the message
 *   out: per case: the digest (32 / 64 bytes) or the verify's int32 result, then uint32
 *        stack bytes the call used (0 on the host, and for ops 5 / 6). */
#include <stdint.h>
#include <string.h>

#include "kml_ed25519.h"
#include "kml_sha256.h"
#include "kml_sha512.h"

#ifndef KML_CRYPTO_MAX_INPUT
#ifdef KML_CRYPTO_HOST
#define KML_CRYPTO_MAX_INPUT (1u << 20)
#else
#define KML_CRYPTO_MAX_INPUT (64u << 10)
#endif
#endif
#define MAX_PIECES 64
#define STREAM_CHUNK 997u /* odd: the streamed updates straddle block boundaries */

#ifdef KML_CRYPTO_HOST
#include <stdio.h>
static int get(void *buf, uint32_t n) { return fread(buf, 1, n, stdin) == n ? 0 : 1; }
static int put(const void *buf, uint32_t n)
{
    return fwrite(buf, 1, n, stdout) == n ? 0 : 1;
}
/* the host has no painted stack and no instruction counter */
#define MEASURED(call, stack) \
    do {                      \
        call;                 \
        (stack) = 0;          \
    } while (0)
#else
#include "measure.h"
#include "semihost.h"
static int32_t in_h, out_h;
static int get(void *buf, uint32_t n) { return n == 0 ? 0 : sh_read(in_h, buf, n); }
static int put(const void *buf, uint32_t n) { return sh_write(out_h, buf, n); }
#define MEASURED(call, stack) KML_MEASURE(call, stack)
#endif

static uint8_t input[KML_CRYPTO_MAX_INPUT];
static uint32_t pieces[MAX_PIECES];

typedef struct {
    uint32_t op, n, k;
    const uint8_t *data;
    uint8_t out[KML_SHA512_BYTES];
    int32_t verdict;
} crypto_case;

/* one case's call; noinline, so that KML_MEASURE's frame is this one's */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static uint32_t
run_case(crypto_case *c)
{
    uint32_t stack = 0, i;
    if (c->op == 1) {
        MEASURED(kml_sha256(c->data, c->n, c->out), stack);
    } else if (c->op == 2) {
        MEASURED(kml_sha512(c->data, c->n, c->out), stack);
    } else if (c->op == 3) {
        kml_sha256_ctx ctx;
        const uint8_t *p = c->data;
        MEASURED(
            {
                kml_sha256_init(&ctx);
                for (i = 0; i < c->k; p += pieces[i], ++i) {
                    kml_sha256_update(&ctx, p, pieces[i]);
                }
                kml_sha256_final(&ctx, c->out);
            },
            stack);
    } else if (c->op == 4) {
        kml_sha512_ctx ctx;
        const uint8_t *p = c->data;
        MEASURED(
            {
                kml_sha512_init(&ctx);
                for (i = 0; i < c->k; p += pieces[i], ++i) {
                    kml_sha512_update(&ctx, p, pieces[i]);
                }
                kml_sha512_final(&ctx, c->out);
            },
            stack);
    } else {
        MEASURED(c->verdict = kml_ed25519_verify(c->data, c->data + 96, c->n - 96,
                                                 c->data + 64),
                 stack);
    }
    return stack;
}

/* ops 5 / 6: n bytes read and hashed STREAM_CHUNK at a time */
static int run_stream(uint32_t op, uint32_t n, uint8_t *out)
{
    kml_sha256_ctx c256;
    kml_sha512_ctx c512;
    kml_sha256_init(&c256);
    kml_sha512_init(&c512);
    while (n > 0) {
        const uint32_t take = n < STREAM_CHUNK ? n : STREAM_CHUNK;
        if (get(input, take) != 0) {
            return 1;
        }
        if (op == 5) {
            kml_sha256_update(&c256, input, take);
        } else {
            kml_sha512_update(&c512, input, take);
        }
        n -= take;
    }
    if (op == 5) {
        kml_sha256_final(&c256, out);
    } else {
        kml_sha512_final(&c512, out);
    }
    return 0;
}

static int run(void)
{
    uint32_t head[2];
    while (get(head, sizeof head) == 0) {
        crypto_case c;
        uint32_t stack = 0, total = 0, i, bytes;
        c.op = head[0];
        c.n = head[1];
        c.k = 0;
        c.data = input;
        c.verdict = -1;
        if (c.op == 5 || c.op == 6) {
            if (run_stream(c.op, c.n, c.out) != 0) {
                return 1;
            }
        } else {
            if (c.op < 1 || c.op > 7 || c.n > KML_CRYPTO_MAX_INPUT || (c.op == 7 && c.n < 96) ||
                get(input, c.n) != 0) {
                return 1;
            }
            if (c.op == 3 || c.op == 4) { /* the piece sizes lead the payload */
                if (c.n < 4) {
                    return 1;
                }
                memcpy(&c.k, input, 4);
                if (c.k > MAX_PIECES || c.n < 4u + 4u * c.k) {
                    return 1;
                }
                memcpy(pieces, input + 4, 4u * c.k);
                for (i = 0; i < c.k; ++i) {
                    total += pieces[i];
                }
                c.data = input + 4u + 4u * c.k;
                if (total != c.n - 4u - 4u * c.k) {
                    return 1;
                }
            }
            stack = run_case(&c);
        }
        bytes = (c.op & 1u) ? KML_SHA256_BYTES : KML_SHA512_BYTES;
        if (c.op == 7 ? put(&c.verdict, sizeof c.verdict) != 0 : put(c.out, bytes) != 0) {
            return 1;
        }
        if (put(&stack, sizeof stack) != 0) {
            return 1;
        }
    }
    return 0;
}

#ifdef KML_CRYPTO_HOST
int main(void)
{
    const int rc = run();
    return fflush(stdout) == 0 ? rc : 1;
}
#else
int main(void)
{
    int rc;
    in_h = sh_open("kml_in.bin", 1);
    out_h = sh_open("kml_out.bin", 5);
    if (in_h < 0 || out_h < 0) {
        return 1;
    }
    rc = run();
    sh_close(in_h);
    sh_close(out_h);
    return rc;
}
#endif
