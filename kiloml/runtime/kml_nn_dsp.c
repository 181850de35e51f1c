/* SPDX-License-Identifier: Apache-2.0 */
/* kml_nn fast paths for cores with the Arm DSP extension (Cortex-M4/M7/M33):
 * fully-connected, convolution and depthwise convolution with SMLAD (two 16-bit
 * multiply-accumulates per instruction) and SXTB16/SXTAB16 (two int8 -> int16 widenings,
 * with the input offset added, per instruction).
 *
 * Bit-exact with the portable kernels: every product is the same int32 product, the
 * accumulators are int32 and wrap the same way (SMLAD wraps; only the Q flag notes it),
 * only the order of the additions differs, which int32 (mod 2^32) addition ignores.
 *
 * Data layout trick (as in CMSIS-NN): SXTB16 unpacks bytes 0 and 2 of a word, SXTB16 ROR 8
 * bytes 1 and 3. Activations are therefore widened into scratch with each group of four
 * stored as (x0, x2, x1, x3), so int8 weights, read four at a time straight from flash,
 * pair with them without any reordering.
 *
 * Cases without a fast path fall back to the portable kernel: grouped convolution,
 * depthwise with a depth multiplier other than 1, fully-connected with a nonzero weight
 * zero point, and any call without scratch. kiloml's codegen notes them in the report. */
#include "kml_fp.h" /* first: no float contraction, no fast-math */

#include "kml_nn.h"

#if KML_NN_USE_DSP

#include <arm_acle.h>
#include <string.h>

#include "kml_nn_internal.h"

