"""The monitor in the generated library (kml_ names; kiloml.codegen.prefix renames them):
its parameters and state, the step kml_decide_latest takes after each decision, and the
public kml_monitor_flags / kml_monitor_snapshot / kml_monitor_restart API."""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

from kiloml.monitor.config import MonitorParams
from kiloml.monitor.emit import c_float, emit_monitor_c
from kiloml.monitor.snapshot import RECORD_BYTES

if TYPE_CHECKING:
    from kiloml.pipeline import Pipeline

NAME = "kml_mo"  # file-scope names kml_mo_params, kml_mo_state ... (prefixed per library)


def watched(p: MonitorParams) -> str:
    what = (f"{p.n_monitored} features" if p.inputs == "features" else
            f"{p.n_monitored} of the window's channel means and variances")
    ood = "; OOD score: the network's energy" if p.energy else ""
    return f"{what}, {p.n_channels} channels{ood}"


def header(p: MonitorParams, snapshot_every: int) -> str:
    return f"""
/* ---- monitor ([monitor]: {watched(p)}) ----
 * kml_decide_latest updates it after each window's decision: input drift, out-of-range
 * rate, stuck channels, confidence, OOD score, Page-Hinkley change detection. The flag bits
 * are kml_monitor.h's (KML_MON_INPUT_DRIFT ... KML_MON_CHANGE). */
#define KML_MONITOR 1
#define KML_MONITOR_SNAPSHOT_EVERY {snapshot_every} /* [monitor] snapshot_every (windows) */
#define KML_TELEMETRY_RECORD_BYTES {RECORD_BYTES}

/* The latest window's flags (0 before the first window). */
uint16_t kml_monitor_flags(void);

/* Writes the {RECORD_BYTES}-byte kml_telemetry_v1 record (model id from kml_model_info) and
 * starts the next record's counts. */
void kml_monitor_snapshot(uint32_t uptime_s, uint8_t out[KML_TELEMETRY_RECORD_BYTES]);

/* Starts the monitor again from its training statistics (kml_reset does not: the monitor
 * watches the device across recordings and gaps). */
void kml_monitor_restart(void);
"""


def state(p: MonitorParams) -> str:
    """Parameters (flash), state (RAM) and kml_mo_init: file-scope (static)."""
    c = emit_monitor_c(p, NAME)
    c = c.replace(f"const kml_monitor_params {NAME}_params", f"static const kml_monitor_params "
                  f"{NAME}_params")
    c = c.replace(f"kml_monitor_state {NAME}_state;", f"static kml_monitor_state {NAME}_state;")
    c = c.replace(f"void {NAME}_init(void)", f"static void {NAME}_init(void)")
    return f"\n/* ---- monitor ---- */\n{c}static int32_t {NAME}_ready; /* {NAME}_init ran */\n"


def energy_function(pipeline: Pipeline) -> str:
    """C: kml_mo_energy, the window's energy score from the network's logits where the
    latest kml_classify_latest left them in the arena (kiloml.nn.logits: they survive the
    invoke), less the monitor's training offset."""
    from kiloml.nn.logits import check_logits

    model, p = pipeline.model, pipeline.monitor
    assert p is not None
    net = getattr(model, "network_c", None)
    if net is None or getattr(model, "graph", None) is None:
        raise AssertionError("the monitor's energy score needs the network's generated C")
    logits = check_logits(model.graph, pipeline.n_classes)
    ptr = net.pointer(logits.index, f"const {logits.ctype}")
    what = "pre-softmax" if logits.softmax else "output"
    if logits.dtype == "int8":
        call = (f"kml_monitor_energy_s8({ptr}, {logits.size},\n"
                f"                                 {c_float(logits.scale)}, "
                f"{logits.zero_point})")
    else:
        call = f"kml_monitor_energy({ptr}, {logits.size})"
    return f"""
/* The energy score of the network's {what} logits ({logits.dtype}, where the network left
 * them in its arena) less its training offset: the monitor's OOD input. */
static const float {NAME}_energy_offset = {c_float(p.energy_offset)};

static float {NAME}_energy(void)
{{
    return {call} - {NAME}_energy_offset;
}}
"""


