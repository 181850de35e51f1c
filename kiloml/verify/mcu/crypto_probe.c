/* SPDX-License-Identifier: Apache-2.0 */
/* Size probe of the update checks: a minimal firmware that hashes with kml_sha256
 * (-DKML_PROBE_SHA256: init, update, final), verifies with kml_ed25519_verify
 * (-DKML_PROBE_ED25519, with its SHA-512) or neither (-DKML_PROBE_NOTHING); the difference
 * is what the code costs in flash and static RAM. The inputs come from a volatile buffer,
 * the result goes to one, so nothing folds away. */
#include <stdint.h>

#if defined(KML_PROBE_SHA256)
#include "kml_sha256.h"
#elif defined(KML_PROBE_ED25519)
#include "kml_ed25519.h"
#elif !defined(KML_PROBE_NOTHING)
#error "define KML_PROBE_SHA256, KML_PROBE_ED25519 or KML_PROBE_NOTHING"
#endif

volatile uint8_t probe_in[160];
volatile uint32_t probe_out;

int main(void)
{
    uint8_t in[160], out[32];
    uint32_t i, acc = 0;
    for (i = 0; i < sizeof in; ++i) { /* the same work with and without the code */
        in[i] = probe_in[i];
    }
#if defined(KML_PROBE_SHA256)
    {
        kml_sha256_ctx c;
        kml_sha256_init(&c);
        kml_sha256_update(&c, in, (uint32_t)in[0]);
        kml_sha256_final(&c, out);
    }
#elif defined(KML_PROBE_ED25519)
    for (i = 0; i < sizeof out; ++i) {
        out[i] = 0;
    }
    out[0] = (uint8_t)kml_ed25519_verify(in, in + 96, (uint32_t)in[0] & 63u, in + 64);
#else
    for (i = 0; i < sizeof out; ++i) {
        out[i] = in[i];
    }
#endif
    for (i = 0; i < sizeof out; ++i) {
        acc += out[i];
    }
    probe_out = acc;
    return (int)acc;
}
