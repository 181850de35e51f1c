/* SPDX-License-Identifier: Apache-2.0 */
/* kml_ed25519: Ed25519 signature verification (RFC 8032, pure Ed25519: no context, no
 * prehash), for the check a device makes before it runs a model update. Verification only
 * (a device never signs), on public data: variable time. No malloc, no libm, integer only;
 * code and constants in flash (about 4.9 KB with SHA-512 on a Cortex-M4 at -O2), the
 * working state on the stack (no recursion: about 1 KB; bench/results/crypto.md measures
 * both). Needs kml_sha512.c. */
#ifndef KML_ED25519_H
#define KML_ED25519_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KML_ED25519_SIGNATURE_BYTES 64
#define KML_ED25519_PUBLIC_KEY_BYTES 32

/* 1 when signature (R || S) is a valid signature of the n bytes at message under
 * public_key, 0 otherwise; message may be NULL when n is 0. The decision is OpenSSL's
 * (what Python's `cryptography` wraps; tests/test_kml_crypto.py checks it case by case):
 *   - S must be below the group order L (an S >= L is rejected);
 *   - the key must decode to a curve point; its y is taken mod p (an encoding with
 *     y >= p is read as y - p) and an x of 0 with the sign bit set is accepted, as
 *     OpenSSL does (RFC 8032 5.1.3 would reject both);
 *   - the check is cofactorless: [S]B - [k]A, k = SHA-512(R || key || message) mod L,
 *     encoded, must equal the 32 bytes of R, so an R that is not the canonical
 *     encoding of a point never matches; small-order keys and R are not refused
 *     (the equation decides, as in OpenSSL). */
int32_t kml_ed25519_verify(const uint8_t signature[KML_ED25519_SIGNATURE_BYTES],
                           const uint8_t *message, uint32_t n,
                           const uint8_t public_key[KML_ED25519_PUBLIC_KEY_BYTES]);

#ifdef __cplusplus
}
#endif

#endif
