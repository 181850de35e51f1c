/* SPDX-License-Identifier: Apache-2.0 */
/* kml_nn: int8 neural-network kernels, bit-exact with TFLM's reference kernels.
 *
 * The arithmetic is TFLite's: MultiplyByQuantizedMultiplier with double rounding
 * (the TFLM default), offsets added to int8 values (in_offset = -input zero
 * point, out_offset = output zero point), int32 accumulators, clamping to
 * [act_min, act_max]. Every parameter (multipliers, shifts, offsets, ranges,
 * paddings) is computed ahead of time by kiloml/nn/op_params.py, exactly as
 * TFLM's Prepare() does; kernels only compute.
 *
 * Layouts: activations NHWC, conv filters OHWI, depthwise filters [1][kh][kw][C],
 * fully-connected weights [out][depth]. Shapes of rank < 4 are passed as 4-D with
 * leading 1s.
 *
 * Fast paths: with KML_NN_DSP 1 (the default) and a core with the DSP extension
 * (__ARM_FEATURE_DSP: Cortex-M4/M7/M33), kml_fc_s8, kml_conv2d_s8 and
 * kml_dwconv2d_s8 use SMLAD/SXTB16 (kml_nn_dsp.c); otherwise the portable C99
 * path. Both give identical outputs. The fast paths need the scratch given by
 * the KML_*_SCRATCH_BYTES macros (kiloml/nn/c_scratch.py mirrors them for the
 * memory planner); the portable path ignores the scratch pointer (may be NULL).
 */
#ifndef KML_NN_H
#define KML_NN_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The fast paths are on by default wherever the core has the DSP extension;
 * build with -DKML_NN_DSP=0 to force the portable path (kiloml tests both). */
#ifndef KML_NN_DSP
#define KML_NN_DSP 1
#endif
#if KML_NN_DSP && defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#define KML_NN_USE_DSP 1
#else
#define KML_NN_USE_DSP 0
#endif

/* Scratch in bytes for the fast paths (0 on the portable path). */
#define KML_FC_SCRATCH_BYTES(depth) ((int32_t)(depth) * 2)
#define KML_CONV_SCRATCH_BYTES(kh, kw, cin_per_group) (2 * (int32_t)(kh) * (kw) * (cin_per_group) * 2)
#define KML_DWCONV_SCRATCH_BYTES(kh, kw, channels) (0)

/* ---- fixed point (TFLite's, exactly) ---------------------------------------- */
int32_t kml_mbqm(int32_t x, int32_t multiplier, int32_t shift);

/* ---- fully connected ----------------------------------------------------------
 * out[r][o] = clamp(out_offset + mbqm(sum_d (w[o][d] + w_offset) * (in[r][d] + in_offset)
 *                                     + bias[o], mult[o or 0], shift[o or 0]))
 * per_channel: 1 when mult/shift have out_features entries, 0 for one entry.
 * bias may be NULL. */
void kml_fc_s8(int32_t rows, int32_t depth, int32_t out_features, const int8_t *in,
               const int8_t *w, const int32_t *bias, int32_t in_offset, int32_t w_offset,
               int32_t out_offset, const int32_t *mult, const int32_t *shift,
               int32_t per_channel, int32_t act_min, int32_t act_max, int8_t *out,
               int16_t *scratch);

/* ---- convolutions ----------------------------------------------------------------- */
typedef struct {
    int32_t batches, in_h, in_w, in_c;
    int32_t out_h, out_w, out_c;
    int32_t k_h, k_w, stride_h, stride_w, dil_h, dil_w;
    int32_t pad_h, pad_w;          /* padding before (top, left); TFLite puts the odd one after */
    int32_t filter_in_c;           /* conv: input channels per group (groups = in_c / filter_in_c) */
    int32_t depth_multiplier;      /* depthwise: out_c = in_c * depth_multiplier */
    int32_t in_offset, out_offset; /* -input zero point, output zero point */
    int32_t act_min, act_max;
} kml_conv_params;

/* TFLM ConvPerChannel: filter zero point is 0; points outside the input are skipped. */
void kml_conv2d_s8(const kml_conv_params *p, const int8_t *in, const int8_t *filter,
                   const int32_t *bias, const int32_t *mult, const int32_t *shift, int8_t *out,
                   int16_t *scratch);
