/* SPDX-License-Identifier: Apache-2.0 */
/* kiloml runtime: decision tree ensembles. See kml_trees.h. */
#include "kml_fp.h" /* first: no float contraction, no fast-math */

#include "kml_trees.h"

#if KML_TREE_PROBA == 1 || KML_TREE_PROBA == 2
#include "kml_f64.h"
#endif

#define KML_BIT(bits, i) (((bits)[(i) >> 3] >> ((i) & 7)) & 1u)
#define KML_HEAD_BITS (8 * (int32_t)sizeof(KML_TREE_HEAD_T))
#define KML_LEFT_LEAF ((uint32_t)1u << (KML_HEAD_BITS - 1))
#define KML_RIGHT_LEAF ((uint32_t)1u << (KML_HEAD_BITS - 2))
#define KML_FEATURE_MASK (KML_RIGHT_LEAF - 1u)

#if KML_TREE_INT16_THRESHOLDS
/* clamp(floor(v), -32767, 32767), KML_TREE_QNAN for NaN. Two exact forms: */
#if KML_TREE_FLOOR_FROM_BITS
/* from the float's bits: no float comparisons or conversions, which are library calls
 * on a core without an FPU */
static int32_t kml_floor_clamp(float v)
{
    union {
        float f;
        uint32_t u;
    } bits;
    uint32_t m, frac;
    int32_t e, n, negative;
    bits.f = v;
    negative = (int32_t)(bits.u >> 31);
    e = (int32_t)((bits.u >> 23) & 0xFFu) - 127; /* |v| = 1.m * 2^e */
    if (e == 128 && (bits.u & 0x7FFFFFu) != 0u) {
        return KML_TREE_QNAN;
    }
    if (e >= 15) { /* |v| >= 32768, or infinite */
        return negative ? -32767 : 32767;
    }
    if (e < 0) { /* |v| < 1: floor is 0, or -1 below zero (-0.0 floors to 0) */
        return (negative && (bits.u & 0x7FFFFFFFu) != 0u) ? -1 : 0;
    }
    m = (bits.u & 0x7FFFFFu) | 0x800000u; /* v = m * 2^(e - 23), e in [0, 14] */
    n = (int32_t)(m >> (23 - e));
    if (negative) {
        frac = m & ((1u << (23 - e)) - 1u);
        n = -n - (frac != 0u ? 1 : 0);
        if (n < -32767) {
            n = -32767;
        }
    }
    return n; /* <= 32767: e <= 14 */
}
#else
/* with the FPU: compare, truncate, step down when that rounded up */
static int32_t kml_floor_clamp(float v)
{
    int32_t n;
    if (v > -32767.0f) {
        if (v < 32767.0f) {
            n = (int32_t)v; /* toward zero, then floor */
            if ((float)n > v) {
                n -= 1;
            }
        } else {
            n = 32767;
        }
    } else if (v <= -32767.0f) {
        n = -32767;
    } else {
        n = KML_TREE_QNAN; /* unordered: NaN */
    }
    return n;
}
#endif

void kml_forest_quantize(const kml_forest_t *forest, const float *x, int16_t *q)
{
    int32_t u;
    for (u = 0; u < forest->n_inputs; ++u) {
        const float v = (x[forest->input_feature[u]] - forest->input_offset[u]) *
                        forest->input_scale[u];
        q[u] = (int16_t)kml_floor_clamp(v);
    }
}
#endif

uint32_t kml_forest_leaf(const kml_forest_t *forest, int32_t tree,
                         const kml_tree_value_t *x)
{
    const int32_t base = (int32_t)forest->tree_base[tree];
    int32_t node = 0, depth;
    for (depth = 0; depth < forest->max_depth; ++depth) {
        const int32_t i = base + node;
        const uint32_t head = forest->head[i];
#if KML_TREE_INT16_THRESHOLDS
        const int32_t v = x[head & KML_FEATURE_MASK];
#if KML_TREE_INDEXED_THRESHOLDS
        const int32_t threshold = forest->threshold[forest->threshold_index[i]];
#else
        const int32_t threshold = forest->threshold[i];
#endif
#define KML_GOES_LEFT (v <= threshold && (v != KML_TREE_QNAN || KML_BIT(forest->nan_left, i)))
#else
        const float v = x[head & KML_FEATURE_MASK];
#if KML_TREE_INDEXED_THRESHOLDS
        const float threshold = forest->threshold[forest->threshold_index[i]];
#else
        const float threshold = forest->threshold[i];
#endif
/* One comparison: <= goes left, > goes right, unordered (NaN) as recorded. */
#define KML_GOES_LEFT (v <= threshold || (!(v > threshold) && KML_BIT(forest->nan_left, i)))
#endif
        uint32_t ref, is_leaf;
        if (KML_GOES_LEFT) {
            ref = forest->left[i];
            is_leaf = head & KML_LEFT_LEAF;
        } else {
            ref = forest->right[i];
            is_leaf = head & KML_RIGHT_LEAF;
        }
        if (is_leaf) {
            return ref;
        }
        node = (int32_t)ref;
    }
    return 0u; /* not reached: max_depth bounds every tree kiloml emits */
}