/* Four int8 in one load (unaligned loads are legal on v7E-M and v8-M Mainline). */
static inline int32_t kml_read_s8x4(const int8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* Bytes 1 and 3 sign-extended to two halfwords, in one instruction. */
static inline int32_t kml_sxtb16_ror8(int32_t x)
{
    int32_t r;
    __asm("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}

/* Halfwords of a plus bytes 1 and 3 of x, in one instruction. */
static inline int32_t kml_sxtab16_ror8(int32_t a, int32_t x)
{
    int32_t r;
    __asm("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(a), "r"(x));
    return r;
}

/* offset in both halfwords, for SXTAB16. */
static inline int32_t kml_pair16(int32_t offset)
{
    return (int32_t)(((uint32_t)offset & 0xFFFFu) | ((uint32_t)offset << 16));
}

/* ---- fully connected ------------------------------------------------------------------ */

/* x + offset as int16 into out, each full group of four as (x0, x2, x1, x3), the rest in
 * order. x + offset lies in [-255, 255]: it fits a halfword. */
static void kml_widen_reordered(const int8_t *x, int32_t n, int32_t offset, int16_t *out)
{
    const int32_t off2 = kml_pair16(offset);
    int32_t *out32 = (int32_t *)out;
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const int32_t v = kml_read_s8x4(x + i);
        *out32++ = __sxtab16(off2, v);
        *out32++ = kml_sxtab16_ror8(off2, v);
    }
    for (; i < n; ++i) {
        out[i] = (int16_t)(x[i] + offset);
    }
}

/* Two weight rows against one widened input: acc[0] += w0 . xs, acc[1] += w1 . xs.
 * Eight bytes of weights per row per iteration: the loop overhead (compare, branch) is
 * paid once per 16 MACs. */
static inline void kml_dot2_s8_s16(const int8_t *w0, const int8_t *w1, const int16_t *xs,
                                   int32_t depth, int32_t *acc0, int32_t *acc1)
{
    const int32_t *x32 = (const int32_t *)xs;
    int32_t a0 = *acc0, a1 = *acc1, d = 0;
    for (; d + 8 <= depth; d += 8) {
        const int32_t v0 = kml_read_s8x4(w0 + d), v1 = kml_read_s8x4(w1 + d);
        const int32_t u0 = kml_read_s8x4(w0 + d + 4), u1 = kml_read_s8x4(w1 + d + 4);
        a0 = __smlad(__sxtb16(v0), x32[0], a0);
        a0 = __smlad(kml_sxtb16_ror8(v0), x32[1], a0);
        a1 = __smlad(__sxtb16(v1), x32[0], a1);
        a1 = __smlad(kml_sxtb16_ror8(v1), x32[1], a1);
        a0 = __smlad(__sxtb16(u0), x32[2], a0);
        a0 = __smlad(kml_sxtb16_ror8(u0), x32[3], a0);
        a1 = __smlad(__sxtb16(u1), x32[2], a1);
        a1 = __smlad(kml_sxtb16_ror8(u1), x32[3], a1);
        x32 += 4;
    }
    if (d + 4 <= depth) {
        const int32_t v0 = kml_read_s8x4(w0 + d), v1 = kml_read_s8x4(w1 + d);
        a0 = __smlad(__sxtb16(v0), x32[0], a0);
        a0 = __smlad(kml_sxtb16_ror8(v0), x32[1], a0);
        a1 = __smlad(__sxtb16(v1), x32[0], a1);
        a1 = __smlad(kml_sxtb16_ror8(v1), x32[1], a1);
        d += 4;
    }
    for (; d < depth; ++d) {
        a0 += (int32_t)w0[d] * xs[d];
        a1 += (int32_t)w1[d] * xs[d];
    }
    *acc0 = a0;
    *acc1 = a1;
}

static int32_t kml_dot1_s8_s16(const int8_t *w, const int16_t *xs, int32_t depth, int32_t a)
{
    const int32_t *x32 = (const int32_t *)xs;
    int32_t d = 0;
    for (; d + 4 <= depth; d += 4) {
        const int32_t v = kml_read_s8x4(w + d);
        a = __smlad(__sxtb16(v), x32[0], a);
        a = __smlad(kml_sxtb16_ror8(v), x32[1], a);
        x32 += 2;
    }
    for (; d < depth; ++d) {
        a += (int32_t)w[d] * xs[d];
    }
    return a;
}

void kml_fc_s8_dsp(int32_t rows, int32_t depth, int32_t out_features, const int8_t *in,
                   const int8_t *w, const int32_t *bias, int32_t in_offset, int32_t w_offset,
                   int32_t out_offset, const int32_t *mult, const int32_t *shift,
                   int32_t per_channel, int32_t act_min, int32_t act_max, int8_t *out,
                   int16_t *scratch)
{
    int32_t r, o;
    kml_rq rq0, rq1;
    if (w_offset != 0 || scratch == NULL) {
        kml_fc_s8_portable(rows, depth, out_features, in, w, bias, in_offset, w_offset,
                           out_offset, mult, shift, per_channel, act_min, act_max, out,
                           scratch);
        return;
    }
    /* per-tensor quantization: one set of requantization constants for every output */
    kml_rq_init(&rq0, mult[0], shift[0]);
    rq1 = rq0;
    for (r = 0; r < rows; ++r) {
        int8_t *y = out + r * out_features;
        const int8_t *w0 = w;
        kml_widen_reordered(in + r * depth, depth, in_offset, scratch);
        for (o = 0; o + 2 <= out_features; o += 2, w0 += 2 * depth) {
            /* the bias starts the accumulators (int32 addition is associative mod 2^32) */
            int32_t acc0 = bias != NULL ? bias[o] : 0;
            int32_t acc1 = bias != NULL ? bias[o + 1] : 0;
            kml_dot2_s8_s16(w0, w0 + depth, scratch, depth, &acc0, &acc1);
            if (per_channel) {
                kml_rq_init(&rq0, mult[o], shift[o]);
                kml_rq_init(&rq1, mult[o + 1], shift[o + 1]);
            }
            y[o] = kml_rq_s8(&rq0, acc0, out_offset, act_min, act_max);
            y[o + 1] = kml_rq_s8(&rq1, acc1, out_offset, act_min, act_max);
        }
        if (o < out_features) {
            const int32_t acc = kml_dot1_s8_s16(w0, scratch, depth, bias != NULL ? bias[o] : 0);
            if (per_channel) {
                kml_rq_init(&rq0, mult[o], shift[o]);
            }
            y[o] = kml_rq_s8(&rq0, acc, out_offset, act_min, act_max);
        }
    }
}

/* ---- convolution: im2col of two output pixels, then a 2x2 (channels x pixels) kernel ---- */

/* Column layout for two pixels over depth K = k_h * k_w * in_c: groups of four depth
 * entries interleave the pixels, [p0: x0 x2 x1 x3][p1: x0 x2 x1 x3], so one pointer walks
 * both; the K % 4 tail follows, p0's then p1's. Points outside the input hold 0, which is
 * what (zero point + in_offset) would contribute: nothing, as TFLM's skip. */
static inline int32_t kml_col_pos(int32_t k, int32_t k4, int32_t tail, int32_t pixel)
{
    if (k < k4) {
        /* swap bits 0 and 1 of the index within the group: 0,1,2,3 -> 0,2,1,3 */
        const int32_t j = k & 3;
        return (k - j) * 2 + pixel * 4 + ((j & 1) << 1) + ((j & 2) >> 1);
    }
    return k4 * 2 + pixel * tail + (k - k4);
}

/* Column entries [k, k + n) of one pixel: x[i] + offset, or 0 when x is NULL (a tap
 * outside the input). Whole aligned groups of four go through SXTAB16 (two instructions
 * for four entries); only the entries before the first group boundary and past the last
 * take the scalar path. */
static void kml_col_run(int16_t *col, int32_t k, int32_t n, int32_t k4, int32_t tail,
                        int32_t pixel, const int8_t *x, int32_t offset, int32_t off2)
{
    while (n > 0 && (k & 3) != 0) {
        col[kml_col_pos(k, k4, tail, pixel)] = (int16_t)(x != NULL ? *x++ + offset : 0);
        ++k;
        --n;
    }
    if (n >= 4 && k < k4) {
        const int32_t groups = ((k + n < k4 ? k + n : k4) - k) >> 2;
        int32_t *dst = (int32_t *)(col + k * 2 + pixel * 4);
        int32_t g;
        if (x != NULL) {
            for (g = 0; g < groups; ++g, x += 4, dst += 4) {
                const int32_t v = kml_read_s8x4(x);
                dst[0] = __sxtab16(off2, v);
                dst[1] = kml_sxtab16_ror8(off2, v);
            }
        } else {
            for (g = 0; g < groups; ++g, dst += 4) {
                dst[0] = 0;
                dst[1] = 0;
            }
        }
        k += groups * 4;
        n -= groups * 4;
    }
    for (; n > 0; ++k, --n) {
        col[kml_col_pos(k, k4, tail, pixel)] = (int16_t)(x != NULL ? *x++ + offset : 0);
    }
}

/* The column of output pixel (oy, ox): per filter row, the taps inside the input are one
 * contiguous run of input bytes when dil_w == 1 (a pixel is in_c bytes, the taps are
 * adjacent pixels), written with kml_col_run; taps outside are zero runs. */
static void kml_im2col_pixel(const kml_conv_params *p, const int8_t *in_b, int32_t oy,
                             int32_t ox, int32_t pixel, int16_t *col)
{
    const int32_t c = p->in_c;
    const int32_t row_k = p->k_w * c; /* column entries per filter row */
    const int32_t k_total = p->k_h * row_k;
    const int32_t k4 = k_total & ~3;
    const int32_t tail = k_total - k4;
    const int32_t iy0 = oy * p->stride_h - p->pad_h;
    const int32_t ix0 = ox * p->stride_w - p->pad_w;
    const int32_t off = p->in_offset, off2 = kml_pair16(off);
    int32_t kx0 = 0, kx1 = p->k_w, ky, kx;
    while (kx0 < kx1 && ix0 + kx0 * p->dil_w < 0) {
        ++kx0;
    }
    while (kx1 > kx0 && ix0 + (kx1 - 1) * p->dil_w >= p->in_w) {
        --kx1;
    }
    for (ky = 0; ky < p->k_h; ++ky) {
        const int32_t iy = iy0 + ky * p->dil_h;
        const int32_t k = ky * row_k;
        const int8_t *row = in_b + (iy * p->in_w + ix0) * c;
        if (iy < 0 || iy >= p->in_h || kx0 == kx1) {
            kml_col_run(col, k, row_k, k4, tail, pixel, NULL, off, off2);
            continue;
        }
        kml_col_run(col, k, kx0 * c, k4, tail, pixel, NULL, off, off2);
        if (p->dil_w == 1) {
            kml_col_run(col, k + kx0 * c, (kx1 - kx0) * c, k4, tail, pixel, row + kx0 * c,
                        off, off2);
        } else {
            for (kx = kx0; kx < kx1; ++kx) {
                kml_col_run(col, k + kx * c, c, k4, tail, pixel, row + kx * p->dil_w * c, off,
                            off2);
            }
        }
        kml_col_run(col, k + kx1 * c, (p->k_w - kx1) * c, k4, tail, pixel, NULL, off, off2);
    }
}

/* acc[r][q] += filter row r . pixel q over the column pair (2 rows x 2 pixels): per group
 * of four depth entries two weight loads, four SXTB16, two LDRD of the column, eight SMLAD
 * for 16 MACs. */
static inline void kml_mac_2x2(const int8_t *f0, const int8_t *f1, const int16_t *col,
                               int32_t k_total, int32_t acc[4])
{
    const int32_t k4 = k_total & ~3, tail = k_total - k4;
    const int32_t *c32 = (const int32_t *)col;
    int32_t a00 = acc[0], a01 = acc[1], a10 = acc[2], a11 = acc[3], k;
    for (k = 0; k < k4; k += 4) {
        const int32_t p0e = c32[0], p0o = c32[1], p1e = c32[2], p1o = c32[3];
        const int32_t v0 = kml_read_s8x4(f0 + k), v1 = kml_read_s8x4(f1 + k);
        const int32_t w0e = __sxtb16(v0), w0o = kml_sxtb16_ror8(v0);
        const int32_t w1e = __sxtb16(v1), w1o = kml_sxtb16_ror8(v1);
        c32 += 4;
        a00 = __smlad(w0o, p0o, __smlad(w0e, p0e, a00));
        a01 = __smlad(w0o, p1o, __smlad(w0e, p1e, a01));
        a10 = __smlad(w1o, p0o, __smlad(w1e, p0e, a10));
        a11 = __smlad(w1o, p1o, __smlad(w1e, p1e, a11));
    }
    for (k = 0; k < tail; ++k) {
        const int32_t x0 = col[k4 * 2 + k], x1 = col[k4 * 2 + tail + k];
        a00 += (int32_t)f0[k4 + k] * x0;
        a01 += (int32_t)f0[k4 + k] * x1;
        a10 += (int32_t)f1[k4 + k] * x0;
        a11 += (int32_t)f1[k4 + k] * x1;
    }
    acc[0] = a00;
    acc[1] = a01;
    acc[2] = a10;
    acc[3] = a11;
}

/* One filter row against one pixel (the odd channel or the odd pixel). */
static int32_t kml_mac_1x1(const int8_t *f, const int16_t *col, int32_t k_total, int32_t pixel,
                           int32_t a)
{
    const int32_t k4 = k_total & ~3, tail = k_total - k4;
    const int32_t *c32 = (const int32_t *)col + pixel * 2;
    int32_t k;
    for (k = 0; k < k4; k += 4) {
        const int32_t v = kml_read_s8x4(f + k);
        a = __smlad(__sxtb16(v), c32[0], a);
        a = __smlad(kml_sxtb16_ror8(v), c32[1], a);
        c32 += 4;
    }
    for (k = 0; k < tail; ++k) {
        a += (int32_t)f[k4 + k] * col[k4 * 2 + pixel * tail + k];
    }
    return a;
}

static int8_t kml_conv_out(const kml_conv_params *p, int32_t acc, const int32_t *bias,
                           const int32_t *mult, const int32_t *shift, int32_t oc)
{
    if (bias != NULL) {
        acc += bias[oc];
    }
    return kml_requant_s8(acc, mult[oc], shift[oc], p->out_offset, p->act_min, p->act_max);
}

void kml_conv2d_s8_dsp(const kml_conv_params *p, const int8_t *in, const int8_t *filter,
                       const int32_t *bias, const int32_t *mult, const int32_t *shift,
                       int8_t *out, int16_t *scratch)
{
    const int32_t k_total = p->k_h * p->k_w * p->in_c;
    const int32_t pixels = p->out_h * p->out_w;
    const int32_t out_c = p->out_c;
    const int32_t out_offset = p->out_offset, act_min = p->act_min, act_max = p->act_max;
    int32_t b, q, oc;
    if (p->filter_in_c != p->in_c || scratch == NULL) {
        kml_conv2d_s8_portable(p, in, filter, bias, mult, shift, out, scratch);
        return;
    }
    for (b = 0; b < p->batches; ++b) {
        const int8_t *in_b = in + b * p->in_h * p->in_w * p->in_c;
        int8_t *out_b = out + b * pixels * out_c;
        for (q = 0; q + 2 <= pixels; q += 2) {
            int8_t *y0 = out_b + q * out_c;
            int8_t *y1 = y0 + out_c;
            const int8_t *f0 = filter;
            kml_im2col_pixel(p, in_b, q / p->out_w, q % p->out_w, 0, scratch);
            kml_im2col_pixel(p, in_b, (q + 1) / p->out_w, (q + 1) % p->out_w, 1, scratch);
            for (oc = 0; oc + 2 <= out_c; oc += 2, f0 += 2 * k_total) {
                /* the bias starts the accumulators (int32 addition is associative) */
                const int32_t b0 = bias != NULL ? bias[oc] : 0;
                const int32_t b1 = bias != NULL ? bias[oc + 1] : 0;
                int32_t acc[4];
                kml_rq rq;
                acc[0] = b0;
                acc[1] = b0;
                acc[2] = b1;
                acc[3] = b1;
                kml_mac_2x2(f0, f0 + k_total, scratch, k_total, acc);
                kml_rq_init(&rq, mult[oc], shift[oc]);
                y0[oc] = kml_rq_s8(&rq, acc[0], out_offset, act_min, act_max);
                y1[oc] = kml_rq_s8(&rq, acc[1], out_offset, act_min, act_max);
                kml_rq_init(&rq, mult[oc + 1], shift[oc + 1]);
                y0[oc + 1] = kml_rq_s8(&rq, acc[2], out_offset, act_min, act_max);
                y1[oc + 1] = kml_rq_s8(&rq, acc[3], out_offset, act_min, act_max);
            }
            if (oc < out_c) {
                y0[oc] = kml_conv_out(p, kml_mac_1x1(f0, scratch, k_total, 0, 0), bias, mult,
                                      shift, oc);
                y1[oc] = kml_conv_out(p, kml_mac_1x1(f0, scratch, k_total, 1, 0), bias, mult,
                                      shift, oc);
            }
        }
        if (q < pixels) {
            /* the odd last pixel: its column alone, as pixel 0 of the pair layout */
            int8_t *y0 = out_b + q * out_c;
            kml_im2col_pixel(p, in_b, q / p->out_w, q % p->out_w, 0, scratch);
            for (oc = 0; oc < out_c; ++oc) {
                y0[oc] = kml_conv_out(p, kml_mac_1x1(filter + oc * k_total, scratch, k_total,
                                                     0, 0),
                                      bias, mult, shift, oc);
            }
        }
    }
}

/* ---- depthwise (depth multiplier 1): four channels at a time with SMLABB / SMLATT ------ */

void kml_dwconv2d_s8_dsp(const kml_conv_params *p, const int8_t *in, const int8_t *filter,
                         const int32_t *bias, const int32_t *mult, const int32_t *shift,
                         int8_t *out, int16_t *scratch)
{
    const int32_t c = p->out_c;
    const int32_t c4 = c & ~3;
    const int32_t off2 = kml_pair16(p->in_offset);
    int32_t b, oy, ox, ch, ky, kx;
    if (p->depth_multiplier != 1) {
        kml_dwconv2d_s8_portable(p, in, filter, bias, mult, shift, out, scratch);
        return;
    }
    for (b = 0; b < p->batches; ++b) {
        const int8_t *in_b = in + b * p->in_h * p->in_w * c;
        for (oy = 0; oy < p->out_h; ++oy) {
            const int32_t iy0 = oy * p->stride_h - p->pad_h;
            int32_t ky0, ky1;
            kml_valid_taps(iy0, p->dil_h, p->k_h, p->in_h, &ky0, &ky1);
            for (ox = 0; ox < p->out_w; ++ox) {
                const int32_t ix0 = ox * p->stride_w - p->pad_w;
                int32_t kx0, kx1;
                kml_valid_taps(ix0, p->dil_w, p->k_w, p->in_w, &kx0, &kx1);
                for (ch = 0; ch < c4; ch += 4) {
                    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
                    for (ky = ky0; ky < ky1; ++ky) {
                        const int32_t iy = iy0 + ky * p->dil_h;
                        const int8_t *x = in_b + (iy * p->in_w + ix0 + kx0 * p->dil_w) * c + ch;
                        const int8_t *f = filter + (ky * p->k_w + kx0) * c + ch;
                        for (kx = kx0; kx < kx1; ++kx) {
                            const int32_t xv = kml_read_s8x4(x), fv = kml_read_s8x4(f);
                            const int32_t xe = __sxtab16(off2, xv);
                            const int32_t xo = kml_sxtab16_ror8(off2, xv);
                            const int32_t fe = __sxtb16(fv), fo = kml_sxtb16_ror8(fv);
                            a0 = __smlabb(fe, xe, a0);
                            a2 = __smlatt(fe, xe, a2);
                            a1 = __smlabb(fo, xo, a1);
                            a3 = __smlatt(fo, xo, a3);
                            x += p->dil_w * c;
                            f += c;
                        }
                    }
                    out[ch] = kml_conv_out(p, a0, bias, mult, shift, ch);
                    out[ch + 1] = kml_conv_out(p, a1, bias, mult, shift, ch + 1);
                    out[ch + 2] = kml_conv_out(p, a2, bias, mult, shift, ch + 2);
                    out[ch + 3] = kml_conv_out(p, a3, bias, mult, shift, ch + 3);
                }
                for (; ch < c; ++ch) {
                    int32_t a = 0;
                    for (ky = ky0; ky < ky1; ++ky) {
                        const int32_t iy = iy0 + ky * p->dil_h;
                        for (kx = kx0; kx < kx1; ++kx) {
                            const int32_t ix = ix0 + kx * p->dil_w;
                            a += (int32_t)filter[(ky * p->k_w + kx) * c + ch]
                                 * ((int32_t)in_b[(iy * p->in_w + ix) * c + ch] + p->in_offset);
                        }
                    }
                    out[ch] = kml_conv_out(p, a, bias, mult, shift, ch);
                }
                out += c;
            }
        }
    }
}

#else
/* ISO C forbids an empty translation unit. */
typedef int kml_nn_dsp_unused;
#endif /* KML_NN_USE_DSP */
