/* SPDX-License-Identifier: Apache-2.0 */
/* kiloml runtime: MFE and MFCC. See kml_mfcc.h. */
#include "kml_fp.h" /* first: no float contraction, no fast-math */

#include "kml_mfcc.h"

#include "kml_math.h"

/* samples[i * stride] for i < frame_length, but wrapping around a ring of `rows` rows
 * when ring_rows > 0 (then samples points at the ring's row 0 and `row` is the start). */
static void features_of_frame(const kml_mfcc_t *m, const float *samples, int32_t stride,
                              int32_t ring_rows, int32_t row, float *scratch, float *out)
{
    const int32_t n = m->rfft->n;
    const int32_t bins = n / 2 + 1;
    float *frame = scratch;
    float *power = scratch + n;
    float *energy = power + bins;
    int32_t i, k, f;
    for (i = 0; i < m->frame_length; ++i) {
        frame[i] = samples[row * stride] * m->window_function[i];
        if (++row == ring_rows) {
            row = 0;
        }
    }
    for (; i < n; ++i) {
        frame[i] = 0.0f;
    }
    kml_rfft(m->rfft, frame);
    kml_rfft_power(n, frame, power);
    for (f = 0; f < m->n_filters; ++f) {
        const float *w = m->filter_weights + m->filter_offset[f];
        const float *p = power + m->filter_first_bin[f];
        const int32_t count = m->filter_offset[f + 1] - m->filter_offset[f];
        float e = 0.0f;
        for (k = 0; k < count; ++k) {
            e += w[k] * p[k];
        }
        energy[f] = kml_logf(e < m->floor ? m->floor : e);
    }
    if (m->n_coefficients == 0) {
        for (f = 0; f < m->n_filters; ++f) {
            out[f] = energy[f];
        }
        return;
    }
    for (i = 0; i < m->n_coefficients; ++i) {
        const float *d = m->dct + i * m->n_filters;
        float c = 0.0f;
        for (f = 0; f < m->n_filters; ++f) {
            c += d[f] * energy[f];
        }
        out[i] = c;
    }
}

void kml_mfcc(const kml_mfcc_t *m, const float *window, int32_t rows, int32_t stride,
              int32_t start_row, float *scratch, float *out)
{
    const int32_t per_frame = m->n_coefficients ? m->n_coefficients : m->n_filters;
    int32_t f;
    for (f = 0; f < m->n_frames; ++f) {
        int32_t row = start_row + f * m->frame_stride;
        while (row >= rows) {
            row -= rows;
        }
        features_of_frame(m, window, stride, rows, row, scratch, out);
        out += per_frame;
    }
}

void kml_mfcc_frame(const kml_mfcc_t *m, const float *samples, int32_t stride, float *scratch,
                    float *out)
{
    features_of_frame(m, samples, stride, 0, 0, scratch, out);
}