/* TFLM DepthwiseConvPerChannel: out channel = ic * depth_multiplier + m. */
void kml_dwconv2d_s8(const kml_conv_params *p, const int8_t *in, const int8_t *filter,
                     const int32_t *bias, const int32_t *mult, const int32_t *shift,
                     int8_t *out, int16_t *scratch);

/* ---- pooling (input and output share quantization) --------------------------------- */
typedef struct {
    int32_t batches, in_h, in_w, channels, out_h, out_w;
    int32_t f_h, f_w, stride_h, stride_w, pad_h, pad_w;
    int32_t act_min, act_max;
} kml_pool_params;

/* Average over the window's in-bounds points, rounded half away from zero. */
void kml_avgpool_s8(const kml_pool_params *p, const int8_t *in, int8_t *out);
void kml_maxpool_s8(const kml_pool_params *p, const int8_t *in, int8_t *out);

/* ---- reductions over the axes set in axes_mask (bit i = axis i of dims[4]) ---------
 * Output in row-major order of the kept axes. MEAN: acc[k] = sum of raw int8 values;
 * out = clamp(out_offset + mbqm(acc - in_zp * count, mult, shift)), where mult and shift
 * already hold TFLM's 1/count adjustment. acc has one int32 per output element. */
void kml_mean_s8(const int8_t *in, const int32_t dims[4], uint32_t axes_mask, int32_t in_zp,
                 int32_t count, int32_t mult, int32_t shift, int32_t out_offset, int8_t *out,
                 int32_t *acc);
void kml_reduce_max_s8(const int8_t *in, const int32_t dims[4], uint32_t axes_mask,
                       int8_t *out);

/* ---- element-wise with 4-D broadcasting ---------------------------------------------
 * Element (i0,i1,i2,i3) of out reads a[sum i_k * a_strides[k]], b likewise; a stride of
 * 0 broadcasts. */
typedef struct {
    int32_t out_dims[4];
    int32_t a_strides[4];
    int32_t b_strides[4];
} kml_broadcast4;

/* TFLM ADD: left shift 20, each input rescaled, sum rescaled. */
void kml_add_s8(const kml_broadcast4 *bc, const int8_t *a, const int8_t *b, int32_t a_offset,
                int32_t b_offset, int32_t left_shift, int32_t a_mult, int32_t a_shift,
                int32_t b_mult, int32_t b_shift, int32_t out_mult, int32_t out_shift,
                int32_t out_offset, int32_t act_min, int32_t act_max, int8_t *out);
/* TFLM SUB: as ADD, the rescaled second input subtracted (a - b). */
void kml_sub_s8(const kml_broadcast4 *bc, const int8_t *a, const int8_t *b, int32_t a_offset,
                int32_t b_offset, int32_t left_shift, int32_t a_mult, int32_t a_shift,
                int32_t b_mult, int32_t b_shift, int32_t out_mult, int32_t out_shift,
                int32_t out_offset, int32_t act_min, int32_t act_max, int8_t *out);
void kml_mul_s8(const kml_broadcast4 *bc, const int8_t *a, const int8_t *b, int32_t a_offset,
                int32_t b_offset, int32_t out_mult, int32_t out_shift, int32_t out_offset,
                int32_t act_min, int32_t act_max, int8_t *out);

/* ---- activations ----------------------------------------------------------------- */
/* Softmax over the last axis; output scale 1/256, zero point -128 (gemmlowp fixed point). */
void kml_softmax_s8(const int8_t *in, int32_t rows, int32_t depth, int32_t mult,
                    int32_t left_shift, int32_t diff_min, int8_t *out);
/* Logistic (out 1/256 @ -128) and tanh (out 1/128 @ 0), TFLM int8 kernels. */
void kml_logistic_s8(const int8_t *in, int32_t n, int32_t in_zp, int32_t range_radius,
                     int32_t mult, int32_t left_shift, int8_t *out);
void kml_tanh_s8(const int8_t *in, int32_t n, int32_t in_zp, int32_t range_radius,
                 int32_t mult, int32_t left_shift, int8_t *out);
