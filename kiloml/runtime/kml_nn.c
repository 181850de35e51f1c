/* SPDX-License-Identifier: Apache-2.0 */
/* kiloml runtime: int8 neural-network kernels, bit-exact with TFLM's reference kernels.
 * See kml_nn.h. The Python spec is kiloml/nn/reference.py + fixedpoint.py: every helper
 * below mirrors the gemmlowp / TFLite function of the same name, step for step.
 *
 * Wrap-around: where TFLite adds int32 fixed-point values (gemmlowp's operator+) the
 * Python spec wraps modulo 2^32; kml_add32 / kml_neg32 do the same without signed
 * overflow. Accumulators of products stay plain int32, as in TFLM. */
#include "kml_fp.h" /* first: no float contraction, no fast-math */

#include "kml_nn.h"
#include "kml_nn_internal.h"

#include <limits.h>
#include <math.h>
#include <string.h>

/* Channels handled per pass by the depthwise and pooling kernels (int32 on the stack). */
#define KML_CHUNK 32

/* ---- fixed point ------------------------------------------------------------------ */

static int32_t kml_add32(int32_t a, int32_t b)
{
    return (int32_t)((uint32_t)a + (uint32_t)b);
}

static int32_t kml_neg32(int32_t a)
{
    return (int32_t)(0u - (uint32_t)a);
}

/* gemmlowp SaturatingRoundingMultiplyByPOT<exponent> for exponent in [1, 30]. */
static int32_t kml_sat_shl(int32_t x, int32_t exponent)
{
    const int32_t threshold = (int32_t)((1u << (31 - exponent)) - 1u);
    if (x > threshold) {
        return INT32_MAX;
    }
    if (x < -threshold) {
        return INT32_MIN;
    }
    return (int32_t)((uint32_t)x << exponent);
}

int32_t kml_mbqm(int32_t x, int32_t multiplier, int32_t shift)
{
    return kml_mbqm_inline(x, multiplier, shift);
}

/* ---- gemmlowp transcendental functions (FixedPoint<int32_t, IntegerBits>) ---------- */

/* exp(a) for a in [-1/4, 0) in Q0.31: Taylor expansion around -1/8. */
static int32_t kml_exp_on_interval_between_negative_one_quarter_and_0_excl(int32_t a)
{
    const int32_t constant_term = 1895147668;    /* exp(-1/8) */
    const int32_t constant_1_over_3 = 715827883; /* 1/3 */
    const int32_t x = kml_add32(a, 1 << 28);     /* a + 1/8 */
    const int32_t x2 = kml_srdhm(x, x);
    const int32_t x3 = kml_srdhm(x2, x);
    const int32_t x4 = kml_srdhm(x2, x2);
    const int32_t x4_over_4 = kml_rdbpot(x4, 2);
    const int32_t poly = kml_rdbpot(
        kml_add32(kml_srdhm(kml_add32(x4_over_4, x3), constant_1_over_3), x2), 1);
    return kml_add32(constant_term, kml_srdhm(constant_term, kml_add32(x, poly)));
}

/* gemmlowp exp_on_negative_values: a <= 0 with integer_bits integer bits -> Q0.31. */
static int32_t kml_exp_on_negative_values(int32_t a, int32_t integer_bits)
{
    /* exp(-2^k) in Q0.31 for k = -2..4 (the barrel shifter). */
    static const int32_t barrel[7] = {1672461947, 1302514674, 790015084, 290630308,
                                      39332535,   720401,     242};
    const int32_t fractional_bits = 31 - integer_bits;
    const int32_t one_quarter = (int32_t)1 << (fractional_bits - 2);
    const int32_t a_mod_quarter_minus_one_quarter = kml_add32(a & (one_quarter - 1),
                                                              -one_quarter);
    const int32_t remainder = kml_add32(a_mod_quarter_minus_one_quarter, kml_neg32(a));
    int32_t rescaled = a_mod_quarter_minus_one_quarter; /* Rescale<0> */
    int32_t result, k;
    if (integer_bits > 0) {
        rescaled = kml_sat_shl(rescaled, integer_bits);
    }
    result = kml_exp_on_interval_between_negative_one_quarter_and_0_excl(rescaled);
    for (k = 0; k < 7; ++k) {
        const int32_t exponent = k - 2;
        if (integer_bits > exponent &&
            (remainder & ((int32_t)1 << (fractional_bits + exponent))) != 0) {
            result = kml_srdhm(result, barrel[k]);
        }
    }
    if (integer_bits > 5 && a < -((int32_t)1 << (36 - integer_bits))) {
        result = 0; /* below -32: exp underflows */
    }
    return a == 0 ? INT32_MAX : result;
}

/* gemmlowp RoundingHalfSum for int32 (int64 inside, as in gemmlowp). */
static int32_t kml_rounding_half_sum(int32_t a, int32_t b)
{
    const int64_t sum = (int64_t)a + (int64_t)b;
    return (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2);
}

/* Newton-Raphson core shared by one_over_one_plus_x_for_x_in_0_1 and
 * one_minus_x_over_one_plus_x_for_x_in_0_1: ~1 / ((1 + a) / 2) in Q2.29. */
