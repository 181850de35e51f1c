/* SPDX-License-Identifier: Apache-2.0 */
/* kml_decision: the decision layer after the model (thresholds, "uncertain",
 * smoothing over windows, hysteresis). Python twin: kiloml/decision/layer.py. */
#ifndef KML_DECISION_H
#define KML_DECISION_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KML_UNCERTAIN (-1)

typedef struct {
    int32_t n_classes;
    int32_t smoothing;         /* 0 none, 1 average of scores, 2 majority of labels */
    int32_t smoothing_windows; /* K: windows in the history (1 with no smoothing) */
    int32_t on_windows;        /* consecutive windows to switch to a class */
    int32_t off_windows;       /* consecutive windows to switch to KML_UNCERTAIN */
    const float *thresholds;   /* per class: minimum smoothed score */
    float min_score;           /* minimum top smoothed score */
    float min_margin;          /* minimum lead of the top score over the second */
} kml_decision_params;

/* Mutable state; history holds K x n_classes floats, votes K labels (caller-owned). */
typedef struct {
    float *history;
    int32_t *votes;
    int32_t next, count;
    int32_t state, pending, pending_count;
} kml_decision_state;

void kml_decision_reset(kml_decision_state *s);

/* One window: scores and arg-max label in; smoothed scores, candidate and the
 * debounced decision out. Returns 1 when the decision changed at this window. A label
 * below 0 (the model refused the window) gives an uncertain candidate and leaves the
 * smoothing history as it was. */
int32_t kml_decision_step(const kml_decision_params *p, kml_decision_state *s,
                          const float *scores, int32_t label, float *smoothed,
                          int32_t *candidate, int32_t *decision);

#ifdef __cplusplus
}
#endif

#endif /* KML_DECISION_H */
