/* SPDX-License-Identifier: Apache-2.0 */
/* kiloml runtime: decision tree ensembles (DecisionTree, RandomForest, ExtraTrees)
 * that decide exactly as scikit-learn's predict, for every input.
 *
 * Nodes: a head holds the feature index in its low bits and, in its two top bits,
 * whether the left and the right child is a leaf. Walking: thresholds are float32
 * values rounded down from scikit-learn's
 * float64 thresholds, so `x <= threshold` takes scikit-learn's branch for every
 * float32 x; a NaN feature goes where scikit-learn sends missing values. A walk
 * ends in a leaf payload: p < n_classes is a pure leaf of class p, otherwise row
 * p - n_classes of the mixed-leaf table (the class fractions of that leaf).
 *
 * Compact thresholds (KML_TREE_INT16_THRESHOLDS): each feature the trees use is
 * quantized once per prediction, q = clamp(floor((x - offset) * scale), -32767, 32767)
 * in float32 (NaN -> KML_TREE_QNAN), and nodes compare q <= an int16 threshold; the
 * Python mirror computes the same integers (kiloml/models/forest_compact.py).
 *
 * Voting (KML_TREE_PROBA):
 *   0  every leaf is pure: class votes counted in integers, first arg-max.
 *   1  mixed leaves hold exact fractions num/den (small integers);
 *   2  mixed leaves hold the fractions as float64 bit patterns.
 *   3  mixed leaves hold integer class weights summing to leaf_total (a pure leaf
 *      weighs leaf_total): int32 sums, first arg-max, no float64 path.
 * In modes 1 and 2 the class scores are first summed in float32, in tree order;
 * when the best class leads the next by more than `margin` (a bound on the float32
 * error, computed when the model is emitted) that is scikit-learn's answer.
 * Otherwise the scores are recomputed as scikit-learn computes them, in float64
 * (sums in tree order, divided by the number of trees), with exact integer
 * arithmetic (kml_f64), and the first arg-max of those is returned.
 */
#ifndef KML_TREES_H
#define KML_TREES_H

#include <stdint.h>

#ifndef KML_MODEL_CONFIG /* a prefixed library's <prefix>_config.h, included first */
#include "kml_config.h"
#endif