static int32_t kml_newton_reciprocal(int32_t a)
{
    const int32_t half_denominator = kml_rounding_half_sum(a, INT32_MAX);
    /* Newton-Raphson from 48/17 - 32/17 d, in Q2.29 */
    int32_t x = kml_add32(1515870810, kml_srdhm(half_denominator, -1010580540));
    int32_t i;
    for (i = 0; i < 3; ++i) {
        const int32_t half_denominator_times_x = kml_srdhm(half_denominator, x);
        const int32_t one_minus = kml_add32(1 << 29, kml_neg32(half_denominator_times_x));
        x = kml_add32(x, kml_sat_shl(kml_srdhm(x, one_minus), 2)); /* Rescale<2> of a Q4 */
    }
    return x;
}

/* gemmlowp one_over_one_plus_x_for_x_in_0_1: Rescale<0>(ExactMulByPot<-1>(x)). */
static int32_t kml_one_over_one_plus_x_for_x_in_0_1(int32_t a)
{
    return kml_sat_shl(kml_newton_reciprocal(a), 1);
}

/* gemmlowp one_minus_x_over_one_plus_x_for_x_in_0_1: Rescale<0>(x - 1) from Q2. */
static int32_t kml_one_minus_x_over_one_plus_x_for_x_in_0_1(int32_t a)
{
    return kml_sat_shl(kml_add32(kml_newton_reciprocal(a), -(1 << 29)), 2);
}

/* gemmlowp logistic (logistic_impl for int32) -> Q0.31. */
static int32_t kml_gemmlowp_logistic(int32_t a, int32_t integer_bits)
{
    const int32_t abs_input = a > 0 ? a : kml_neg32(a);
    const int32_t result_if_positive = kml_one_over_one_plus_x_for_x_in_0_1(
        kml_exp_on_negative_values(kml_neg32(abs_input), integer_bits));
    if (a == 0) {
        return 1 << 30; /* one half */
    }
    return a > 0 ? result_if_positive : kml_add32(INT32_MAX, kml_neg32(result_if_positive));
}

/* gemmlowp tanh (tanh_impl for int32) -> Q0.31. */
static int32_t kml_gemmlowp_tanh(int32_t a, int32_t integer_bits)
{
    const int32_t n = a < 0 ? a : kml_neg32(a);
    /* ExactMulByPot<1>: same raw value read with one more integer bit. */
    const int32_t t = kml_one_minus_x_over_one_plus_x_for_x_in_0_1(
        kml_exp_on_negative_values(n, integer_bits + 1));
    if (a == 0) {
        return 0;
    }
    return a < 0 ? kml_neg32(t) : t;
}

static int32_t kml_clz32(uint32_t x)
{
    if (x == 0) {
        return 32;
    }
#if defined(__GNUC__) && UINT_MAX == 0xFFFFFFFFu
    return (int32_t)__builtin_clz(x); /* one instruction (CLZ, BSR) instead of a loop */
#else
    {
        int32_t n = 0;
        while ((x & 0x80000000u) == 0) {
            x <<= 1;
            ++n;
        }
        return n;
    }
#endif
}

/* TFLite GetReciprocal: 1 / x (x with x_integer_digits integer bits) as a Q0.31 scale
 * and a power-of-two exponent. */
static int32_t kml_get_reciprocal(int32_t x, int32_t x_integer_digits,
                                  int32_t *num_bits_over_unit)
{
    const int32_t headroom_plus_one = kml_clz32((uint32_t)x);
    const uint32_t shifted = headroom_plus_one >= 32 ? 0u : (uint32_t)x << headroom_plus_one;
    *num_bits_over_unit = x_integer_digits - headroom_plus_one;
    return kml_one_over_one_plus_x_for_x_in_0_1((int32_t)(shifted - (1u << 31)));
}

/* ---- fully connected: TFLM reference_integer_ops::FullyConnected ---------------------- */

/* sum_i f[i] * (x[i] + in_offset): TFLM's inner loop.
 * Blocks of 16 with a constant trip count are what gcc -O2 (whose cheap cost model only
 * vectorizes loops it can replace whole) turns into SIMD: with x + in_offset narrowed to
 * int16 and int16 x int16 -> int32 products summed, x86 gets PMADDWD (16 MACs in ~30
 * instructions instead of ~130 scalar). Exact: x + in_offset lies in [-255, 255] for the
 * int8 offsets TFLite allows ([-127, 128]; checked, other offsets take the int32 loop),
 * each product in int32, and the sum is the same int32 sum in another order. The rest
 * stays int32 (narrowing the scalar loop slows it on x86). */
#if defined(__GNUC__)
__attribute__((always_inline))
#endif
static inline int32_t kml_dot_s8(const int8_t *f, const int8_t *x, int32_t n, int32_t in_offset)
{
    int32_t acc = 0, i = 0;
#if defined(__SSE2__) || defined(__ARM_NEON) || defined(__aarch64__)
    /* only where the blocks become SIMD: on a scalar core (Cortex-M) they cost more */
    if (in_offset >= -128 && in_offset <= 128) {
        const int16_t off16 = (int16_t)in_offset;
        for (; i + 16 <= n; i += 16) {
            int32_t j, block = 0;
            for (j = 0; j < 16; ++j) {
                const int16_t xo = (int16_t)(x[i + j] + off16);
                block += (int32_t)(int16_t)f[i + j] * xo;
            }
            acc += block;
        }
    }
#endif
    for (; i < n; ++i) {
        acc += (int32_t)f[i] * ((int32_t)x[i] + in_offset);
    }
    return acc;
}

