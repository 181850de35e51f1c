/* SPDX-License-Identifier: Apache-2.0 */
/* kiloml runtime: per-sample preprocessing with state that carries across samples:
 * IIR filters as cascades of second-order sections, pre-emphasis, decimation.
 * The Python reference (kiloml/dsp/filters.py) performs the same float32 operations
 * in the same order, so every output sample agrees bit for bit. */
#ifndef KML_FILTERS_H
#define KML_FILTERS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Second-order sections, direct form II transposed, per section (b0 b1 b2 a1 a2):
 *   y = b0 x + z1;  z1 = b1 x - a1 y + z2;  z2 = b2 x - a2 y */
typedef struct {
    int32_t n_sections;
    int32_t channels;
    const float *coeffs; /* [n_sections][5] */
    float *state;        /* [n_sections][channels][2] */
} kml_sos_t;

void kml_sos_reset(const kml_sos_t *f);
/* One sample of every channel; in and out may be the same array. */
void kml_sos_step(const kml_sos_t *f, const float *in, float *out);

/* y[n] = x[n] - coefficient * x[n-1], with x[-1] = 0. */
typedef struct {
    int32_t channels;
    float coefficient;
    float *previous; /* [channels] */
} kml_preemphasis_t;

void kml_preemphasis_reset(const kml_preemphasis_t *p);
void kml_preemphasis_step(const kml_preemphasis_t *p, const float *in, float *out);

/* Anti-alias low-pass, then every factor-th sample (the first one kept). */
typedef struct {
    int32_t factor;
    kml_sos_t anti_alias;
    int32_t *phase;
} kml_decimator_t;

void kml_decimator_reset(const kml_decimator_t *d);
/* Returns 1 when this input sample yields an output sample (written to out). */
int32_t kml_decimator_step(const kml_decimator_t *d, const float *in, float *out);

#ifdef __cplusplus
}
#endif

#endif
