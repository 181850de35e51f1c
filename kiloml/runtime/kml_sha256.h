/* SPDX-License-Identifier: Apache-2.0 */
/* kml_sha256: SHA-256 (FIPS 180-4), for the integrity check of a model update on the
 * device. No malloc: the caller owns the context (112 bytes on a Cortex-M); the round constants are
 * const (flash); byte order is handled byte by byte, so any endianness works. */
#ifndef KML_SHA256_H
#define KML_SHA256_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KML_SHA256_BYTES 32

typedef struct {
    uint32_t state[8];
    uint64_t bytes;     /* hashed so far (the length FIPS 180-4 appends, in bytes) */
    uint32_t fill;      /* bytes waiting in block (0..63) */
    uint8_t block[64];
} kml_sha256_ctx;

void kml_sha256_init(kml_sha256_ctx *c);
/* n bytes more; data may be NULL when n is 0 */
void kml_sha256_update(kml_sha256_ctx *c, const uint8_t *data, uint32_t n);
/* the digest; the context is left wiped (init it again to reuse it) */
void kml_sha256_final(kml_sha256_ctx *c, uint8_t out[KML_SHA256_BYTES]);
/* init, update, final in one call */
void kml_sha256(const uint8_t *data, uint32_t n, uint8_t out[KML_SHA256_BYTES]);

#ifdef __cplusplus
}
#endif

#endif