int32_t kml_forest_predict(const kml_forest_t *forest, const float *x, float *scores)
{
    uint16_t payloads[KML_TREE_MAX_TREES];
    int32_t t;
#if KML_TREE_INT16_THRESHOLDS
    int16_t q[KML_TREE_MAX_INPUTS];
    kml_forest_quantize(forest, x, q);
#else
    const float *q = x;
#endif
    for (t = 0; t < forest->n_trees; ++t) {
        payloads[t] = (uint16_t)kml_forest_leaf(forest, t, q);
    }
    return kml_forest_vote(forest, payloads, scores);
}

#if KML_TREE_PROBA == 0

int32_t kml_forest_vote(const kml_forest_t *forest, const uint16_t *payloads, float *scores)
{
    int32_t votes[KML_TREE_MAX_CLASSES];
    int32_t t, k, best = 0;
    for (k = 0; k < KML_TREE_MAX_CLASSES; ++k) {
        votes[k] = 0;
    }
    for (t = 0; t < forest->n_trees; ++t) {
        votes[payloads[t]] += 1;
    }
    for (k = 0; k < forest->n_classes; ++k) {
        scores[k] = (float)votes[k] * forest->inv_trees;
        if (votes[k] > votes[best]) {
            best = k;
        }
    }
    return best;
}

#elif KML_TREE_PROBA == 3

int32_t kml_forest_vote(const kml_forest_t *forest, const uint16_t *payloads, float *scores)
{
    int32_t sums[KML_TREE_MAX_CLASSES];
    int32_t t, k, best = 0;
    for (k = 0; k < KML_TREE_MAX_CLASSES; ++k) {
        sums[k] = 0;
    }
    for (t = 0; t < forest->n_trees; ++t) {
        const int32_t p = (int32_t)payloads[t];
        if (p < forest->n_classes) {
            sums[p] += forest->leaf_total;
        } else {
            const int32_t m = p - forest->n_classes;
#if KML_TREE_SPARSE_LEAVES
            uint32_t e;
            for (e = forest->leaf_start[m]; e < forest->leaf_start[m + 1]; ++e) {
                sums[forest->entry_class[e]] += (int32_t)forest->entry_num[e];
            }
#else
            const KML_TREE_FRACTION_T *row = forest->entry_num + m * forest->n_classes;
            for (k = 0; k < forest->n_classes; ++k) {
                sums[k] += (int32_t)row[k];
            }
#endif
        }
    }
    for (k = 0; k < forest->n_classes; ++k) {
        scores[k] = (float)sums[k] * forest->inv_trees;
        if (sums[k] > sums[best]) {
            best = k;
        }
    }
    return best;
}

#else /* KML_TREE_PROBA 1 or 2 */

/* Visit the class entries of mixed leaf m: calls BODY with `k` (class) and, in mode 1,
 * `num` / `den`, in mode 2, `value` (float64 bits), in ascending class order. */
#if KML_TREE_PROBA == 1 && KML_TREE_SPARSE_LEAVES
#define KML_FOR_ENTRIES(forest, m, BODY)                                                   \
    do {                                                                                   \
        const uint32_t first_ = (forest)->leaf_start[m], end_ = (forest)->leaf_start[(m) + 1]; \
        uint32_t den = 0u, e_;                                                             \
        for (e_ = first_; e_ < end_; ++e_) {                                               \
            den += (forest)->entry_num[e_];                                                \
        }                                                                                  \
        for (e_ = first_; e_ < end_; ++e_) {                                               \
            const int32_t k = (int32_t)(forest)->entry_class[e_];                          \
            const uint32_t num = (forest)->entry_num[e_];                                  \
            BODY;                                                                          \
        }                                                                                  \
    } while (0)