void kml_fc_s8_portable(int32_t rows, int32_t depth, int32_t out_features, const int8_t *in,
                        const int8_t *w, const int32_t *bias, int32_t in_offset,
                        int32_t w_offset, int32_t out_offset, const int32_t *mult,
                        const int32_t *shift, int32_t per_channel, int32_t act_min,
                        int32_t act_max, int8_t *out, int16_t *scratch)
{
    int32_t r, o, d;
    (void)scratch;
    for (r = 0; r < rows; ++r) {
        const int8_t *x = in + r * depth;
        int8_t *y = out + r * out_features;
        /* sum_d (w + w_offset)(x + in_offset) = sum_d w (x + in_offset) + w_offset * x_sum */
        int32_t x_sum = 0;
        if (w_offset != 0) {
            for (d = 0; d < depth; ++d) {
                x_sum += (int32_t)x[d] + in_offset;
            }
        }
        for (o = 0; o < out_features; ++o) {
            const int32_t ch = per_channel ? o : 0;
            int32_t acc = kml_dot_s8(w + o * depth, x, depth, in_offset) + w_offset * x_sum;
            if (bias != NULL) {
                acc += bias[o];
            }
            acc = kml_mbqm_inline(acc, mult[ch], shift[ch]) + out_offset;
            y[o] = (int8_t)kml_clamp32(acc, act_min, act_max);
        }
    }
}

void kml_fc_s8(int32_t rows, int32_t depth, int32_t out_features, const int8_t *in,
               const int8_t *w, const int32_t *bias, int32_t in_offset, int32_t w_offset,
               int32_t out_offset, const int32_t *mult, const int32_t *shift,
               int32_t per_channel, int32_t act_min, int32_t act_max, int8_t *out,
               int16_t *scratch)
{
#if KML_NN_USE_DSP
    kml_fc_s8_dsp(rows, depth, out_features, in, w, bias, in_offset, w_offset, out_offset,
                  mult, shift, per_channel, act_min, act_max, out, scratch);
#else
    kml_fc_s8_portable(rows, depth, out_features, in, w, bias, in_offset, w_offset,
                       out_offset, mult, shift, per_channel, act_min, act_max, out, scratch);
#endif
}

/* ---- convolutions ---------------------------------------------------------------- */

/* TFLM reference_integer_ops::ConvPerChannel (grouped: group = oc / filters_per_group). */
void kml_conv2d_s8_portable(const kml_conv_params *p, const int8_t *in, const int8_t *filter,
                            const int32_t *bias, const int32_t *mult, const int32_t *shift,
                            int8_t *out, int16_t *scratch)
{
    const int32_t cg = p->filter_in_c;
    const int32_t groups = p->in_c / cg;
    const int32_t per_group = p->out_c / groups;
    const int32_t filter_stride = p->k_h * p->k_w * cg; /* one output channel's filter */
    /* Consecutive kx taps are one contiguous run of input and filter when the kx step
     * is one pixel and a pixel holds exactly the group's channels. */
    const int32_t merge_kx = p->dil_w == 1 && groups == 1;
    int32_t b, oy, ox, g, oc, ky, kx;
    (void)scratch;
    for (b = 0; b < p->batches; ++b) {
        const int8_t *in_b = in + b * p->in_h * p->in_w * p->in_c;
        for (oy = 0; oy < p->out_h; ++oy) {
            const int32_t iy0 = oy * p->stride_h - p->pad_h;
            int32_t ky0, ky1;
            kml_valid_taps(iy0, p->dil_h, p->k_h, p->in_h, &ky0, &ky1);
            for (ox = 0; ox < p->out_w; ++ox) {
                const int32_t ix0 = ox * p->stride_w - p->pad_w;
                int32_t kx0, kx1;
                kml_valid_taps(ix0, p->dil_w, p->k_w, p->in_w, &kx0, &kx1);
                for (g = 0; g < groups; ++g) {
                    for (oc = g * per_group; oc < (g + 1) * per_group; ++oc) {
                        const int8_t *f_oc = filter + oc * filter_stride;
                        int32_t acc = 0;
                        for (ky = ky0; ky < ky1; ++ky) {
                            const int8_t *row = in_b + (iy0 + ky * p->dil_h) * p->in_w * p->in_c
                                                + g * cg;
                            const int8_t *f_row = f_oc + ky * p->k_w * cg;
                            if (merge_kx) {
                                acc += kml_dot_s8(f_row + kx0 * cg, row + (ix0 + kx0) * cg,
                                                  (kx1 - kx0) * cg, p->in_offset);
                                continue;
                            }
                            for (kx = kx0; kx < kx1; ++kx) {
                                acc += kml_dot_s8(f_row + kx * cg,
                                                  row + (ix0 + kx * p->dil_w) * p->in_c, cg,
                                                  p->in_offset);
                            }
                        }
                        if (bias != NULL) {
                            acc += bias[oc];
                        }
                        acc = kml_mbqm_inline(acc, mult[oc], shift[oc]) + p->out_offset;
                        *out++ = (int8_t)kml_clamp32(acc, p->act_min, p->act_max);
                    }
                }
            }
        }
    }
}

/* TFLM reference_integer_ops::DepthwiseConvPerChannel: out channel oc = ic * m + j reads
 * input channel ic. Accumulates KML_CHUNK output channels at a time, tap by tap, so the
 * inner loop runs over contiguous channels. */
