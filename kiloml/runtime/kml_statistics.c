/* SPDX-License-Identifier: Apache-2.0 */
/* kiloml runtime: per-channel window statistics. See kml_statistics.h. */
#include "kml_fp.h" /* first: no float contraction, no fast-math */

#include "kml_statistics.h"

#include <float.h>
#include <math.h>

/* The ring holds the window as two runs of rows: [start_row, rows) then [0, start_row). */
#define KML_FOR_EACH_SAMPLE(BODY)                                                          \
    do {                                                                                   \
        int32_t run_;                                                                      \
        for (run_ = 0; run_ < 2; ++run_) {                                                 \
            const int32_t from_ = run_ == 0 ? start_row : 0;                               \
            const int32_t to_ = run_ == 0 ? rows : start_row;                              \
            const float *p_ = window + from_ * channels + c;                               \
            int32_t r_;                                                                    \
            for (r_ = from_; r_ < to_; ++r_, p_ += channels) {                             \
                const float x = *p_;                                                       \
                BODY;                                                                      \
            }                                                                              \
        }                                                                                  \
    } while (0)

void kml_statistics(const float *window, int32_t rows, int32_t channels, int32_t start_row,
                    uint32_t stat_mask, float *out)
{
    const float n = (float)rows;
    int32_t c;
    for (c = 0; c < channels; ++c) {
        const float first = window[start_row * channels + c];
        float sum = 0.0f, sum_sq = 0.0f, lo = first, hi = first, mean, first_d;
        float s2 = 0.0f, s3 = 0.0f, s4 = 0.0f, m2, m3, m4, std_dev, den;
        int32_t zero_crossings = 0, mean_crossings = 0, prev_x_sign, prev_d_sign;
        float stat[KML_STAT_COUNT];
        uint32_t k;

        KML_FOR_EACH_SAMPLE({
            sum += x - first; /* keeps a constant channel's mean exact */
            sum_sq += x * x;
            lo = (x < lo) ? x : lo;
            hi = (x > hi) ? x : hi;
        });
        mean = first + sum / n;
        /* Crossings: sign changes between consecutive samples, counted from the first. */
        first_d = first - mean;
        prev_x_sign = first >= 0.0f;
        prev_d_sign = first_d >= 0.0f;
        KML_FOR_EACH_SAMPLE({
            const float d = x - mean;
            const float d2 = d * d;
            const int32_t x_sign = x >= 0.0f;
            const int32_t d_sign = d >= 0.0f;
            s2 += d2;
            s3 += d2 * d;
            s4 += d2 * d2;
            zero_crossings += x_sign ^ prev_x_sign;
            mean_crossings += d_sign ^ prev_d_sign;
            prev_x_sign = x_sign;
            prev_d_sign = d_sign;
        });
        m2 = s2 / n;
        m3 = s3 / n;
        m4 = s4 / n;
        std_dev = sqrtf(m2);
        stat[0] = mean;
        stat[1] = std_dev;
        stat[2] = lo;
        stat[3] = hi;
        stat[4] = sqrtf(sum_sq / n);
        stat[5] = hi - lo;
        stat[6] = (rows > 1) ? (float)zero_crossings / (float)(rows - 1) : 0.0f;
        stat[7] = (rows > 1) ? (float)mean_crossings / (float)(rows - 1) : 0.0f;
        /* A (near-)constant channel has no shape: report 0 rather than 0/0. */
        den = m2 * std_dev;
        stat[8] = (den >= FLT_MIN) ? m3 / den : 0.0f;
        den = m2 * m2;
        stat[9] = (den >= FLT_MIN) ? m4 / den - 3.0f : 0.0f;
        for (k = 0; k < KML_STAT_COUNT; ++k) {
            if (stat_mask & (1u << k)) {
                *out++ = stat[k];
            }
        }
    }
}
