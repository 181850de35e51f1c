/* SPDX-License-Identifier: Apache-2.0 */
/* kiloml runtime: log mel filterbank energies (MFE) and MFCCs of a channel of a
 * window, frame by frame: frame_length samples every frame_stride, times the window
 * function, zero-padded to fft_length, power spectrum, triangular mel filters, natural
 * logarithm of max(energy, floor) (kml_logf), and for MFCC an orthonormal DCT-II
 * keeping n_coefficients. Output frame-major: [frame][value], which is also the
 * [time][frequency] image a CNN takes. kiloml/dsp/mfcc.py mirrors it. */
#ifndef KML_MFCC_H
#define KML_MFCC_H

#include <stdint.h>

#include "kml_fft.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    const kml_rfft_t *rfft;
    int32_t frame_length;
    int32_t frame_stride;
    int32_t n_frames;
    const float *window_function; /* [frame_length] */
    int32_t n_filters;
    const uint16_t *filter_first_bin; /* [n_filters] */
    const uint16_t *filter_offset;    /* [n_filters + 1] into filter_weights */
    const float *filter_weights;
    float floor;
    int32_t n_coefficients; /* 0: MFE (log energies) */
    const float *dct;       /* [n_coefficients][n_filters] */
} kml_mfcc_t;

/* One channel: window points at its sample in row 0 of a ring of `rows` rows, `stride`
 * floats apart, whose oldest row is start_row. Output [n_frames][values].
 * scratch: fft_length + fft_length / 2 + 1 + n_filters floats. */
void kml_mfcc(const kml_mfcc_t *m, const float *window, int32_t rows, int32_t stride,
              int32_t start_row, float *scratch, float *out);

/* One frame of one signal (frame_length contiguous samples), for benchmarks and tests. */
void kml_mfcc_frame(const kml_mfcc_t *m, const float *samples, int32_t stride, float *scratch,
                    float *out);

#ifdef __cplusplus
}
#endif

#endif