void kml_dwconv2d_s8_portable(const kml_conv_params *p, const int8_t *in,
                              const int8_t *filter, const int32_t *bias, const int32_t *mult,
                              const int32_t *shift, int8_t *out, int16_t *scratch)
{
    const int32_t m = p->depth_multiplier;
    const int32_t out_c = p->out_c;
    int32_t acc[KML_CHUNK];
    int32_t b, oy, ox, c0, ky, kx, k;
    (void)scratch;
    for (b = 0; b < p->batches; ++b) {
        const int8_t *in_b = in + b * p->in_h * p->in_w * p->in_c;
        for (oy = 0; oy < p->out_h; ++oy) {
            const int32_t iy0 = oy * p->stride_h - p->pad_h;
            int32_t ky0, ky1;
            kml_valid_taps(iy0, p->dil_h, p->k_h, p->in_h, &ky0, &ky1);
            for (ox = 0; ox < p->out_w; ++ox) {
                const int32_t ix0 = ox * p->stride_w - p->pad_w;
                int32_t kx0, kx1;
                kml_valid_taps(ix0, p->dil_w, p->k_w, p->in_w, &kx0, &kx1);
                for (c0 = 0; c0 < out_c; c0 += KML_CHUNK) {
                    const int32_t n = out_c - c0 < KML_CHUNK ? out_c - c0 : KML_CHUNK;
                    for (k = 0; k < n; ++k) {
                        acc[k] = 0;
                    }
                    for (ky = ky0; ky < ky1; ++ky) {
                        const int32_t iy = iy0 + ky * p->dil_h;
                        for (kx = kx0; kx < kx1; ++kx) {
                            const int8_t *x = in_b + (iy * p->in_w + ix0 + kx * p->dil_w)
                                                         * p->in_c;
                            const int8_t *f = filter + (ky * p->k_w + kx) * out_c + c0;
                            if (m == 1) {
                                x += c0;
                                for (k = 0; k < n; ++k) {
                                    acc[k] += (int32_t)f[k] * ((int32_t)x[k] + p->in_offset);
                                }
                            } else {
                                int32_t ic = c0 / m, j = c0 % m; /* once per chunk */
                                for (k = 0; k < n; ++k) {
                                    acc[k] += (int32_t)f[k] * ((int32_t)x[ic] + p->in_offset);
                                    if (++j == m) {
                                        j = 0;
                                        ++ic;
                                    }
                                }
                            }
                        }
                    }
                    for (k = 0; k < n; ++k) {
                        const int32_t oc = c0 + k;
                        int32_t v = acc[k];
                        if (bias != NULL) {
                            v += bias[oc];
                        }
                        v = kml_mbqm_inline(v, mult[oc], shift[oc]) + p->out_offset;
                        out[oc] = (int8_t)kml_clamp32(v, p->act_min, p->act_max);
                    }
                }
                out += out_c;
            }
        }
    }
}

void kml_conv2d_s8(const kml_conv_params *p, const int8_t *in, const int8_t *filter,
                   const int32_t *bias, const int32_t *mult, const int32_t *shift, int8_t *out,
                   int16_t *scratch)
{
#if KML_NN_USE_DSP
    kml_conv2d_s8_dsp(p, in, filter, bias, mult, shift, out, scratch);
#else
    kml_conv2d_s8_portable(p, in, filter, bias, mult, shift, out, scratch);
#endif
}

void kml_dwconv2d_s8(const kml_conv_params *p, const int8_t *in, const int8_t *filter,
                     const int32_t *bias, const int32_t *mult, const int32_t *shift,
                     int8_t *out, int16_t *scratch)
{
#if KML_NN_USE_DSP
    kml_dwconv2d_s8_dsp(p, in, filter, bias, mult, shift, out, scratch);
#else
    kml_dwconv2d_s8_portable(p, in, filter, bias, mult, shift, out, scratch);
#endif
}

/* ---- pooling: TFLM reference_integer_ops::AveragePool / MaxPool -------------------------- */

/* The window of output (oy, ox) clipped to the input, as TFLM computes it. */
static void kml_pool_window(const kml_pool_params *p, int32_t oy, int32_t ox, int32_t *y0,
                            int32_t *y1, int32_t *x0, int32_t *x1)
{
    const int32_t iy = oy * p->stride_h - p->pad_h;
    const int32_t ix = ox * p->stride_w - p->pad_w;
    *y0 = iy > 0 ? iy : 0;
    *y1 = iy + p->f_h < p->in_h ? iy + p->f_h : p->in_h;
    *x0 = ix > 0 ? ix : 0;
    *x1 = ix + p->f_w < p->in_w ? ix + p->f_w : p->in_w;
}

void kml_avgpool_s8(const kml_pool_params *p, const int8_t *in, int8_t *out)
{
    const int32_t channels = p->channels;
    int32_t acc[KML_CHUNK];
    int32_t b, oy, ox, y, x, c0, k;
    for (b = 0; b < p->batches; ++b) {
        const int8_t *in_b = in + b * p->in_h * p->in_w * channels;
        for (oy = 0; oy < p->out_h; ++oy) {
            for (ox = 0; ox < p->out_w; ++ox) {
                int32_t y0, y1, x0, x1, count;
                kml_pool_window(p, oy, ox, &y0, &y1, &x0, &x1);
                count = (y1 > y0 && x1 > x0) ? (y1 - y0) * (x1 - x0) : 0;
                for (c0 = 0; c0 < channels; c0 += KML_CHUNK) {
                    const int32_t n = channels - c0 < KML_CHUNK ? channels - c0 : KML_CHUNK;
                    for (k = 0; k < n; ++k) {
                        acc[k] = 0;
                    }
                    for (y = y0; y < y1; ++y) {
                        for (x = x0; x < x1; ++x) {
                            const int8_t *v = in_b + (y * p->in_w + x) * channels + c0;
                            for (k = 0; k < n; ++k) {
                                acc[k] += v[k];
                            }
                        }
                    }
                    for (k = 0; k < n; ++k) {
                        int32_t v = 0;
                        if (count > 0) { /* TFLM fails on an empty window; never with SAME/VALID */
                            /* Round half away from zero (C division truncates). */
                            v = acc[k] > 0 ? (acc[k] + count / 2) / count
                                           : (acc[k] - count / 2) / count;
                        }
                        out[c0 + k] = (int8_t)kml_clamp32(v, p->act_min, p->act_max);
                    }
                }
                out += channels;
            }
        }
    }
}

