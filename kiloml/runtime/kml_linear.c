/* SPDX-License-Identifier: Apache-2.0 */
/* kiloml runtime: linear classifiers, exact. See kml_linear.h. */
#include "kml_fp.h" /* first: no float contraction, no fast-math */

#include "kml_linear.h"

#include <math.h> /* fabsf, isfinite */
#include <string.h>

#include "kml_math.h"

#if KML_LINEAR_LIMBS < 4
#error "KML_LINEAR_LIMBS must be at least 4"
#endif

/* Two non-negative fixed-point numbers (positive and negative terms apart, so adding
 * never borrows); bit j of limb i weighs 2^(lsb_exponent + 32 i + j). */
typedef struct {
    uint32_t pos[KML_LINEAR_LIMBS];
    uint32_t neg[KML_LINEAR_LIMBS];
} kml_linear_acc;

static void kml_linear_add_limbs(uint32_t *acc, int32_t index, const uint32_t *v)
{
    uint64_t carry = 0;
    int32_t i;
    for (i = 0; i < 4; ++i) {
        carry += (uint64_t)acc[index + i] + v[i];
        acc[index + i] = (uint32_t)carry;
        carry >>= 32;
    }
    for (i = index + 4; carry != 0 && i < KML_LINEAR_LIMBS; ++i) {
        carry += acc[i];
        acc[i] = (uint32_t)carry;
        carry >>= 32;
    }
}

/* Add (-1)^negative * mx * 2^ex * w (w: IEEE double bits lo, hi; mx < 2^24) exactly. */
static void kml_linear_add_product(kml_linear_acc *acc, const kml_linear_model *m,
                                   uint32_t negative, uint32_t mx, int32_t ex, uint32_t lo,
                                   uint32_t hi)
{
    const uint32_t e = (hi >> 20) & 0x7FFu;
    const uint32_t mant_hi = (hi & 0xFFFFFu) | (e != 0 ? 0x100000u : 0u);
    const int32_t ew = e != 0 ? (int32_t)e - 1075 : -1074;
    uint64_t p_lo, t;
    uint32_t l0, l1, l2, v[4];
    int32_t bit, index, shift;
    if (mx == 0 || (mant_hi == 0 && lo == 0)) {
        return;
    }
    p_lo = (uint64_t)mx * lo;                   /* < 2^56 */
    t = (p_lo >> 32) + (uint64_t)mx * mant_hi; /* < 2^46 */
    l0 = (uint32_t)p_lo;
    l1 = (uint32_t)t;
    l2 = (uint32_t)(t >> 32);
    bit = ex + ew - m->lsb_exponent;
    index = bit >> 5;
    shift = bit & 31;
    /* the generator sizes the accumulator so that this never fails; the check keeps a
     * wrong table from writing outside it */
    if (bit < 0 || index + 4 > KML_LINEAR_LIMBS) {
        return;
    }
    if (shift == 0) {
        v[0] = l0;
        v[1] = l1;
        v[2] = l2;
        v[3] = 0;
    } else {
        v[0] = l0 << shift;
        v[1] = (l1 << shift) | (l0 >> (32 - shift));
        v[2] = (l2 << shift) | (l1 >> (32 - shift));
        v[3] = l2 >> (32 - shift);
    }
    kml_linear_add_limbs((hi >> 31) ^ negative ? acc->neg : acc->pos, index, v);
}

/* x as (-1)^sign * mant * 2^exp, mant < 2^24 (0 for zero). */
static uint32_t kml_linear_f32_parts(float x, uint32_t *mant, int32_t *exp)
{
    uint32_t bits, e;
    memcpy(&bits, &x, sizeof bits);
    e = (bits >> 23) & 0xFFu;
    if (e == 0) {
        *mant = bits & 0x7FFFFFu;
        *exp = -149;
    } else {
        *mant = (bits & 0x7FFFFFu) | 0x800000u;
        *exp = (int32_t)e - 150;
    }
    return bits >> 31;
}

static void kml_linear_add_score(kml_linear_acc *acc, const kml_linear_model *m,
                                 const float *x, int32_t k, uint32_t negative)
{
    const uint32_t *w = &m->weights64[2 * k * m->n_features];
    uint32_t mx;
    int32_t i, ex;
    kml_linear_add_product(acc, m, negative, 1u, 0, m->bias64[2 * k], m->bias64[2 * k + 1]);
    for (i = 0; i < m->n_features; ++i) {
        const uint32_t sx = kml_linear_f32_parts(x[i], &mx, &ex);
        kml_linear_add_product(acc, m, negative ^ sx, mx, ex, w[2 * i], w[2 * i + 1]);
    }
}

int32_t kml_linear_exact_sign(const kml_linear_model *m, const float *x, int32_t a,
                              int32_t b)
{
    kml_linear_acc acc;
    int32_t i;
    for (i = 0; i < KML_LINEAR_LIMBS; ++i) {
        acc.pos[i] = 0;
        acc.neg[i] = 0;
    }
    kml_linear_add_score(&acc, m, x, a, 0u);
    if (b >= 0) {
        kml_linear_add_score(&acc, m, x, b, 1u);
    }
    for (i = KML_LINEAR_LIMBS - 1; i >= 0; --i) {
        if (acc.pos[i] != acc.neg[i]) {
            return acc.pos[i] > acc.neg[i] ? 1 : -1;
        }
    }
    return 0;
}