#elif KML_TREE_PROBA == 1
#define KML_FOR_ENTRIES(forest, m, BODY)                                                   \
    do {                                                                                   \
        const KML_TREE_FRACTION_T *row_ = (forest)->entry_num + (m) * (forest)->n_classes; \
        uint32_t den = 0u;                                                                 \
        int32_t k;                                                                         \
        for (k = 0; k < (forest)->n_classes; ++k) {                                        \
            den += row_[k];                                                                \
        }                                                                                  \
        for (k = 0; k < (forest)->n_classes; ++k) {                                        \
            const uint32_t num = row_[k];                                                  \
            if (num != 0u) {                                                               \
                BODY;                                                                      \
            }                                                                              \
        }                                                                                  \
    } while (0)
#else
#define KML_FOR_ENTRIES(forest, m, BODY)                                                   \
    do {                                                                                   \
        uint32_t e_;                                                                       \
        for (e_ = (forest)->leaf_start[m]; e_ < (forest)->leaf_start[(m) + 1]; ++e_) {     \
            const int32_t k = (int32_t)(forest)->entry_class[e_];                          \
            const kml_f64_t value = (forest)->entry_value[e_];                             \
            BODY;                                                                          \
        }                                                                                  \
    } while (0)
#endif

#if KML_TREE_PROBA == 1
#define KML_FAST_TERM ((float)num / (float)den)
#define KML_EXACT_TERM kml_f64_ratio(num, den)
#else
#define KML_FAST_TERM kml_f64_to_f32(value)
#define KML_EXACT_TERM value
#endif

/* scikit-learn's arithmetic, exactly: float64 sums in tree order, divided by the
 * number of trees, first arg-max. */
int32_t kml_forest_exact_vote(const kml_forest_t *forest, const uint16_t *payloads,
                              float *scores)
{
    kml_f64_t acc[KML_TREE_MAX_CLASSES];
    kml_f64_t top;
    int32_t t, k, best = 0;
    for (k = 0; k < KML_TREE_MAX_CLASSES; ++k) {
        acc[k] = KML_F64_ZERO;
    }
    for (t = 0; t < forest->n_trees; ++t) {
        const int32_t p = (int32_t)payloads[t];
        if (p < forest->n_classes) {
            acc[p] = kml_f64_add(acc[p], KML_F64_ONE);
        } else {
            const int32_t m = p - forest->n_classes;
            KML_FOR_ENTRIES(forest, m, acc[k] = kml_f64_add(acc[k], KML_EXACT_TERM));
        }
    }
    for (k = 0; k < forest->n_classes; ++k) {
        scores[k] = kml_f64_to_f32(acc[k]) * forest->inv_trees;
        if (acc[k] > acc[best]) { /* non-negative doubles order as their bits */
            best = k;
        }
    }
    /* Dividing by the number of trees keeps the order but may round a slightly
     * smaller sum of a lower class onto the same quotient: then that class is
     * scikit-learn's first arg-max. Only sums within a few units of the last place
     * can meet that way. */
    top = kml_f64_div_u32(acc[best], (uint32_t)forest->n_trees);
    for (k = 0; k < best; ++k) {
        if (acc[best] - acc[k] <= 4u &&
            kml_f64_div_u32(acc[k], (uint32_t)forest->n_trees) == top) {
            return k;
        }
    }
    return best;
}

int32_t kml_forest_vote(const kml_forest_t *forest, const uint16_t *payloads, float *scores)
{
    float sums[KML_TREE_MAX_CLASSES];
    float lead, second = 0.0f;
    int32_t t, k, best = 0;
#if defined(KML_TREE_ALWAYS_EXACT) /* a test hook: every vote through the exact path */
    return kml_forest_exact_vote(forest, payloads, scores);
#endif
    for (k = 0; k < KML_TREE_MAX_CLASSES; ++k) { /* the bound the compiler can see */
        sums[k] = 0.0f;
    }
    for (t = 0; t < forest->n_trees; ++t) {
        const int32_t p = (int32_t)payloads[t];
        if (p < forest->n_classes) {
            sums[p] += 1.0f;
        } else {
            const int32_t m = p - forest->n_classes;
            KML_FOR_ENTRIES(forest, m, sums[k] += KML_FAST_TERM);
        }
    }
    /* The first maximum and the largest of the others, in one pass. */
    lead = sums[0];
    for (k = 1; k < forest->n_classes; ++k) {
        const float v = sums[k];
        if (v > lead) {
            second = lead;
            lead = v;
            best = k;
        } else if (v > second) {
            second = v;
        }
    }
    if (!(lead - second > forest->margin)) {
        return kml_forest_exact_vote(forest, payloads, scores); /* too close for float32 */
    }
    for (k = 0; k < forest->n_classes; ++k) {
        scores[k] = sums[k] * forest->inv_trees;
    }
    return best;
}

#endif