void kml_maxpool_s8(const kml_pool_params *p, const int8_t *in, int8_t *out)
{
    const int32_t channels = p->channels;
    int32_t b, oy, ox, y, x, c;
    for (b = 0; b < p->batches; ++b) {
        const int8_t *in_b = in + b * p->in_h * p->in_w * channels;
        for (oy = 0; oy < p->out_h; ++oy) {
            for (ox = 0; ox < p->out_w; ++ox) {
                int32_t y0, y1, x0, x1;
                kml_pool_window(p, oy, ox, &y0, &y1, &x0, &x1);
                for (c = 0; c < channels; ++c) {
                    out[c] = INT8_MIN;
                }
                for (y = y0; y < y1; ++y) {
                    for (x = x0; x < x1; ++x) {
                        const int8_t *v = in_b + (y * p->in_w + x) * channels;
                        for (c = 0; c < channels; ++c) {
                            out[c] = v[c] > out[c] ? v[c] : out[c];
                        }
                    }
                }
                for (c = 0; c < channels; ++c) {
                    out[c] = (int8_t)kml_clamp32(out[c], p->act_min, p->act_max);
                }
                out += channels;
            }
        }
    }
}

/* ---- reductions -------------------------------------------------------------------- */

/* Strides into the row-major output of the kept axes (0 on reduced axes); returns the
 * number of output elements. */
static int32_t kml_reduce_strides(const int32_t dims[4], uint32_t axes_mask,
                                  int32_t strides[4])
{
    int32_t i, n = 1;
    for (i = 3; i >= 0; --i) {
        if (axes_mask & (1u << i)) {
            strides[i] = 0;
        } else {
            strides[i] = n;
            n *= dims[i];
        }
    }
    return n;
}

/* TFLM reference_ops::QuantizedMeanOrSum (the 1/count factor is already in mult/shift). */
void kml_mean_s8(const int8_t *in, const int32_t dims[4], uint32_t axes_mask, int32_t in_zp,
                 int32_t count, int32_t mult, int32_t shift, int32_t out_offset, int8_t *out,
                 int32_t *acc)
{
    int32_t s[4], i0, i1, i2, i3, k;
    const int32_t n_out = kml_reduce_strides(dims, axes_mask, s);
    const int32_t zp_sum = in_zp * count;
    for (k = 0; k < n_out; ++k) {
        acc[k] = 0;
    }
    for (i0 = 0; i0 < dims[0]; ++i0) {
        for (i1 = 0; i1 < dims[1]; ++i1) {
            for (i2 = 0; i2 < dims[2]; ++i2) {
                int32_t *a = acc + i0 * s[0] + i1 * s[1] + i2 * s[2];
                for (i3 = 0; i3 < dims[3]; ++i3) {
                    a[i3 * s[3]] += *in++;
                }
            }
        }
    }
    for (k = 0; k < n_out; ++k) {
        const int32_t v = kml_mbqm_inline(acc[k] - zp_sum, mult, shift) + out_offset;
        out[k] = (int8_t)kml_clamp32(v, INT8_MIN, INT8_MAX);
    }
}

/* TFLM ReduceMax for int8: starts from the lowest int8. */
void kml_reduce_max_s8(const int8_t *in, const int32_t dims[4], uint32_t axes_mask,
                       int8_t *out)
{
    int32_t s[4], i0, i1, i2, i3, k;
    const int32_t n_out = kml_reduce_strides(dims, axes_mask, s);
    for (k = 0; k < n_out; ++k) {
        out[k] = INT8_MIN;
    }
    for (i0 = 0; i0 < dims[0]; ++i0) {
        for (i1 = 0; i1 < dims[1]; ++i1) {
            for (i2 = 0; i2 < dims[2]; ++i2) {
                int8_t *o = out + i0 * s[0] + i1 * s[1] + i2 * s[2];
                for (i3 = 0; i3 < dims[3]; ++i3) {
                    const int8_t v = *in++;
                    if (v > o[i3 * s[3]]) {
                        o[i3 * s[3]] = v;
                    }
                }
            }
        }
    }
}

/* ---- element-wise -------------------------------------------------------------------- */

/* Visits out in row-major order; BODY sees pa, pb (the operands' rows), i3 and o (the
 * output element index). Each element is read before it is written, so out may be a. */
#define KML_BROADCAST4(BODY)                                                              \
    do {                                                                                  \
        const int32_t *d_ = bc->out_dims, *sa_ = bc->a_strides, *sb_ = bc->b_strides;     \
        int32_t i0_, i1_, i2_, i3, o = 0;                                                 \
        for (i0_ = 0; i0_ < d_[0]; ++i0_) {                                               \
            for (i1_ = 0; i1_ < d_[1]; ++i1_) {                                           \
                for (i2_ = 0; i2_ < d_[2]; ++i2_) {                                       \
                    const int8_t *pa = a + i0_ * sa_[0] + i1_ * sa_[1] + i2_ * sa_[2];    \
                    const int8_t *pb = b + i0_ * sb_[0] + i1_ * sb_[1] + i2_ * sb_[2];    \
                    for (i3 = 0; i3 < d_[3]; ++i3, ++o) {                                 \
                        BODY;                                                             \
                    }                                                                     \
                }                                                                         \
            }                                                                             \
        }                                                                                 \
    } while (0)

