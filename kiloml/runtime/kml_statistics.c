/* kiloml runtime: per-channel window statistics. See kml_statistics.h. */
#include "kml_statistics.h"

#include <float.h>
#include <math.h>

void kml_statistics(const float *window, int32_t rows, int32_t channels, int32_t start_row,
                    uint32_t stat_mask, float *out)
{
    const float n = (float)rows;
    int32_t c;
    for (c = 0; c < channels; ++c) {
        float sum = 0.0f, sum_sq = 0.0f, first, lo, hi, mean, prev_x = 0.0f, prev_d = 0.0f;
        float s2 = 0.0f, s3 = 0.0f, s4 = 0.0f, m2, m3, m4, std_dev, den;
        int32_t zero_crossings = 0, mean_crossings = 0, t, r;
        float stat[KML_STAT_COUNT];
        uint32_t k;

        first = lo = hi = window[start_row * channels + c];
        for (t = 0, r = start_row; t < rows; ++t) {
            const float x = window[r * channels + c];
            sum += x - first; /* keeps a constant channel's mean exact */
            sum_sq += x * x;
            lo = (x < lo) ? x : lo;
            hi = (x > hi) ? x : hi;
            if (++r == rows) {
                r = 0;
            }
        }
        mean = first + sum / n;
        for (t = 0, r = start_row; t < rows; ++t) {
            const float x = window[r * channels + c];
            const float d = x - mean;
            const float d2 = d * d;
            s2 += d2;
            s3 += d2 * d;
            s4 += d2 * d2;
            if (t > 0) {
                zero_crossings += ((x >= 0.0f) != (prev_x >= 0.0f));
                mean_crossings += ((d >= 0.0f) != (prev_d >= 0.0f));
            }
            prev_x = x;
            prev_d = d;
            if (++r == rows) {
                r = 0;
            }
        }
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
