/* SPDX-License-Identifier: Apache-2.0 */
/* kiloml runtime: real FFT of power-of-two length N (16 ... 4096), float32, in place.
 *
 * The N real inputs are read as N/2 complex values z[n] = x[2n] + i x[2n+1]; a
 * complex FFT of N/2 points (bit reversal, then radix-2 stages fused in pairs)
 * is followed by the split that yields the spectrum of the real signal. Output,
 * packed as CMSIS-DSP's arm_rfft_fast_f32: data[0] = X[0], data[1] = X[N/2] (both
 * real), data[2k], data[2k+1] = Re, Im of X[k] for 0 < k < N/2. X[k] is the plain
 * DFT sum_n x[n] e^(-2 pi i k n / N) (no scaling).
 *
 * The twiddles and the bit-reversal table are generated per length into flash
 * (kiloml/dsp/fft.py); the Python reference performs the same float32 operations
 * in the same order, so the outputs agree bit for bit.
 */
#ifndef KML_FFT_H
#define KML_FFT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int32_t n;                    /* real length N */
    int32_t n_swaps;              /* bit-reversal swaps of the N/2 complex values */
    const uint16_t *swaps;        /* [2 * n_swaps] pairs of complex indices */
    const float *stage_twiddles;  /* per fused pass with span h: h x (w1 re, im, w2 re, im) */
    const float *split_twiddles;  /* for k = 1 .. N/4: 0.5 * W_N^k (re, im) */
} kml_rfft_t;

/* Real FFT of data[0 .. n-1] in place (packed output, see above). */
void kml_rfft(const kml_rfft_t *plan, float *data);

/* Power spectrum |X[k]|^2 for k = 0 .. N/2 (N/2 + 1 values) from kml_rfft's output. */
void kml_rfft_power(int32_t n, const float *spectrum, float *power);

#ifdef __cplusplus
}
#endif

#endif
