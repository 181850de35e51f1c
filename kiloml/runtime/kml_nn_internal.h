/* SPDX-License-Identifier: Apache-2.0 */
/* kml_nn internals shared by kml_nn.c and kml_nn_dsp.c (not part of the API):
 * TFLite's fixed-point helpers, inlined where the kernels requantize, and the
 * portable kernels the fast paths fall back to for cases they do not cover. */
#ifndef KML_NN_INTERNAL_H
#define KML_NN_INTERNAL_H

#include "kml_nn.h"

#ifdef __cplusplus
extern "C" {
#endif

static inline int32_t kml_clamp32(int32_t v, int32_t lo, int32_t hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

/* gemmlowp SaturatingRoundingDoublingHighMul (the one place TFLite widens to int64).
 * gemmlowp computes (ab + (ab >= 0 ? 2^30 : 1 - 2^30)) / 2^31 with truncating division;
 * for every int64 ab that equals floor((ab + 2^30) / 2^31): for ab >= 0 both round down;
 * for ab < 0, t = ab + 1 - 2^30 <= 0 and trunc(t / 2^31) = ceil(t / 2^31)
 * = floor((t + 2^31 - 1) / 2^31) = floor((ab + 2^30) / 2^31). floor is an arithmetic
 * shift (>> of a negative value is arithmetic on every compiler kiloml targets, as
 * kml_rdbpot and TFLite already assume), so there is no 64-bit division (a libcall or
 * a long sequence) on any core: on the M4 it is SMULL, ADDS, ADC, LSR, ORR.
 * |ab| <= 2^62, so ab + 2^30 cannot overflow; the only product whose result leaves int32
 * is INT32_MIN * INT32_MIN, saturated as in gemmlowp. */
static inline int32_t kml_srdhm(int32_t a, int32_t b)
{
    int64_t ab;
    if (a == b && a == INT32_MIN) {
        return INT32_MAX;
    }
    ab = (int64_t)a * (int64_t)b;
    return (int32_t)((ab + ((int64_t)1 << 30)) >> 31);
}

/* gemmlowp RoundingDivideByPOT, exponent in [0, 31]; >> is arithmetic (as TFLite assumes). */
static inline int32_t kml_rdbpot(int32_t x, int32_t exponent)
{
    const int32_t mask = (int32_t)((1u << exponent) - 1u);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0);
    return (x >> exponent) + (remainder > threshold);
}

/* TFLite MultiplyByQuantizedMultiplier (double rounding): x * 2^left wraps like the
 * int32 product in TFLite, then SRDHM, then a rounding right shift. */
static inline int32_t kml_mbqm_inline(int32_t x, int32_t multiplier, int32_t shift)
{
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = shift > 0 ? 0 : -shift;
    return kml_rdbpot(kml_srdhm((int32_t)((uint32_t)x << left), multiplier), right);
}

/* clamp(out_offset + mbqm(acc + bias, mult, shift)) as int8: every conv/FC output. */
static inline int8_t kml_requant_s8(int32_t acc, int32_t multiplier, int32_t shift,
                                    int32_t out_offset, int32_t act_min, int32_t act_max)
{
    return (int8_t)kml_clamp32(kml_mbqm_inline(acc, multiplier, shift) + out_offset, act_min,
                               act_max);
}

/* One output channel's requantization with the per-channel work done once: the kernels
 * call kml_rq_init per channel and kml_rq_apply per output (same arithmetic as
 * kml_mbqm_inline: wrapping left shift, SRDHM, RoundingDivideByPOT). */
typedef struct {
    int32_t mult, left, right, mask, half;
} kml_rq;

static inline void kml_rq_init(kml_rq *r, int32_t multiplier, int32_t shift)
{
    r->mult = multiplier;
    r->left = shift > 0 ? shift : 0;
    r->right = shift > 0 ? 0 : -shift;
    r->mask = (int32_t)((1u << r->right) - 1u);
    r->half = r->mask >> 1;
}

static inline int32_t kml_rq_apply(const kml_rq *r, int32_t acc)
{
    const int32_t s = kml_srdhm((int32_t)((uint32_t)acc << r->left), r->mult);
    return (s >> r->right) + ((s & r->mask) > r->half + (s < 0));
}

/* out_offset + requantized acc, clamped to the activation range, as int8. */
static inline int8_t kml_rq_s8(const kml_rq *r, int32_t acc, int32_t out_offset,
                               int32_t act_min, int32_t act_max)
{
    int32_t v = kml_rq_apply(r, acc) + out_offset;
    v = v < act_min ? act_min : v;
    return (int8_t)(v > act_max ? act_max : v);
}

/* The taps [*first, *end) of a filter axis whose input coordinate origin + k * dilation
 * lies inside [0, size): TFLM's is_point_inside_image test, hoisted out of the loops. */
static inline void kml_valid_taps(int32_t origin, int32_t dilation, int32_t taps,
                                  int32_t size, int32_t *first, int32_t *end)
{
    int32_t a = 0, b = taps;
    while (a < taps && origin + a * dilation < 0) {
        ++a;
    }
    while (b > a && origin + (b - 1) * dilation >= size) {
        --b;
    }
    *first = a;
    *end = b;
}

void kml_fc_s8_portable(int32_t rows, int32_t depth, int32_t out_features, const int8_t *in,
                        const int8_t *w, const int32_t *bias, int32_t in_offset,
                        int32_t w_offset, int32_t out_offset, const int32_t *mult,
                        const int32_t *shift, int32_t per_channel, int32_t act_min,
                        int32_t act_max, int8_t *out, int16_t *scratch);
void kml_conv2d_s8_portable(const kml_conv_params *p, const int8_t *in, const int8_t *filter,
                            const int32_t *bias, const int32_t *mult, const int32_t *shift,
                            int8_t *out, int16_t *scratch);
void kml_dwconv2d_s8_portable(const kml_conv_params *p, const int8_t *in,
                              const int8_t *filter, const int32_t *bias, const int32_t *mult,
                              const int32_t *shift, int8_t *out, int16_t *scratch);

#ifdef __cplusplus
}
#endif

#endif /* KML_NN_INTERNAL_H */
