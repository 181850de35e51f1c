"""C for the decision layer in kiloml_model.c: parameters (flash), state (RAM) and the
kml_decide / kml_decide_latest API declared in kiloml_model.h."""

from __future__ import annotations

from kiloml.codegen.cwriter import c_array, c_float
from kiloml.decision.layer import SMOOTHING, DecisionParams

HEADER = """
#ifndef KML_UNCERTAIN
#define KML_UNCERTAIN (-1) /* the decision when no class is sure enough */
#endif
#define KML_SMOOTHING_WINDOWS {k}

typedef struct {{
    int32_t decision;             /* a class index, or KML_UNCERTAIN */
    int32_t changed;              /* 1 when the decision switched at this window */
    int32_t candidate;            /* this window's class after thresholds, before hysteresis */
    int32_t label;                /* the model's arg-max for this window */
    float scores[KML_CLASSES];    /* the model's scores for this window */
    float smoothed[KML_CLASSES];  /* the scores the thresholds see (after smoothing) */
}} kml_decision_t;

/* The decision layer ({summary}) on one classified window; its state (history,
 * hysteresis) persists across calls until kml_reset. Returns out->decision. */
int32_t kml_decide(const kml_result_t *result, kml_decision_t *out);

/* Streaming: classify the latest window and decide. Returns the decision, or -2 if
 * fewer than KML_WINDOW_SAMPLES samples have been pushed since kml_reset. */
int32_t kml_decide_latest(kml_decision_t *out);
"""


def summary(p: DecisionParams) -> str:
    parts = []
    if any(float(t) > 0 for t in p.thresholds):
        parts.append("per-class thresholds")
    if p.min_score > 0 or p.min_margin > 0:
        parts.append(f"uncertain below score {p.min_score:g} / margin {p.min_margin:g}")
    if p.smoothing != "none":
        parts.append(f"{p.smoothing} over {p.smoothing_windows} windows")
    if p.on_windows > 1 or p.off_windows > 1:
        parts.append(f"hysteresis {p.on_windows} on / {p.off_windows} off")
    return ", ".join(parts) or "pass-through: the model's arg-max"


def header(p: DecisionParams) -> str:
    return HEADER.format(k=p.smoothing_windows, summary=summary(p))


def state(p: DecisionParams) -> str:
    """Parameters (flash) and state (RAM) for kiloml_model.c, before kml_reset."""
    thresholds = c_array("float", "kml_d_thresholds", p.thresholds, fmt=c_float)
    k, n = p.smoothing_windows, p.n_classes
    return f"""
/* ---- decision layer: {summary(p)} ---- */
{thresholds}static const kml_decision_params kml_d_params = {{
    {n}, {SMOOTHING[p.smoothing]}, {k}, {p.on_windows}, {p.off_windows}, kml_d_thresholds,
    {c_float(p.min_score)}, {c_float(p.min_margin)}}};
static float kml_d_history[{k * n}];
static int32_t kml_d_votes[{k}];
static kml_decision_state kml_d_state = {{kml_d_history, kml_d_votes, 0, 0, KML_UNCERTAIN,
                                         KML_UNCERTAIN, 0}};
"""


def functions() -> str:
    """kml_decide and kml_decide_latest (after kml_classify_latest)."""
    return """
int32_t kml_decide(const kml_result_t *result, kml_decision_t *out)
{
    int32_t k;
    for (k = 0; k < KML_CLASSES; ++k) {
        out->scores[k] = result->scores[k];
    }
    out->label = result->label;
    out->changed = kml_decision_step(&kml_d_params, &kml_d_state, result->scores,
                                     result->label, out->smoothed, &out->candidate,
                                     &out->decision);
    return out->decision;
}

int32_t kml_decide_latest(kml_decision_t *out)
{
    kml_result_t result;
    if (kml_ring_fill < KML_WINDOW_SAMPLES) {
        return -2;
    }
    /* a label of -1 (a linear model's answer to a NaN feature) is decided on too */
    (void)kml_classify_latest(&result);
    return kml_decide(&result, out);
}
"""