/* TFLM reference_integer_ops::AddElementwise / BroadcastAdd4DSlow. */
void kml_add_s8(const kml_broadcast4 *bc, const int8_t *a, const int8_t *b, int32_t a_offset,
                int32_t b_offset, int32_t left_shift, int32_t a_mult, int32_t a_shift,
                int32_t b_mult, int32_t b_shift, int32_t out_mult, int32_t out_shift,
                int32_t out_offset, int32_t act_min, int32_t act_max, int8_t *out)
{
    const int32_t as3 = bc->a_strides[3], bs3 = bc->b_strides[3];
    KML_BROADCAST4({
        const int32_t va = (int32_t)((uint32_t)((int32_t)pa[i3 * as3] + a_offset) << left_shift);
        const int32_t vb = (int32_t)((uint32_t)((int32_t)pb[i3 * bs3] + b_offset) << left_shift);
        const int32_t raw = kml_add32(kml_mbqm_inline(va, a_mult, a_shift),
                                      kml_mbqm_inline(vb, b_mult, b_shift));
        const int32_t v = kml_mbqm_inline(raw, out_mult, out_shift) + out_offset;
        out[o] = (int8_t)kml_clamp32(v, act_min, act_max);
    });
}

/* TFLM reference_ops::SubElementwise / BroadcastQuantSubSlow (int8). The difference of
 * two rescaled int8 values is far inside int32; it wraps like the sum in kml_add_s8. */
void kml_sub_s8(const kml_broadcast4 *bc, const int8_t *a, const int8_t *b, int32_t a_offset,
                int32_t b_offset, int32_t left_shift, int32_t a_mult, int32_t a_shift,
                int32_t b_mult, int32_t b_shift, int32_t out_mult, int32_t out_shift,
                int32_t out_offset, int32_t act_min, int32_t act_max, int8_t *out)
{
    const int32_t as3 = bc->a_strides[3], bs3 = bc->b_strides[3];
    KML_BROADCAST4({
        const int32_t va = (int32_t)((uint32_t)((int32_t)pa[i3 * as3] + a_offset) << left_shift);
        const int32_t vb = (int32_t)((uint32_t)((int32_t)pb[i3 * bs3] + b_offset) << left_shift);
        const int32_t raw = kml_add32(kml_mbqm_inline(va, a_mult, a_shift),
                                      kml_neg32(kml_mbqm_inline(vb, b_mult, b_shift)));
        const int32_t v = kml_mbqm_inline(raw, out_mult, out_shift) + out_offset;
        out[o] = (int8_t)kml_clamp32(v, act_min, act_max);
    });
}

/* TFLM reference_integer_ops::MulElementwise / BroadcastMul4DSlow. */
void kml_mul_s8(const kml_broadcast4 *bc, const int8_t *a, const int8_t *b, int32_t a_offset,
                int32_t b_offset, int32_t out_mult, int32_t out_shift, int32_t out_offset,
                int32_t act_min, int32_t act_max, int8_t *out)
{
    const int32_t as3 = bc->a_strides[3], bs3 = bc->b_strides[3];
    KML_BROADCAST4({
        const int32_t prod = ((int32_t)pa[i3 * as3] + a_offset)
                             * ((int32_t)pb[i3 * bs3] + b_offset);
        const int32_t v = kml_mbqm_inline(prod, out_mult, out_shift) + out_offset;
        out[o] = (int8_t)kml_clamp32(v, act_min, act_max);
    });
}

/* ---- activations --------------------------------------------------------------------- */

/* TFLM reference_ops::Softmax for int8 in / int8 out: exp of the rescaled differences to
 * the row max in Q5.26, their sum in Q12.19, one reciprocal per row. */
/* Rows up to this long keep their exp values on the stack between the two passes. */
#define KML_SOFTMAX_CACHE 64

void kml_softmax_s8(const int8_t *in, int32_t rows, int32_t depth, int32_t mult,
                    int32_t left_shift, int32_t diff_min, int8_t *out)
{
    int32_t exps[KML_SOFTMAX_CACHE]; /* exp_on_negative_values of each diff, when cached */
    const int32_t cached = depth <= KML_SOFTMAX_CACHE;
    int32_t r, c;
    for (r = 0; r < rows; ++r) {
        const int8_t *x = in + r * depth;
        int8_t *y = out + r * depth;
        int32_t max_in_row = INT8_MIN, sum_of_exps = 0, num_bits_over_unit, shifted_scale;
        int32_t exponent;
        for (c = 0; c < depth; ++c) {
            max_in_row = x[c] > max_in_row ? x[c] : max_in_row;
        }
        for (c = 0; c < depth; ++c) {
            const int32_t diff = (int32_t)x[c] - max_in_row;
            if (diff >= diff_min) {
                /* MultiplyByQuantizedMultiplierGreaterThanOne */
                const int32_t rescaled = kml_srdhm((int32_t)((uint32_t)diff << left_shift), mult);
                const int32_t e = kml_exp_on_negative_values(rescaled, 5);
                if (cached) {
                    exps[c] = e;
                }
                sum_of_exps = kml_add32(sum_of_exps, kml_rdbpot(e, 12));
            }
        }
        shifted_scale = kml_get_reciprocal(sum_of_exps, 12, &num_bits_over_unit);
        exponent = num_bits_over_unit + 31 - 8;
        for (c = 0; c < depth; ++c) {
            const int32_t diff = (int32_t)x[c] - max_in_row;
            int32_t v = INT8_MIN;
            if (diff >= diff_min) {
                /* the same exp as in the first pass, recomputed only for long rows */
                const int32_t exp_in_0 = cached ? exps[c]
                    : kml_exp_on_negative_values(
                          kml_srdhm((int32_t)((uint32_t)diff << left_shift), mult), 5);
                /* exponent > 31 (a sum of more than 2^28 in Q12.19, rows of > 511 equal
                 * values) is undefined in gemmlowp; the Python spec gives 0. */
                const int32_t unsat = exponent > 31 ? 0
                                      : kml_rdbpot(kml_srdhm(shifted_scale, exp_in_0), exponent);
                v = kml_clamp32(unsat + INT8_MIN, INT8_MIN, INT8_MAX);
            }
            y[c] = (int8_t)v;
        }
    }
}

