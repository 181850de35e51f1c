/* SPDX-License-Identifier: Apache-2.0 */
/* kiloml runtime: spectral features. See kml_spectral.h. */
#include "kml_fp.h" /* first: no float contraction, no fast-math */

#include "kml_spectral.h"

#include "kml_math.h"

static float floored(float v, float floor)
{
    return v < floor ? floor : v;
}

void kml_spectral(const kml_spectral_t *s, const float *window, int32_t rows, int32_t stride,
                  int32_t start_row, float *scratch, float *out)
{
    const int32_t n = s->rfft->n;
    const int32_t bins = n / 2 + 1;
    const int32_t hop = n / 2;
    const int32_t frames = 1 + (rows - n) / hop;
    float *frame = scratch;
    float *avg = scratch + n;
    float *peak_hz = avg + bins;
    float *peak_height = peak_hz + s->n_peaks;
    int32_t f, i, k, b;
    {
        float total = 0.0f;
        for (k = 0; k < bins; ++k) {
            avg[k] = 0.0f;
        }
        for (f = 0; f < frames; ++f) {
            int32_t r = start_row + f * hop;
            while (r >= rows) {
                r -= rows;
            }
            for (i = 0; i < n; ++i) {
                frame[i] = window[r * stride] * s->window_function[i];
                if (++r == rows) {
                    r = 0;
                }
            }
            kml_rfft(s->rfft, frame);
            avg[0] += frame[0] * frame[0];
            avg[bins - 1] += frame[1] * frame[1];
            for (k = 1; k < bins - 1; ++k) {
                const float re = frame[2 * k], im = frame[2 * k + 1];
                avg[k] += re * re + im * im;
            }
        }
        for (k = 0; k < bins; ++k) {
            avg[k] = avg[k] * s->power_scale;
            total += avg[k];
        }
        if (s->what & KML_SPECTRAL_BANDS) {
            for (b = 0; b < s->n_bands; ++b) {
                float e = 0.0f;
                for (k = s->band_edges[b]; k < s->band_edges[b + 1]; ++k) {
                    e += avg[k];
                }
                *out++ = (s->what & KML_SPECTRAL_LOG) ? kml_logf(floored(e, s->floor)) : e;
            }
        }
        if (s->what & KML_SPECTRAL_PEAKS) {
            int32_t found = 0;
            for (k = 1; k < bins - 1; ++k) {
                const float v = avg[k];
                if (v > avg[k - 1] && v >= avg[k + 1] &&
                    (found < s->n_peaks || v > peak_height[s->n_peaks - 1])) {
                    /* insert, keeping heights descending (earlier bins first on ties) */
                    int32_t j = found < s->n_peaks ? found++ : s->n_peaks - 1;
                    while (j > 0 && v > peak_height[j - 1]) {
                        peak_height[j] = peak_height[j - 1];
                        peak_hz[j] = peak_hz[j - 1];
                        --j;
                    }
                    peak_height[j] = v;
                    peak_hz[j] = (float)k * s->hz_per_bin;
                }
            }
            for (i = 0; i < s->n_peaks; ++i) {
                const float height = i < found ? peak_height[i] : s->floor;
                *out++ = i < found ? peak_hz[i] : 0.0f;
                *out++ = (s->what & KML_SPECTRAL_LOG) ? kml_logf(floored(height, s->floor))
                                                     : height;
            }
        }
        if (s->what & KML_SPECTRAL_CENTROID) {
            float weighted = 0.0f;
            for (k = 0; k < bins; ++k) {
                weighted += ((float)k * s->hz_per_bin) * avg[k];
            }
            *out++ = total > 0.0f ? weighted / total : 0.0f;
        }
        if (s->what & KML_SPECTRAL_ENTROPY) {
            float h = 0.0f;
            if (total > 0.0f) {
                for (k = 0; k < bins; ++k) {
                    if (avg[k] > 0.0f) {
                        const float p = avg[k] / total;
                        h -= p * kml_logf(p);
                    }
                }
            }
            *out++ = h * s->inv_log_bins;
        }
        if (s->what & KML_SPECTRAL_FLATNESS) {
            float log_sum = 0.0f;
            for (k = 0; k < bins; ++k) {
                log_sum += kml_logf(floored(avg[k], s->floor));
            }
            *out++ = kml_expf(log_sum / (float)bins) / floored(total / (float)bins, s->floor);
        }
    }
}