/* Any int8 -> int8 function given as its table: out[i] = table[in[i] + 128]. */
void kml_lut_s8(const int8_t *in, int32_t n, const int8_t *table, int8_t *out);
/* RELU with requantization: clamp(out_zp + mbqm(in - in_zp, mult, shift), act_min, act_max). */
void kml_relu_s8(const int8_t *in, int32_t n, int32_t in_zp, int32_t mult, int32_t shift,
                 int32_t out_zp, int32_t act_min, int32_t act_max, int8_t *out);
/* RELU6 (and any clamp in the input's quantization). */
void kml_clamp_s8(const int8_t *in, int32_t n, int32_t lo, int32_t hi, int8_t *out);

/* ---- quantization at the boundaries ----------------------------------------------- */
/* out = clamp(zp + roundf(in / scale)) (float division, half away from zero). */
void kml_quantize_f32_s8(const float *in, int32_t n, float scale, int32_t zp, int8_t *out);
/* int8 -> int8: clamp(out_zp + mbqm(in - in_zp, mult, shift)). */
void kml_requantize_s8(const int8_t *in, int32_t n, int32_t in_zp, int32_t mult,
                       int32_t shift, int32_t out_zp, int8_t *out);
/* out = (float)((double)scale * (in - zp)). */
void kml_dequantize_s8_f32(const int8_t *in, int32_t n, float scale, int32_t zp, float *out);

/* ---- data movement (no arithmetic) ------------------------------------------------ */
/* memmove (a reshape that cannot be done in place). */
void kml_copy_s8(const int8_t *in, int32_t n, int8_t *out);
/* 4-D pad: out_dims = in_dims + before + after on each axis, filled with value. */
void kml_pad_s8(const int8_t *in, const int32_t in_dims[4], const int32_t before[4],
                const int32_t out_dims[4], int8_t value, int8_t *out);
/* Concatenation seen as [outer][axis_i][inner]: copies each input's block in turn. */
void kml_concat_s8(int32_t n_inputs, const int8_t *const *ins, const int32_t *axis_sizes,
                   int32_t outer, int32_t inner, int8_t *out);
/* Split / unpack seen as [outer][axis][inner] cut into n_outputs equal parts. */
void kml_split_s8(const int8_t *in, int32_t outer, int32_t axis, int32_t inner,
                  int32_t n_outputs, int8_t *const *outs);
/* out[o0][o1][o2][o3] = in[begin0 + o0*step0]...[begin3 + o3*step3] (steps may be < 0);
 * covers STRIDED_SLICE (shrunk axes have out dim 1) and SLICE. */
void kml_slice4_s8(const int8_t *in, const int32_t in_dims[4], const int32_t begin[4],
                   const int32_t step[4], const int32_t out_dims[4], int8_t *out);
/* out axis i = in axis perm[i]. */
void kml_transpose4_s8(const int8_t *in, const int32_t in_dims[4], const int32_t perm[4],
                       int8_t *out);

/* ---- fast paths (kml_nn_dsp.c; only with KML_NN_USE_DSP) ------------------------------ */
#if KML_NN_USE_DSP
void kml_fc_s8_dsp(int32_t rows, int32_t depth, int32_t out_features, const int8_t *in,
                   const int8_t *w, const int32_t *bias, int32_t in_offset, int32_t w_offset,
                   int32_t out_offset, const int32_t *mult, const int32_t *shift,
                   int32_t per_channel, int32_t act_min, int32_t act_max, int8_t *out,
                   int16_t *scratch);
void kml_conv2d_s8_dsp(const kml_conv_params *p, const int8_t *in, const int8_t *filter,
                       const int32_t *bias, const int32_t *mult, const int32_t *shift,
                       int8_t *out, int16_t *scratch);
void kml_dwconv2d_s8_dsp(const kml_conv_params *p, const int8_t *in, const int8_t *filter,
                         const int32_t *bias, const int32_t *mult, const int32_t *shift,
                         int8_t *out, int16_t *scratch);
#endif

#ifdef __cplusplus
}
#endif

#endif /* KML_NN_H */