/* TFLM reference_integer_ops::Logistic (Q4.27 input) and Tanh for one value. */
static int8_t kml_logistic_one(int32_t input, int32_t range_radius, int32_t mult,
                               int32_t left_shift)
{
    int32_t q;
    if (input <= -range_radius) {
        return INT8_MIN;
    }
    if (input >= range_radius) {
        return INT8_MAX;
    }
    q = kml_gemmlowp_logistic(kml_mbqm_inline(input, mult, left_shift), 4);
    return (int8_t)kml_clamp32(kml_rdbpot(q, 31 - 8) + INT8_MIN, INT8_MIN, INT8_MAX);
}

static int8_t kml_tanh_one(int32_t input, int32_t range_radius, int32_t mult,
                           int32_t left_shift)
{
    int32_t q;
    if (input <= -range_radius) {
        return INT8_MIN;
    }
    if (input >= range_radius) {
        return INT8_MAX;
    }
    q = kml_gemmlowp_tanh(kml_mbqm_inline(input, mult, left_shift), 4);
    return (int8_t)kml_clamp32(kml_rdbpot(q, 31 - 7), INT8_MIN, INT8_MAX);
}

/* Logistic and tanh depend on the int8 value only: past 256 elements a table of the 256
 * results (the same function) is cheaper than the fixed-point evaluation per element. */
#define KML_GEMMLOWP_ACTIVATION(ONE)                                                      \
    do {                                                                                  \
        int32_t i_;                                                                       \
        if (n > 256) {                                                                    \
            int8_t table_[256];                                                           \
            for (i_ = 0; i_ < 256; ++i_) {                                                \
                table_[i_] = ONE(i_ - 128 - in_zp, range_radius, mult, left_shift);       \
            }                                                                             \
            for (i_ = 0; i_ < n; ++i_) {                                                  \
                out[i_] = table_[(int32_t)in[i_] + 128];                                  \
            }                                                                             \
        } else {                                                                          \
            for (i_ = 0; i_ < n; ++i_) {                                                  \
                out[i_] = ONE((int32_t)in[i_] - in_zp, range_radius, mult, left_shift);   \
            }                                                                             \
        }                                                                                 \
    } while (0)

void kml_logistic_s8(const int8_t *in, int32_t n, int32_t in_zp, int32_t range_radius,
                     int32_t mult, int32_t left_shift, int8_t *out)
{
    KML_GEMMLOWP_ACTIVATION(kml_logistic_one);
}

void kml_tanh_s8(const int8_t *in, int32_t n, int32_t in_zp, int32_t range_radius,
                 int32_t mult, int32_t left_shift, int8_t *out)
{
    KML_GEMMLOWP_ACTIVATION(kml_tanh_one);
}

/* TFLM ReluQuantized: requantize, then clamp to the output's [0, ...] range. */
void kml_relu_s8(const int8_t *in, int32_t n, int32_t in_zp, int32_t mult, int32_t shift,
                 int32_t out_zp, int32_t act_min, int32_t act_max, int8_t *out)
{
    int32_t i;
    for (i = 0; i < n; ++i) {
        const int32_t v = out_zp + kml_mbqm_inline((int32_t)in[i] - in_zp, mult, shift);
        out[i] = (int8_t)kml_clamp32(v, act_min, act_max);
    }
}

void kml_clamp_s8(const int8_t *in, int32_t n, int32_t lo, int32_t hi, int8_t *out)
{
    int32_t i;
    for (i = 0; i < n; ++i) {
        out[i] = (int8_t)kml_clamp32(in[i], lo, hi);
    }
}

/* ---- quantization at the boundaries -------------------------------------------------- */

/* TFLM AffineQuantize: roundf(in / scale) + zp, clamped. The rounded value is limited to
 * +-256 first (any value past that clamps the same way) so the int conversion is always
 * defined; NaN gives -128 like the Python spec on x86. */
void kml_quantize_f32_s8(const float *in, int32_t n, float scale, int32_t zp, int8_t *out)
{
    int32_t i;
    for (i = 0; i < n; ++i) {
        float r = roundf(in[i] / scale);
        if (!(r >= -256.0f)) {
            r = -256.0f;
        } else if (r > 256.0f) {
            r = 256.0f;
        }
        out[i] = (int8_t)kml_clamp32((int32_t)r + zp, INT8_MIN, INT8_MAX);
    }
}

