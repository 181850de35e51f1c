/* SPDX-License-Identifier: Apache-2.0 */
/* kiloml runtime: the decision layer. Every operation is float32 in a fixed order, so
 * kiloml/decision/layer.py reproduces it bit for bit. */
#include "kml_fp.h" /* first: no float contraction, no fast-math */

#include "kml_decision.h"

#include <math.h> /* INFINITY */

void kml_decision_reset(kml_decision_state *s)
{
    s->next = 0;
    s->count = 0;
    s->state = KML_UNCERTAIN;
    s->pending = KML_UNCERTAIN;
    s->pending_count = 0;
}

static void kml_smooth(const kml_decision_params *p, kml_decision_state *s,
                       const float *scores, int32_t label, float *smoothed)
{
    const int32_t k = p->smoothing_windows, n = p->n_classes;
    int32_t c, j, oldest;
    float count;
    if (p->smoothing == 0) {
        for (c = 0; c < n; ++c) {
            smoothed[c] = scores[c];
        }
        return;
    }
    for (c = 0; c < n; ++c) {
        s->history[s->next * n + c] = scores[c];
    }
    s->votes[s->next] = label;
    s->next = s->next + 1 == k ? 0 : s->next + 1;
    if (s->count < k) {
        ++s->count;
    }
    oldest = s->next - s->count;
    if (oldest < 0) {
        oldest += k;
    }
    count = (float)s->count;
    for (c = 0; c < n; ++c) {
        float acc = 0.0f;
        for (j = 0; j < s->count; ++j) {
            int32_t slot = oldest + j;
            if (slot >= k) {
                slot -= k;
            }
            if (p->smoothing == 1) {
                acc += s->history[slot * n + c];
            } else if (s->votes[slot] == c) {
                acc += 1.0f; /* exact: counts stay far below 2^24 */
            }
        }
        smoothed[c] = acc / count;
    }
}

int32_t kml_decision_step(const kml_decision_params *p, kml_decision_state *s,
                          const float *scores, int32_t label, float *smoothed,
                          int32_t *candidate, int32_t *decision)
{
    int32_t c, best = 0, cand, need, changed = 0;
    float top, second = -INFINITY;
    if (label < 0) {
        /* the model refused the window (a linear model's answer to a NaN feature): no
         * evidence for any class, so it stays out of the smoothing history and the
         * candidate is uncertain (off_windows of them still switch the decision off) */
        for (c = 0; c < p->n_classes; ++c) {
            smoothed[c] = scores[c];
        }
        cand = KML_UNCERTAIN;
        goto hysteresis;
    }
    kml_smooth(p, s, scores, label, smoothed);
    for (c = 1; c < p->n_classes; ++c) {
        if (smoothed[c] > smoothed[best]) {
            best = c;
        }
    }
    top = smoothed[best];
    for (c = 0; c < p->n_classes; ++c) {
        if (c != best && smoothed[c] > second) {
            second = smoothed[c];
        }
    }
    cand = best;
    if (top < p->thresholds[best] || top < p->min_score || top - second < p->min_margin) {
        cand = KML_UNCERTAIN;
    }
hysteresis:
    if (cand == s->state) {
        s->pending = s->state;
        s->pending_count = 0;
    } else {
        if (cand == s->pending) {
            ++s->pending_count;
        } else {
            s->pending = cand;
            s->pending_count = 1;
        }
        need = cand == KML_UNCERTAIN ? p->off_windows : p->on_windows;
        if (s->pending_count >= need) {
            s->state = cand;
            s->pending_count = 0;
            changed = 1;
        }
    }
    *candidate = cand;
    *decision = s->state;
    return changed;
}
