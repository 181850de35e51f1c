/* kiloml runtime: decision tree ensembles. See kml_trees.h. */
#include "kml_trees.h"

int32_t kml_forest_leaf(const kml_forest_t *forest, int32_t tree, const float *x)
{
    const int32_t base = forest->roots[tree];
    int32_t node = 0, depth;
    if (base < 0) {
        return -base - 1;
    }
    for (depth = 0; depth < forest->max_depth; ++depth) {
        const int32_t i = base + node;
        const float v = x[forest->feature[i]];
        const int go_left = (v <= forest->threshold[i]) ||
                            (v != v && ((forest->missing_left[i >> 3] >> (i & 7)) & 1u));
        const int32_t next = go_left ? forest->left[i] : forest->right[i];
        if (next < 0) {
            return -next - 1;
        }
        node = next;
    }
    return -1; /* not reached for a forest emitted by kiloml */
}

int32_t kml_forest_predict(const kml_forest_t *forest, const float *x, float *scores)
{
    const int32_t n_classes = forest->n_classes;
    int32_t t, k, best = 0;
#if KML_TREE_PROBA
    double acc[KML_TREE_MAX_CLASSES];
    for (k = 0; k < n_classes; ++k) {
        acc[k] = 0.0;
    }
    for (t = 0; t < forest->n_trees; ++t) {
        const int32_t leaf = kml_forest_leaf(forest, t, x);
        if (leaf < 0) {
            continue;
        }
        if (leaf < n_classes) {
            acc[leaf] += 1.0;
        } else {
            const int32_t row = leaf - n_classes;
#if KML_TREE_PROBA == 1
            const KML_TREE_FRACTION_T *num = forest->leaf_num + row * n_classes;
            const double den = (double)forest->leaf_den[row];
            for (k = 0; k < n_classes; ++k) {
                if (num[k] != 0) { /* adding +0.0 would change nothing */
                    acc[k] += (double)num[k] / den;
                }
            }
#else
            const double *p = forest->leaf_proba + row * n_classes;
            for (k = 0; k < n_classes; ++k) {
                acc[k] += p[k];
            }
#endif
        }
    }
    for (k = 0; k < n_classes; ++k) {
        acc[k] /= (double)forest->n_trees;
        scores[k] = (float)acc[k];
        if (acc[k] > acc[best]) {
            best = k;
        }
    }
#else
    int32_t votes[KML_TREE_MAX_CLASSES];
    for (k = 0; k < n_classes; ++k) {
        votes[k] = 0;
    }
    for (t = 0; t < forest->n_trees; ++t) {
        const int32_t leaf = kml_forest_leaf(forest, t, x);
        if (leaf >= 0 && leaf < n_classes) {
            votes[leaf] += 1;
        }
    }
    for (k = 0; k < n_classes; ++k) {
        scores[k] = (float)votes[k] / (float)forest->n_trees;
        if (votes[k] > votes[best]) {
            best = k;
        }
    }
#endif
    return best;
}
