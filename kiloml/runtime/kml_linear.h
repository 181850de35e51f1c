/* SPDX-License-Identifier: Apache-2.0 */
/* kiloml runtime: linear classifiers (LogisticRegression, LinearSVC, RidgeClassifier,
 * SGDClassifier, Perceptron, one-vs-rest of those) that decide exactly as
 * scikit-learn's predict.
 *
 * scikit-learn scores x @ coef.T + intercept in float64 and takes the first arg-max
 * (one-vs-rest: the last), or score > 0 with one score (two classes). The label here
 * is the arg-max of the exact real-number scores of the float32 input and the float64
 * coefficients, which is scikit-learn's answer wherever its float64 rounding cannot
 * change it (see docs/architecture.md, "Numerics contract"):
 *
 *   1. fast path: float32 scores s_k = b32_k + x_0 w32_k0 + x_1 w32_k1 + ... in that
 *      order, and a bound e on |s_k - exact score| computed from |x| (the error
 *      analysis is in kiloml/models/linear_tables.py). A leader ahead of every other
 *      score by more than 2e, or one score farther than e from 0, is the exact answer.
 *   2. exact path, otherwise (near ties, float32 overflow): the differences of the
 *      remaining candidates' scores are summed exactly in a fixed-point accumulator of
 *      KML_LINEAR_LIMBS 32-bit words (every product of a float32 and a float64 is an
 *      integer times a power of two), and their signs decide.
 *
 * A feature that is NaN or infinite (scikit-learn refuses such input) gives label -1
 * and all scores 0. Scores are float32: the softmax of the scores (one score z: of
 * [0, z], i.e. [1 - sigmoid(z), sigmoid(z)]), or for one-vs-rest logistic models the
 * normalized sigmoids, as predict_proba; one-hot when the float32 scores overflow.
 * Where their first arg-max is not the exact label, the label's score is raised to
 * the next float above the top one, so scores and label agree.
 *
 * kml_config.h defines KML_LINEAR_MAX_SCORES (scores of the largest model) and
 * KML_LINEAR_LIMBS (accumulator words, from the coefficients' exponent range).
 */
#ifndef KML_LINEAR_H
#define KML_LINEAR_H

#include <stdint.h>

#ifndef KML_MODEL_CONFIG /* a prefixed library's <prefix>_config.h, included first */
#include "kml_config.h"
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define KML_LINEAR_PATH_FAST 0
#define KML_LINEAR_PATH_EXACT 1
#define KML_LINEAR_PATH_INVALID 2

typedef struct {
    int32_t n_features;
    int32_t n_scores;       /* 1: two classes (score > 0 is class 1), else n_classes */
    int32_t n_classes;
    int32_t tie_last;       /* 1: the last of equal top scores wins (one-vs-rest) */
    int32_t proba;          /* 0: softmax, 1: normalized sigmoids (one-vs-rest) */
    int32_t fast;           /* 0: coefficients beyond float32: always the exact path */
    const float *weights;   /* [n_scores][n_features], float32 (0 below FLT_MIN) */
    const float *bias;      /* [n_scores] */
    const float *magnitude; /* [n_features]: bound weights (max over scores) */
    float bias_magnitude;   /* max over scores of the intercepts' bound weight */
    float bound_scale;      /* e = bound_scale * (bias_magnitude + sum |x_i| m_i) ... */
    float bound_floor;      /* ... + bound_floor */
    const uint32_t *weights64; /* [n_scores][n_features][2]: float64 bits, low word first */
    const uint32_t *bias64;    /* [n_scores][2] */
    int32_t lsb_exponent;   /* weight of the accumulators' lowest bit: 2^lsb_exponent */
} kml_linear_model;

/* The class index (or -1 for a non-finite feature); scores[n_classes]. *path (may be
 * NULL) says which path decided: KML_LINEAR_PATH_FAST, _EXACT or _INVALID. */
int32_t kml_linear_predict(const kml_linear_model *m, const float *x, float *scores,
                           int32_t *path);

/* The sign (-1, 0, 1) of the exact score a minus the exact score b (b < 0: of score a
 * alone) for finite x. The exact path of kml_linear_predict; public for tests. */
int32_t kml_linear_exact_sign(const kml_linear_model *m, const float *x, int32_t a,
                              int32_t b);

#ifdef __cplusplus
}
#endif

#endif /* KML_LINEAR_H */