/* TFLM Requantize (int8 -> int8). */
void kml_requantize_s8(const int8_t *in, int32_t n, int32_t in_zp, int32_t mult,
                       int32_t shift, int32_t out_zp, int8_t *out)
{
    int32_t i;
    for (i = 0; i < n; ++i) {
        const int32_t v = kml_mbqm_inline((int32_t)in[i] - in_zp, mult, shift) + out_zp;
        out[i] = (int8_t)kml_clamp32(v, INT8_MIN, INT8_MAX);
    }
}

/* TFLM Dequantize: the scale is a double in DequantizationParams. */
void kml_dequantize_s8_f32(const int8_t *in, int32_t n, float scale, int32_t zp, float *out)
{
    const double s = (double)scale;
    int32_t i;
    for (i = 0; i < n; ++i) {
        out[i] = (float)(s * (double)((int32_t)in[i] - zp));
    }
}

/* ---- data movement -------------------------------------------------------------------- */

void kml_copy_s8(const int8_t *in, int32_t n, int8_t *out)
{
    if (n > 0 && in != out) {
        memmove(out, in, (size_t)n);
    }
}

void kml_pad_s8(const int8_t *in, const int32_t in_dims[4], const int32_t before[4],
                const int32_t out_dims[4], int8_t value, int8_t *out)
{
    const int32_t total = out_dims[0] * out_dims[1] * out_dims[2] * out_dims[3];
    int32_t i0, i1, i2;
    if (total > 0) {
        memset(out, (unsigned char)value, (size_t)total);
    }
    if (in_dims[3] <= 0) {
        return;
    }
    for (i0 = 0; i0 < in_dims[0]; ++i0) {
        for (i1 = 0; i1 < in_dims[1]; ++i1) {
            for (i2 = 0; i2 < in_dims[2]; ++i2) {
                const int32_t o = (((i0 + before[0]) * out_dims[1] + i1 + before[1]) * out_dims[2]
                                   + i2 + before[2]) * out_dims[3] + before[3];
                memcpy(out + o, in, (size_t)in_dims[3]);
                in += in_dims[3];
            }
        }
    }
}

void kml_concat_s8(int32_t n_inputs, const int8_t *const *ins, const int32_t *axis_sizes,
                   int32_t outer, int32_t inner, int8_t *out)
{
    int32_t o, i;
    for (o = 0; o < outer; ++o) {
        for (i = 0; i < n_inputs; ++i) {
            const int32_t block = axis_sizes[i] * inner;
            if (block > 0) {
                memcpy(out, ins[i] + o * block, (size_t)block);
                out += block;
            }
        }
    }
}

void kml_split_s8(const int8_t *in, int32_t outer, int32_t axis, int32_t inner,
                  int32_t n_outputs, int8_t *const *outs)
{
    const int32_t block = axis / n_outputs * inner;
    int32_t o, k;
    if (block <= 0) {
        return;
    }
    for (o = 0; o < outer; ++o) {
        for (k = 0; k < n_outputs; ++k) {
            memcpy(outs[k] + o * block, in, (size_t)block);
            in += block;
        }
    }
}

static void kml_strides4(const int32_t dims[4], int32_t strides[4])
{
    strides[3] = 1;
    strides[2] = dims[3];
    strides[1] = dims[3] * dims[2];
    strides[0] = dims[3] * dims[2] * dims[1];
}

void kml_slice4_s8(const int8_t *in, const int32_t in_dims[4], const int32_t begin[4],
                   const int32_t step[4], const int32_t out_dims[4], int8_t *out)
{
    int32_t s[4], d[4], i0, i1, i2, i3;
    const int8_t *base;
    kml_strides4(in_dims, s);
    for (i0 = 0; i0 < 4; ++i0) {
        d[i0] = step[i0] * s[i0]; /* input step per output step on each axis */
    }
    base = in + begin[0] * s[0] + begin[1] * s[1] + begin[2] * s[2] + begin[3] * s[3];
    for (i0 = 0; i0 < out_dims[0]; ++i0) {
        for (i1 = 0; i1 < out_dims[1]; ++i1) {
            for (i2 = 0; i2 < out_dims[2]; ++i2) {
                const int8_t *row = base + i0 * d[0] + i1 * d[1] + i2 * d[2];
                if (d[3] == 1) {
                    if (out_dims[3] > 0) {
                        memcpy(out, row, (size_t)out_dims[3]);
                    }
                    out += out_dims[3];
                    continue;
                }
                for (i3 = 0; i3 < out_dims[3]; ++i3) {
                    *out++ = row[i3 * d[3]];
                }
            }
        }
    }
}

void kml_transpose4_s8(const int8_t *in, const int32_t in_dims[4], const int32_t perm[4],
                       int8_t *out)
{
    int32_t s[4], os[4], od[4], i0, i1, i2, i3, k;
    kml_strides4(in_dims, s);
    for (k = 0; k < 4; ++k) {
        od[k] = in_dims[perm[k]]; /* output axis k walks input axis perm[k] */
        os[k] = s[perm[k]];
    }
    for (i0 = 0; i0 < od[0]; ++i0) {
        for (i1 = 0; i1 < od[1]; ++i1) {
            for (i2 = 0; i2 < od[2]; ++i2) {
                const int8_t *row = in + i0 * os[0] + i1 * os[1] + i2 * os[2];
                for (i3 = 0; i3 < od[3]; ++i3) {
                    *out++ = row[i3 * os[3]];
                }
            }
        }
    }
}

void kml_lut_s8(const int8_t *in, int32_t n, const int8_t *table, int8_t *out)
{
    int32_t i;
    for (i = 0; i < n; ++i) {
        out[i] = table[(int32_t)in[i] + 128];
    }
}
