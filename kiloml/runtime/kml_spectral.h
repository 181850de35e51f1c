/* SPDX-License-Identifier: Apache-2.0 */
/* kiloml runtime: spectral features of one channel of a window.
 *
 * The window is cut into frames of fft_length samples every fft_length / 2 samples;
 * each frame is multiplied by the window function, transformed (kml_rfft) and its
 * power spectrum averaged over frames and scaled by power_scale. From the averaged
 * spectrum P[0 .. n/2], per channel and in this order: band energies (sums of P over
 * bins [edge[b], edge[b+1])), the n_peaks highest local maxima (frequency in Hz,
 * height; missing peaks give 0 Hz and the floor), the centroid (Hz), the normalised
 * entropy and the flatness. With `log`, band energies and peak heights are natural
 * logarithms (kml_logf) of max(value, floor). One channel per call.
 * kiloml/dsp/spectral.py mirrors it. */
#ifndef KML_SPECTRAL_H
#define KML_SPECTRAL_H

#include <stdint.h>

#include "kml_fft.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KML_SPECTRAL_BANDS (1u << 0)
#define KML_SPECTRAL_PEAKS (1u << 1)
#define KML_SPECTRAL_CENTROID (1u << 2)
#define KML_SPECTRAL_ENTROPY (1u << 3)
#define KML_SPECTRAL_FLATNESS (1u << 4)
#define KML_SPECTRAL_LOG (1u << 5)

typedef struct {
    const kml_rfft_t *rfft;
    const float *window_function; /* [fft_length] */
    float power_scale;            /* 1 / (frames * sum of squared window) */
    float hz_per_bin;
    float floor;                  /* smallest power taken (before a logarithm) */
    float inv_log_bins;           /* 1 / ln(fft_length / 2 + 1) */
    uint32_t what;                /* KML_SPECTRAL_* */
    int32_t n_bands;
    const uint16_t *band_edges;   /* [n_bands + 1] bins */
    int32_t n_peaks;
} kml_spectral_t;

/* Features of one channel: window points at its sample in row 0 of a ring of `rows`
 * rows, `stride` floats apart, whose oldest row is start_row.
 * scratch: fft_length + fft_length / 2 + 1 + 2 * n_peaks floats. */
void kml_spectral(const kml_spectral_t *s, const float *window, int32_t rows, int32_t stride,
                  int32_t start_row, float *scratch, float *out);

#ifdef __cplusplus
}
#endif

#endif
