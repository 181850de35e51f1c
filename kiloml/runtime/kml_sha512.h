/* SPDX-License-Identifier: Apache-2.0 */
/* kml_sha512: SHA-512 (FIPS 180-4), the hash Ed25519 (kml_ed25519) is defined with. No
 * malloc: the caller owns the context (208 bytes on a Cortex-M); the round constants are
 * const (flash); byte order is handled byte by byte, so any endianness works. */
#ifndef KML_SHA512_H
#define KML_SHA512_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KML_SHA512_BYTES 64

typedef struct {
    uint64_t state[8];
    uint64_t bytes;     /* hashed so far: the 128-bit length FIPS 180-4 appends is 8 x this
                         * (a message under 2^64 bytes; a device hashes far less) */
    uint32_t fill;      /* bytes waiting in block (0..127) */
    uint8_t block[128];
} kml_sha512_ctx;

void kml_sha512_init(kml_sha512_ctx *c);
/* n bytes more; data may be NULL when n is 0 */
void kml_sha512_update(kml_sha512_ctx *c, const uint8_t *data, uint32_t n);
/* the digest; the context is left wiped (init it again to reuse it) */
void kml_sha512_final(kml_sha512_ctx *c, uint8_t out[KML_SHA512_BYTES]);
/* init, update, final in one call */
void kml_sha512(const uint8_t *data, uint32_t n, uint8_t out[KML_SHA512_BYTES]);

#ifdef __cplusplus
}
#endif

#endif
