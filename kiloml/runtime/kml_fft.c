/* SPDX-License-Identifier: Apache-2.0 */
/* kiloml runtime: real FFT. See kml_fft.h; kiloml/dsp/fft.py mirrors every operation. */
#include "kml_fp.h" /* first: no float contraction, no fast-math */

#include "kml_fft.h"

static void bit_reverse(const kml_rfft_t *plan, float *x)
{
    const uint16_t *s = plan->swaps;
    int32_t k;
    for (k = 0; k < plan->n_swaps; ++k, s += 2) {
        float *a = x + 2 * s[0];
        float *b = x + 2 * s[1];
        const float re = a[0], im = a[1];
        a[0] = b[0];
        a[1] = b[1];
        b[0] = re;
        b[1] = im;
    }
}

/* Radix-2 stage of span 1: every twiddle is 1. */
static void radix2_span1(float *x, int32_t m)
{
    int32_t i;
    for (i = 0; i < m; i += 2, x += 4) {
        const float ar = x[0], ai = x[1], br = x[2], bi = x[3];
        x[0] = ar + br;
        x[1] = ai + bi;
        x[2] = ar - br;
        x[3] = ai - bi;
    }
}

/* Two radix-2 stages (spans h and 2h) in one pass over groups of 4h values. For
 * index j in a group: stage h multiplies by w1 = W_2h^j, stage 2h by w2 = W_4h^j,
 * and by w2 * (-i) for the odd half. j = 0 has w1 = w2 = 1. */
static void radix2x2(float *x, int32_t m, int32_t h, const float *twiddles)
{
    int32_t g, j;
    for (g = 0; g < m; g += 4 * h) {
        float *p0 = x + 2 * g;
        float *p1 = p0 + 2 * h;
        float *p2 = p1 + 2 * h;
        float *p3 = p2 + 2 * h;
        const float *w = twiddles + 4;
        {
            const float b0r = p0[0] + p1[0], b0i = p0[1] + p1[1];
            const float b1r = p0[0] - p1[0], b1i = p0[1] - p1[1];
            const float b2r = p2[0] + p3[0], b2i = p2[1] + p3[1];
            const float b3r = p2[0] - p3[0], b3i = p2[1] - p3[1];
            p0[0] = b0r + b2r;
            p0[1] = b0i + b2i;
            p2[0] = b0r - b2r;
            p2[1] = b0i - b2i;
            p1[0] = b1r + b3i;
            p1[1] = b1i - b3r;
            p3[0] = b1r - b3i;
            p3[1] = b1i + b3r;
        }
        for (j = 1; j < h; ++j, w += 4) {
            float t, u, b0r, b0i, b1r, b1i, b2r, b2i, b3r, b3i, ur, ui;
            p0 += 2;
            p1 += 2;
            p2 += 2;
            p3 += 2;
            t = w[0] * p1[0] - w[1] * p1[1]; /* t = w1 * a1 */
            u = w[0] * p1[1] + w[1] * p1[0];
            b0r = p0[0] + t;
            b0i = p0[1] + u;
            b1r = p0[0] - t;
            b1i = p0[1] - u;
            t = w[0] * p3[0] - w[1] * p3[1]; /* t = w1 * a3 */
            u = w[0] * p3[1] + w[1] * p3[0];
            b2r = p2[0] + t;
            b2i = p2[1] + u;
            b3r = p2[0] - t;
            b3i = p2[1] - u;
            ur = w[2] * b2r - w[3] * b2i; /* u = w2 * b2 */
            ui = w[2] * b2i + w[3] * b2r;
            p0[0] = b0r + ur;
            p0[1] = b0i + ui;
            p2[0] = b0r - ur;
            p2[1] = b0i - ui;
            ur = w[2] * b3r - w[3] * b3i; /* u = w2 * b3, then times -i */
            ui = w[2] * b3i + w[3] * b3r;
            p1[0] = b1r + ui;
            p1[1] = b1i - ur;
            p3[0] = b1r - ui;
            p3[1] = b1i + ur;
        }
    }
}

void kml_rfft(const kml_rfft_t *plan, float *data)
{
    const int32_t m = plan->n / 2;
    const float *tw = plan->stage_twiddles;
    int32_t h = 1, log2m = 0, k;
    while ((1 << log2m) < m) {
        ++log2m;
    }
    bit_reverse(plan, data);
    if (log2m & 1) {
        radix2_span1(data, m);
        h = 2;
    }
    for (; h < m; h *= 4) {
        radix2x2(data, m, h, tw);
        tw += 4 * h;
    }
    /* Split the spectrum of z into that of the real signal. */
    {
        const float z0r = data[0], z0i = data[1];
        const float *sw = plan->split_twiddles;
        data[0] = z0r + z0i;
        data[1] = z0r - z0i;
        for (k = 1; k <= m / 2; ++k, sw += 2) {
            float *a = data + 2 * k;
            float *c = data + 2 * (m - k);
            const float gr = a[0] + c[0], gi = a[1] - c[1];
            const float hr = a[0] - c[0], hi = a[1] + c[1];
            const float pr = sw[0] * hr - sw[1] * hi;
            const float pi = sw[0] * hi + sw[1] * hr;
            const float half_gr = 0.5f * gr, half_gi = 0.5f * gi;
            a[0] = half_gr + pi;
            a[1] = half_gi - pr;
            c[0] = half_gr - pi;
            c[1] = -half_gi - pr;
        }
    }
}

void kml_rfft_power(int32_t n, const float *spectrum, float *power)
{
    const int32_t m = n / 2;
    int32_t k;
    power[0] = spectrum[0] * spectrum[0];
    power[m] = spectrum[1] * spectrum[1];
    for (k = 1; k < m; ++k) {
        const float re = spectrum[2 * k], im = spectrum[2 * k + 1];
        power[k] = re * re + im * im;
    }
}