DEFAULT_STEP = f"""
/* After the latest window's decision: the features kml_classify_latest computed, the
 * ring's channel variances, the smoothed scores, the decision and whether the candidate
 * was uncertain. */
static void {NAME}_step(const kml_decision_t *d)
{{{{
    float variance[KML_CHANNELS];
    {NAME}_start();
    kml_monitor_channel_variance(kml_ring, KML_WINDOW_SAMPLES, KML_CHANNELS, kml_ring_next,
                                 variance);
    (void)kml_monitor_update(&{NAME}_params, &{NAME}_state, kml_feature_buf, variance,
                             d->smoothed, d->decision, d->candidate == KML_UNCERTAIN);
}}}}
"""


def step(pipeline: Pipeline) -> str:
    """kml_mo_step: what the monitor watches, from where the library has it (a tree or
    linear model's: the text it always had)."""
    p = pipeline.monitor
    assert p is not None
    if p.inputs == "features" and not p.energy:
        return DEFAULT_STEP.format()
    if p.inputs == "channels":  # a model of the raw window: the ring's channel statistics
        what = ("the ring's channel means and variances (the watched inputs; the variances "
                "also for stuck channels)")
        prepare = f"""    float stats[2 * KML_CHANNELS];
    {NAME}_start();
    kml_monitor_channel_moments(kml_ring, KML_WINDOW_SAMPLES, KML_CHANNELS, kml_ring_next,
                                stats);
"""
        inputs = "stats, stats + KML_CHANNELS"
    else:
        what = "the features kml_classify_latest computed, the ring's channel variances"
        prepare = f"""    float variance[KML_CHANNELS];
    {NAME}_start();
    kml_monitor_channel_variance(kml_ring, KML_WINDOW_SAMPLES, KML_CHANNELS, kml_ring_next,
                                 variance);
"""
        inputs = "kml_feature_buf, variance"
    call = "kml_monitor_update_ood" if p.energy else "kml_monitor_update"
    pad = " " * len(f"    (void){call}(")
    update = (f"    (void){call}(&{NAME}_params, &{NAME}_state, {inputs},\n"
              f"{pad}d->smoothed, d->decision, d->candidate == KML_UNCERTAIN")
    if p.energy:
        what += (", the network's energy score (its logits, still in the arena, less the "
                 "training offset)")
        update += f",\n{pad}{NAME}_energy()"
    update += ");\n"
    comment = textwrap.fill(f"After the latest window's decision: {what}; the smoothed "
                            "scores, the decision and whether the candidate was uncertain.",
                            88, initial_indent="/* ", subsequent_indent=" * ")
    return f"""{energy_function(pipeline) if p.energy else ""}
{comment} */
static void {NAME}_step(const kml_decision_t *d)
{{
{prepare}{update}}}
"""


def functions(pipeline: Pipeline) -> str:
    """kml_mo_step (called by kml_decide_latest) and the public API."""
    return f"""
static void {NAME}_start(void)
{{
    if (!{NAME}_ready) {{
        {NAME}_init();
        {NAME}_ready = 1;
    }}
}}
{step(pipeline)}
uint16_t kml_monitor_flags(void)
{{
    {NAME}_start();
    return kml_monitor_state_flags(&{NAME}_state);
}}

void kml_monitor_snapshot(uint32_t uptime_s, uint8_t out[KML_TELEMETRY_RECORD_BYTES])
{{
    uint8_t id[8];
    int32_t i;
    for (i = 0; i < 16; ++i) {{ /* KML_MODEL_ID's 16 hex digits: the first 8 bytes */
        int32_t ch = (int32_t)kml_model_info.model_id[i];
        int32_t v = ch <= '9' ? ch - '0' : (ch | 0x20) - 'a' + 10;
        id[i / 2] = (uint8_t)((i % 2) ? (id[i / 2] | v) : (v << 4));
    }}
    {NAME}_start();
    kml_monitor_write_snapshot(&{NAME}_params, &{NAME}_state, id, uptime_s, out);
}}

void kml_monitor_restart(void)
{{
    {NAME}_init();
    {NAME}_ready = 1;
}}
"""


def decide_latest(decision_functions: str) -> str:
    """kml_decide_latest with the monitor's step after the decision."""
    old = "    (void)kml_classify_latest(&result);\n    return kml_decide(&result, out);\n}"
    new = ("    (void)kml_classify_latest(&result);\n    (void)kml_decide(&result, out);\n"
           f"    {NAME}_step(out);\n    return out->decision;\n}}")
    if old not in decision_functions:
        raise AssertionError("kml_decide_latest changed: the monitor's hook is gone")
    return decision_functions.replace(old, new)
