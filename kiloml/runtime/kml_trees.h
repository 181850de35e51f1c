/* kiloml runtime: decision tree ensembles (DecisionTree, RandomForest, ExtraTrees).
 *
 * Node thresholds are float32 values rounded down from scikit-learn's float64
 * thresholds, so `x <= threshold` takes scikit-learn's branch for every float32
 * x. Scores follow scikit-learn's soft voting exactly, selected by
 * KML_TREE_PROBA:
 *   0  every leaf is pure: class votes are counted in integers;
 *   1  leaf class fractions stored as small integers num/den; each fraction is
 *      formed by a double division (as scikit-learn forms it) and summed in
 *      double precision in tree order, then divided by the number of trees,
 *      as predict_proba does;
 *   2  the same sums from fractions stored as doubles.
 * So the arg-max is scikit-learn's predict for every input.
 */
#ifndef KML_TREES_H
#define KML_TREES_H

#include <stdint.h>

#include "kml_config.h"

#ifndef KML_TREE_FEATURE_T
#define KML_TREE_FEATURE_T uint8_t /* uint16_t when there are more than 256 features */
#endif
#ifndef KML_TREE_MAX_CLASSES
#define KML_TREE_MAX_CLASSES 16
#endif
#ifndef KML_TREE_PROBA
#define KML_TREE_PROBA 0
#endif
#ifndef KML_TREE_FRACTION_T
#define KML_TREE_FRACTION_T uint16_t
#endif

typedef struct {
    int32_t n_trees;
    int32_t n_classes;
    int32_t max_depth;                  /* bounds the walk down each tree */
    const int32_t *roots;               /* per tree: first node, or -(leaf payload + 1) */
    const KML_TREE_FEATURE_T *feature;  /* per internal node: feature index */
    const float *threshold;             /* per internal node: go left when x <= threshold */
    const int16_t *left;                /* child node relative to the tree's first node, */
    const int16_t *right;               /* or -(leaf payload + 1) for a leaf */
    const uint8_t *missing_left;        /* bit i (LSB first): a NaN feature goes left at
                                           node i, as scikit-learn routes missing values */
    /* Leaf payload < n_classes: a pure leaf of that class; otherwise row
     * (payload - n_classes) of the mixed-leaf table: */
    const KML_TREE_FRACTION_T *leaf_num; /* KML_TREE_PROBA 1: [rows][n_classes] numerators */
    const KML_TREE_FRACTION_T *leaf_den; /* KML_TREE_PROBA 1: [rows] denominators */
    const double *leaf_proba;            /* KML_TREE_PROBA 2: [rows][n_classes] */
} kml_forest_t;

/* Leaf payload reached in tree `tree` for features `x`. */
int32_t kml_forest_leaf(const kml_forest_t *forest, int32_t tree, const float *x);

/* Class index (first arg-max, as numpy's argmax) and per-class scores. */
int32_t kml_forest_predict(const kml_forest_t *forest, const float *x, float *scores);

#endif