#ifdef __cplusplus
extern "C" {
#endif

#ifndef KML_TREE_HEAD_T
#define KML_TREE_HEAD_T uint16_t /* uint8_t when there are at most 64 features */
#endif
#ifndef KML_TREE_REF_T
#define KML_TREE_REF_T uint16_t /* uint8_t when trees are small enough */
#endif
#ifndef KML_TREE_BASE_T
#define KML_TREE_BASE_T uint16_t
#endif
#ifndef KML_TREE_CLASS_T
#define KML_TREE_CLASS_T uint8_t
#endif
#ifndef KML_TREE_FRACTION_T
#define KML_TREE_FRACTION_T uint16_t
#endif
#ifndef KML_TREE_MAX_CLASSES
#define KML_TREE_MAX_CLASSES 16
#endif
#ifndef KML_TREE_MAX_TREES
#define KML_TREE_MAX_TREES 64
#endif
#ifndef KML_TREE_PROBA
#define KML_TREE_PROBA 0
#endif
#ifndef KML_TREE_SPARSE_LEAVES
#define KML_TREE_SPARSE_LEAVES 1
#endif
#ifndef KML_TREE_INDEXED_THRESHOLDS
#define KML_TREE_INDEXED_THRESHOLDS 0 /* 1: nodes index a table of distinct thresholds */
#endif
#ifndef KML_TREE_THRESHOLD_INDEX_T
#define KML_TREE_THRESHOLD_INDEX_T uint8_t
#endif
#ifndef KML_TREE_INT16_THRESHOLDS
#define KML_TREE_INT16_THRESHOLDS 0 /* 1: nodes compare quantized inputs (int16) */
#endif
#ifndef KML_TREE_MAX_INPUTS
#define KML_TREE_MAX_INPUTS 1 /* int16 thresholds: the number of quantized inputs */
#endif
#ifndef KML_TREE_INPUT_INDEX_T
#define KML_TREE_INPUT_INDEX_T uint8_t
#endif

#ifndef KML_TREE_FLOOR_FROM_BITS /* how kml_forest_quantize floors (same results) */
#if defined(__arm__) && !defined(__ARM_FP)
#define KML_TREE_FLOOR_FROM_BITS 1 /* soft float: integer operations on the bits */
#else
#define KML_TREE_FLOOR_FROM_BITS 0 /* FPU compares and conversions */
#endif
#endif

#define KML_TREE_QNAN (-32768) /* a NaN feature, quantized; below every threshold */

#if KML_TREE_INT16_THRESHOLDS
typedef int16_t kml_tree_value_t; /* what the walk compares: quantized inputs */
#else
typedef float kml_tree_value_t; /* the features themselves */
#endif

typedef struct {
    int32_t n_trees;
    int32_t n_classes;
    int32_t max_depth;    /* bounds every walk */
    float margin;         /* modes 1, 2: the float32 fast path decides above this lead */
    float inv_trees;      /* 1 / n_trees (mode 3: 1 / (n_trees * leaf_total)), for the
                             scores */
#if KML_TREE_PROBA == 3
    int32_t leaf_total;   /* the weight of a pure leaf */
#endif
    /* Internal nodes of all trees, each tree in pre-order from its root. */
    const KML_TREE_BASE_T *tree_base;            /* first node of each tree */
    const KML_TREE_HEAD_T *head;                 /* feature index, left/right-is-leaf bits */
    const kml_tree_value_t *threshold;           /* per node, or the table of distinct ones */
    const KML_TREE_THRESHOLD_INDEX_T *threshold_index; /* per node when thresholds are shared */
    const KML_TREE_REF_T *left;                  /* a node of the same tree (relative to its */
    const KML_TREE_REF_T *right;                 /* root) or a leaf payload, see *_leaf bits */
    const uint8_t *nan_left;                     /* bit i (LSB first): NaN goes left at node i */
    /* Mixed leaves (modes 1, 2). */
    const uint16_t *leaf_start;                  /* sparse rows: entries [start[m], start[m+1]) */
    const KML_TREE_CLASS_T *entry_class;
    const KML_TREE_FRACTION_T *entry_num;        /* mode 1: numerators (sparse, or dense [m][k]);
                                                    a leaf's denominator is their sum */
    const uint64_t *entry_value;                 /* mode 2: float64 bit patterns (sparse) */
#if KML_TREE_INT16_THRESHOLDS
    /* The quantized inputs (head feature indices index these). */
    int32_t n_inputs;
    const KML_TREE_INPUT_INDEX_T *input_feature; /* the feature each input quantizes */
    const float *input_offset;
    const float *input_scale;
#endif
} kml_forest_t;

#if KML_TREE_INT16_THRESHOLDS
/* q[u] = clamp(floor((x[input_feature[u]] - offset[u]) * scale[u]), -32767, 32767), in
 * float32; KML_TREE_QNAN for NaN. */
void kml_forest_quantize(const kml_forest_t *forest, const float *x, int16_t *q);
#endif

/* Leaf payload reached in tree `tree` for `x`: the features, or with int16 thresholds
 * the quantized inputs (kml_forest_quantize). */
uint32_t kml_forest_leaf(const kml_forest_t *forest, int32_t tree,
                         const kml_tree_value_t *x);

/* Walk every tree, then vote: the class index (scikit-learn's predict) and scores. */
int32_t kml_forest_predict(const kml_forest_t *forest, const float *x, float *scores);

/* Vote from the leaf payloads of every tree. */
int32_t kml_forest_vote(const kml_forest_t *forest, const uint16_t *payloads, float *scores);

/* The float64 vote of scikit-learn, computed exactly (modes 1 and 2); generated inline
 * trees call it when their float32 sums are too close to decide. */
int32_t kml_forest_exact_vote(const kml_forest_t *forest, const uint16_t *payloads,
                              float *scores);

#ifdef __cplusplus
}
#endif

#endif