/* The next float above a positive finite float. */
static float kml_linear_next_up(float v)
{
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    ++bits;
    memcpy(&v, &bits, sizeof v);
    return v;
}

static void kml_linear_scores(const kml_linear_model *m, const float *s, int32_t finite,
                              int32_t label, float *scores)
{
    const int32_t k = m->n_classes;
    float z[KML_LINEAR_MAX_SCORES + 1], top, sum = 0.0f;
    int32_t c, first = 0;
    if (!finite) {
        for (c = 0; c < k; ++c) {
            scores[c] = c == label ? 1.0f : 0.0f;
        }
        return;
    }
    if (m->n_scores == 1) { /* [0, z]: 1 - sigmoid(z), sigmoid(z) */
        z[0] = 0.0f;
        z[1] = s[0];
    } else {
        for (c = 0; c < m->n_scores && c < KML_LINEAR_MAX_SCORES; ++c) {
            z[c] = s[c];
        }
    }
    if (m->proba == 1) { /* one-vs-rest: sigmoids, normalized */
        for (c = 0; c < k; ++c) {
            scores[c] = 1.0f / (1.0f + kml_expf(-z[c]));
            sum += scores[c];
        }
    } else {
        top = z[0];
        for (c = 1; c < k; ++c) {
            if (z[c] > top) {
                top = z[c];
            }
        }
        for (c = 0; c < k; ++c) {
            scores[c] = kml_expf(z[c] - top);
            sum += scores[c];
        }
    }
    if (sum == 0.0f) { /* every sigmoid underflowed */
        for (c = 0; c < k; ++c) {
            scores[c] = c == label ? 1.0f : 0.0f;
        }
        return;
    }
    for (c = 0; c < k; ++c) {
        scores[c] = scores[c] / sum;
    }
    for (c = 1; c < k; ++c) {
        if (scores[c] > scores[first]) {
            first = c;
        }
    }
    if (first != label) {
        scores[label] = kml_linear_next_up(scores[first]);
    }
}

int32_t kml_linear_predict(const kml_linear_model *m, const float *x, float *scores,
                           int32_t *path)
{
    const int32_t n = m->n_features, ns = m->n_scores;
    float s[KML_LINEAR_MAX_SCORES];
    float bound_sum = m->bias_magnitude, e;
    int32_t i, k, label, best = 0, finite = m->fast, fast;
    if (ns < 1 || ns > KML_LINEAR_MAX_SCORES || m->n_classes != (ns == 1 ? 2 : ns)) {
        return -1; /* a model this build's kml_config.h is not sized for */
    }
    for (i = 0; i < n; ++i) {
        if (!isfinite(x[i])) {
            for (k = 0; k < m->n_classes; ++k) {
                scores[k] = 0.0f;
            }
            if (path != NULL) {
                *path = KML_LINEAR_PATH_INVALID;
            }
            return -1;
        }
    }
    for (k = 0; k < ns; ++k) {
        const float *w = &m->weights[k * n];
        float acc = m->bias[k];
        for (i = 0; i < n; ++i) {
            acc = acc + x[i] * w[i];
        }
        s[k] = acc;
        finite = finite && isfinite(acc);
    }
    for (i = 0; i < n; ++i) {
        bound_sum = bound_sum + fabsf(x[i]) * m->magnitude[i];
    }
    e = m->bound_scale * bound_sum + m->bound_floor;
    fast = finite && isfinite(e);
    if (ns == 1) {
        if (fast && s[0] > e) {
            label = 1;
        } else if (fast && s[0] < -e) {
            label = 0;
        } else {
            fast = 0;
            label = kml_linear_exact_sign(m, x, 0, -1) > 0 ? 1 : 0;
        }
    } else {
        const float twice = e + e;
        for (k = 1; k < ns; ++k) {
            if (s[k] > s[best]) {
                best = k;
            }
        }
        for (k = 0; k < ns && fast; ++k) {
            if (k != best && !(s[best] - s[k] > twice)) {
                fast = 0;
            }
        }
        label = best;
        if (!fast) {
            /* the exact arg-max among the scores within the bound of the leader (all of
             * them when the float32 scores are unusable), in index order */
            label = -1;
            for (k = 0; k < ns; ++k) {
                int32_t sign;
                if (finite && k != best && s[best] - s[k] > twice) {
                    continue;
                }
                if (label < 0) {
                    label = k;
                    continue;
                }
                sign = kml_linear_exact_sign(m, x, k, label);
                if (sign > 0 || (sign == 0 && m->tie_last)) {
                    label = k;
                }
            }
        }
    }
    if (path != NULL) {
        *path = fast ? KML_LINEAR_PATH_FAST : KML_LINEAR_PATH_EXACT;
    }
    kml_linear_scores(m, s, finite, label, scores);
    return label;
}
