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
 * Voting (KML_TREE_PROBA):
 *   0  every leaf is pure: class votes counted in integers, first arg-max.
 *   1  mixed leaves hold exact fractions num/den (small integers);
 *   2  mixed leaves hold the fractions as float64 bit patterns.
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

#include "kml_config.h"

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

typedef struct {
    int32_t n_trees;
    int32_t n_classes;
    int32_t max_depth;    /* bounds every walk */
    float margin;         /* modes 1, 2: the float32 fast path decides above this lead */
    float inv_trees;      /* 1 / n_trees, for the scores */
    /* Internal nodes of all trees, each tree in pre-order from its root. */
    const KML_TREE_BASE_T *tree_base;            /* first node of each tree */
    const KML_TREE_HEAD_T *head;                 /* feature index, left/right-is-leaf bits */
    const float *threshold;                      /* per node, or the table of distinct ones */
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
} kml_forest_t;

/* Leaf payload reached in tree `tree` for features `x`. */
uint32_t kml_forest_leaf(const kml_forest_t *forest, int32_t tree, const float *x);

/* Walk every tree, then vote: the class index (scikit-learn's predict) and scores. */
int32_t kml_forest_predict(const kml_forest_t *forest, const float *x, float *scores);

/* Vote from the leaf payloads of every tree. */
int32_t kml_forest_vote(const kml_forest_t *forest, const uint16_t *payloads, float *scores);

/* The float64 vote of scikit-learn, computed exactly (modes 1 and 2); generated inline
 * trees call it when their float32 sums are too close to decide. */
int32_t kml_forest_exact_vote(const kml_forest_t *forest, const uint16_t *payloads,
                              float *scores);

#endif
