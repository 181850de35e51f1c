"""Write the firmware library: ``kiloml_model.h/.c``, ``kml_config.h`` and the runtime files.

The generated ``kiloml_model.c`` holds only constants, static state and the
call sequence; the computation lives in the hand-written runtime kernels
(``kiloml/runtime``), copied alongside.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from kiloml.codegen import identity
from kiloml.codegen import prefix as naming
from kiloml.codegen.cwriter import c_float, c_string
from kiloml.decision.emit import functions as decision_functions
from kiloml.decision.emit import header as decision_header
from kiloml.decision.emit import state as decision_state
from kiloml.monitor import library_c as monitor_c
from kiloml.pipeline import Pipeline
from kiloml.stage import CStage, EmitContext
from kiloml.version import __version__

RUNTIME_DIR = Path(__file__).resolve().parent.parent / "runtime"
STAGES_FILE = "kiloml_stages.json"
# The first line of every C file kiloml writes; the runtime files it copies start with it too.
SPDX_LINE = "/* SPDX-License-Identifier: Apache-2.0 */"
# Runtime modules made of more than one .c file (the DSP fast paths of kml_nn).
EXTRA_SOURCES = {"kml_nn": ["kml_nn_dsp.c", "kml_nn_internal.h"]}
# Included first by every .c file kiloml ships or writes: float contraction off and
# -ffast-math refused, whatever flags the firmware's build uses (see the header).
FP_HEADER = "kml_fp.h"
FP_INCLUDE = f'#include "{FP_HEADER}" /* first: no float contraction, no fast-math */\n'

# Flags every kiloml C file builds clean with. -ffp-contract=off keeps a*b+c as
# two roundings, as in the Python reference (a fused multiply-add would differ).
STRICT_CFLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-ffp-contract=off"]


@dataclass
class FirmwareLibrary:
    directory: Path
    sources: list[Path]  # the library's .c files (harness excluded)
    headers: list[Path]
    n_features: int
    prefix: str = naming.DEFAULT_PREFIX  # [library] prefix: P_classify, P_model.h ...
    info: dict | None = None  # model id, interface hash, creation time (codegen.identity)

    @property
    def model_header(self) -> Path:
        return self.directory / naming.model_header_name(self.prefix)

    def harness_includes(self, work: Path) -> list[Path]:
        """Include folders for a harness written against the kml_ API: a shim header
        mapping it onto a prefixed library's names (in ``work``), then the library."""
        shim = naming.api_shim(self.model_header, self.prefix, work / "api_shim")
        return [*([shim] if shim else []), self.directory]


@dataclass
class EmittedStage:
    title: str
    c: CStage
    kind: str  # "preprocess", "window", "vector", "model"
    index: int


def write_library(pipeline: Pipeline, directory: Path, *, prefix: str | None = None,
                  created_utc: str | None = None) -> FirmwareLibrary:
    """``prefix``: default the pipeline's ([library] prefix); ``created_utc``: the creation
    time to record (default SOURCE_DATE_EPOCH or now; ``kiloml verify`` passes the run's)."""
    prefix = naming.check_prefix(prefix or getattr(pipeline, "library_prefix", None)
                                 or naming.DEFAULT_PREFIX)
    updatable = getattr(pipeline, "library_updatable", False)
    if updatable:  # refused before anything is written
        from kiloml.codegen import updatable as blob_code
        blob_code.forest_tables_of(pipeline)
    directory.mkdir(parents=True, exist_ok=True)
    n_features = len(pipeline.feature_names())

    emitted = emit_feature_stages(pipeline)
    ch = pipeline.n_channels
    model_ctx = EmitContext(prefix="kml_m_", window="", start_row="", input="features",
                            output="out", window_rows=pipeline.window_samples,
                            channels=ch, n_inputs=n_features)
    if updatable:
        model_c = blob_code.model_stage(pipeline, model_ctx, emitted,
                                        identity.interface_hash(pipeline))
    else:
        model_c = pipeline.model.emit_c(model_ctx)
    emitted.append(EmittedStage("model", model_c, "model", 0))

    runtime: list[str] = ["kml_decision"]
    if pipeline.monitor is not None:  # only then: a library without one is unchanged
        runtime.append("kml_monitor")
    for e in emitted:
        for name in e.c.runtime:
            if name not in runtime:
                runtime.append(name)
    config_lines = [line for e in emitted for line in e.c.config]
    config_lines += naming.configured_renames(runtime, prefix)

    header_name = naming.model_header_name(prefix)
    source_name = naming.model_source_name(prefix)
    config_name = naming.config_header_name(prefix)
    marker = "/* @@identity@@ */\n"
    texts: dict[str, str] = {
        config_name: naming.rename(_config_header(config_lines), prefix),
        header_name: naming.rename(_model_header(pipeline, n_features, marker), prefix),
        source_name: naming.rename(_model_source(pipeline, n_features, runtime, emitted,
                                                 prefix, updatable), prefix),
        "CMakeLists.txt": _cmake(runtime, prefix),
    }
    sources = [directory / source_name]
    headers = [directory / header_name, directory / config_name]
    copies: dict[str, Path] = {}
    for name in runtime:
        own = naming.module_source_name(name, prefix)
        if own != f"{name}.c":  # built for this model's tables, under its names
            texts[own] = naming.configured_source(name, prefix, SPDX_LINE, FP_INCLUDE)
        else:
            copies[own] = RUNTIME_DIR / own
        copies[f"{name}.h"] = RUNTIME_DIR / f"{name}.h"
        sources.append(directory / own)
        headers.append(directory / f"{name}.h")
        for extra in EXTRA_SOURCES.get(name, []):
            copies[extra] = RUNTIME_DIR / extra
            (sources if extra.endswith(".c") else headers).append(directory / extra)
    copies[FP_HEADER] = RUNTIME_DIR / FP_HEADER
    headers.append(directory / FP_HEADER)
    # Which generated symbols and runtime modules belong to which stage: kiloml reads
    # this to break the measured flash, RAM and instructions down by stage.
    stage_table = [{"title": e.title, "kind": e.kind, "index": e.index,
                    "prefix": {"preprocess": f"{prefix}_p{e.index}_",
                               "model": f"{prefix}_m_"}.get(e.kind, f"{prefix}_s{e.index}_"),
                    "runtime": [naming.module_source_name(m, prefix)[:-2]
                                for m in e.c.runtime]} for e in emitted]
    texts[STAGES_FILE] = json.dumps(stage_table, indent=1) + "\n"
    # the model id: the content without the identity blocks (codegen.identity)
    content = {n: t.replace(marker, "").encode() for n, t in texts.items()}
    content.update({n: p.read_bytes() for n, p in copies.items()})
    ihash = identity.interface_hash(pipeline)
    info = {"prefix": prefix, "model_id": identity.model_id(content),
            "interface_hash": f"0x{ihash:08x}",
            "created_utc": identity.created_utc(created_utc), "kiloml_version": __version__,
            "header": header_name}
    block = naming.rename(identity.header_block(info["model_id"], ihash, info["created_utc"],
                                                __version__), prefix)
    texts[header_name] = texts[header_name].replace(marker, block)
    texts["README.md"] = naming.rename_markdown(_readme(pipeline, n_features, info), prefix)
    for name, text in texts.items():
        (directory / name).write_text(text)
    for name, path in copies.items():
        shutil.copyfile(path, directory / name)
    return FirmwareLibrary(directory, sources, headers, n_features, prefix, info)


def emit_feature_stages(pipeline: Pipeline) -> list[EmittedStage]:
    """The preprocessing and feature stages' C, in order."""
    emitted: list[EmittedStage] = []
    ch = pipeline.n_channels
    # preprocess: raw -> kml_pa / kml_pb alternately -> processed
    for i, stage in enumerate(pipeline.preprocess):
        src = "raw" if i == 0 else ("kml_pa" if i % 2 else "kml_pb")
        dst = "processed" if i == len(pipeline.preprocess) - 1 else (
            "kml_pb" if i % 2 else "kml_pa")
        ctx = EmitContext(prefix=f"kml_p{i}_", window="", start_row="", input=src, output=dst,
                          window_rows=pipeline.window_samples, channels=ch, n_inputs=ch)
        emitted.append(EmittedStage(f"preprocess {i}: {stage.kind}", stage.emit_c(ctx),
                                    "preprocess", i))
    offset = 0
    names: list[str] = []
    for i, stage in enumerate(pipeline.features):
        if stage.reads == "window":
            n = len(stage.feature_names(list(pipeline.channels)))
            ctx = EmitContext(prefix=f"kml_s{i}_", window="window", start_row="start_row",
                              input="window", output=f"features + {offset}",
                              window_rows=pipeline.window_samples, channels=ch, n_inputs=ch)
            offset += n
            names += [""] * n
            kind = "window"
        else:
            ctx = EmitContext(prefix=f"kml_s{i}_", window="", start_row="", input="features",
                              output="features", window_rows=pipeline.window_samples,
                              channels=ch, n_inputs=offset)
            kind = "vector"
        emitted.append(EmittedStage(f"stage {i}: {stage.kind}", stage.emit_c(ctx), kind, i))
    return emitted


def _banner(pipeline: Pipeline) -> str:
    return (f"{SPDX_LINE}\n/* Generated by kiloml {__version__} for project \"{pipeline.name}\". "
            f"Do not edit: regenerate with `kiloml run`. */\n")


def _config_header(lines: list[str]) -> str:
    body = "\n".join(lines)
    return (f"{SPDX_LINE}\n/* kiloml runtime configuration for this model (generated). */\n"
            "#ifndef KML_CONFIG_H\n#define KML_CONFIG_H\n\n#include <stdint.h>\n\n"
            f"{body}\n\n#endif\n")


def _model_header(p: Pipeline, n_features: int, identity_marker: str) -> str:
    return f"""{_banner(p)}#ifndef KILOML_MODEL_H
#define KILOML_MODEL_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {{
#endif

#define KML_SAMPLE_RATE_HZ {c_float(p.input_rate_hz)}  /* of the samples you push */
#define KML_WINDOW_RATE_HZ {c_float(p.sample_rate_hz)}  /* after preprocessing */
#define KML_DECIMATION {p.decimation}
#define KML_CHANNELS {p.n_channels}
#define KML_WINDOW_SAMPLES {p.window_samples}  /* at KML_WINDOW_RATE_HZ */
#define KML_STRIDE_SAMPLES {p.stride_samples}
#define KML_FEATURES {n_features}
#define KML_CLASSES {p.n_classes}
{identity_marker}{identity.header_api()}
typedef struct {{
    int32_t label;               /* index into kml_class_names */
    float scores[KML_CLASSES];   /* per-class score (fraction of tree votes) */
}} kml_result_t;

extern const char *const kml_class_names[KML_CLASSES];
extern const char *const kml_channel_names[KML_CHANNELS];

/* Classify one window: KML_WINDOW_SAMPLES rows of KML_CHANNELS floats,
 * row-major ([T][C]), of preprocessed samples (see kml_preprocess_sample; with no
 * preprocessing stages, the raw samples). Returns the class index (also in
 * out->label). */
int32_t kml_classify(const float *window, kml_result_t *out);
{_predict_header(p)}
/* Streaming: feed one raw sample (KML_CHANNELS floats at KML_SAMPLE_RATE_HZ) at a
 * time; the preprocessing stages run on it with their state. Returns 1 when a new
 * window is complete (the first after KML_WINDOW_SAMPLES preprocessed samples, then
 * every KML_STRIDE_SAMPLES); then call kml_classify_latest. */
int32_t kml_push_sample(const float *sample);

/* The preprocessing stages alone (they keep their state between calls): one raw
 * sample in; returns 1 and writes a preprocessed sample when one comes out (every
 * KML_DECIMATION-th input). kml_push_sample calls it; do not mix the two. */
int32_t kml_preprocess_sample(const float *raw, float *processed);

/* Classify the most recent complete window. Returns the class index, or -1
 * if fewer than KML_WINDOW_SAMPLES samples have been pushed since kml_reset. */
int32_t kml_classify_latest(kml_result_t *out);

/* Forget streamed samples and preprocessing state (a new recording, or a gap). */
void kml_reset(void);

/* The feature vector (KML_FEATURES floats) of one window, for logging. */
void kml_compute_features(const float *window, float *features);
{_recording_header(p)}{decision_header(p.decision_params)}{_monitor_header(p)}
#ifdef __cplusplus
}}
#endif

#endif
"""


def _model_source(p: Pipeline, n_features: int, runtime: list[str],
                  emitted: list[EmittedStage], prefix: str, updatable: bool = False) -> str:
    source = _model_source_text(p, n_features, runtime, emitted, prefix)
    if updatable:
        from kiloml.codegen.updatable import retarget
        return retarget(source)
    return source


def _model_source_text(p: Pipeline, n_features: int, runtime: list[str],
                       emitted: list[EmittedStage], prefix: str) -> str:
    includes = "\n".join(f'#include "{name}.h"' for name in runtime)
    if prefix != naming.DEFAULT_PREFIX:  # first: the renames of the configured kernels
        includes = f'#include "kml_config.h"\n{includes}'

    classes = ", ".join(c_string(n) for n in p.class_names)
    channels = ", ".join(c_string(n) for n in p.channels)
    pre = [e for e in emitted if e.kind == "preprocess"]
    feats = [e for e in emitted if e.kind in ("window", "vector")]
    model = next(e for e in emitted if e.kind == "model")
    constants = "\n".join(f"/* {e.title} */\n{e.c.constants}" for e in pre + feats
                          if e.c.constants)
    state = "".join(e.c.state for e in emitted)
    scratch = max([e.c.scratch_floats for e in emitted] + [0])
    scratch_decl = f"static float kml_scratch[{scratch}]; /* shared by the feature stages */\n" \
        if scratch else ""
    resets = "".join(f"    {e.c.reset}\n" for e in emitted if e.c.reset)
    marks = []
    for n, e in enumerate(feats):
        marks.append(f"    KML_MARK_STAGE({n}); /* {e.title} */\n    {e.c.call}")
    calls = "\n".join(marks)
    if pre:
        steps = "\n    ".join(e.c.call for e in pre)
        preprocess = f"""int32_t kml_preprocess_sample(const float *raw, float *processed)
{{
    float kml_pa[KML_CHANNELS], kml_pb[KML_CHANNELS];
    (void)kml_pa;
    (void)kml_pb;
    {steps}
    return 1;
}}
"""
    else:
        preprocess = """int32_t kml_preprocess_sample(const float *raw, float *processed)
{
    int32_t c;
    for (c = 0; c < KML_CHANNELS; ++c) {
        processed[c] = raw[c];
    }
    return 1;
}
"""
    return f"""{_banner(p)}{FP_INCLUDE}
#include "kiloml_model.h"

#include <math.h> /* INFINITY, for constants that are infinite */
#include <stddef.h>

{includes}

/* Verification builds define KML_STAGE_MARKS to time each stage; firmware does not. */
#ifdef KML_STAGE_MARKS
void kml_mark_stage(int32_t stage);
#define KML_MARK_STAGE(n) kml_mark_stage(n)
#else
#define KML_MARK_STAGE(n)
#endif

const char *const kml_class_names[KML_CLASSES] = {{{classes}}};
const char *const kml_channel_names[KML_CHANNELS] = {{{channels}}};
{identity.source_block(prefix, p.name, __version__)}
/* ---- preprocessing state (static RAM) ---- */
{state}
/* ---- stage constants ---- */
{constants}
/* ---- model constants ---- */
{model.c.constants}
/* ---- state (static RAM) ---- */
static float kml_ring[KML_WINDOW_SAMPLES * KML_CHANNELS]; /* last window, a ring of rows */
static int32_t kml_ring_next;    /* row the next sample goes to: the oldest row once full */
static int32_t kml_ring_fill;    /* samples held, up to KML_WINDOW_SAMPLES */
static int32_t kml_since_window; /* samples since the last complete window */
static float kml_feature_buf[KML_FEATURES];
{decision_state(p.decision_params)}{_monitor_state(p)}{scratch_decl}
static void kml_run_features(const float *window, int32_t start_row, float *features)
{{
{calls}
    KML_MARK_STAGE({len(feats)}); /* the model follows */
    (void)window;
    (void)start_row;
}}

static int32_t kml_run_model(const float *features, kml_result_t *out)
{{
    {model.c.call}
    return out->label;
}}

void kml_compute_features(const float *window, float *features)
{{
    kml_run_features(window, 0, features);
}}

int32_t kml_classify(const float *window, kml_result_t *out)
{{
    kml_run_features(window, 0, kml_feature_buf);
    return kml_run_model(kml_feature_buf, out);
}}
{_predict_source(p)}
{preprocess}
void kml_reset(void)
{{
{resets}    kml_decision_reset(&kml_d_state);
    kml_ring_next = 0;
    kml_ring_fill = 0;
    kml_since_window = 0;
}}

int32_t kml_push_sample(const float *sample)
{{
    float *row = &kml_ring[kml_ring_next * KML_CHANNELS];
    float processed[KML_CHANNELS];
    int32_t c;
    if (!kml_preprocess_sample(sample, processed)) {{
        return 0; /* decimation: no sample this time */
    }}
    for (c = 0; c < KML_CHANNELS; ++c) {{
        row[c] = processed[c];
    }}
    if (++kml_ring_next == KML_WINDOW_SAMPLES) {{
        kml_ring_next = 0;
    }}
    if (kml_ring_fill < KML_WINDOW_SAMPLES) {{
        if (++kml_ring_fill < KML_WINDOW_SAMPLES) {{
            return 0;
        }}
        kml_since_window = 0;
        return 1;
    }}
    if (++kml_since_window < KML_STRIDE_SAMPLES) {{
        return 0;
    }}
    kml_since_window = 0;
    return 1;
}}

int32_t kml_classify_latest(kml_result_t *out)
{{
    if (kml_ring_fill < KML_WINDOW_SAMPLES) {{
        return -1;
    }}
    kml_run_features(kml_ring, kml_ring_next, kml_feature_buf);
    return kml_run_model(kml_feature_buf, out);
}}
{_recording_source(p)}{_decision_functions(p)}"""


# --- the monitor ([monitor]; nothing of it without one) --------------------------------


def _monitor_header(p: Pipeline) -> str:
    return "" if p.monitor is None else monitor_c.header(p.monitor, p.monitor_snapshot_every)


def _monitor_state(p: Pipeline) -> str:
    return "" if p.monitor is None else monitor_c.state(p.monitor)


def _decision_functions(p: Pipeline) -> str:
    if p.monitor is None:
        return decision_functions()
    return monitor_c.functions(p) + monitor_c.decide_latest(decision_functions())


# --- whole recordings ([window] mode = "recording") --------------------------------------


def _pad_name(pad: str | float) -> str:
    return pad if isinstance(pad, str) else "value"


def _pad_words(pad: str | float) -> str:
    if pad == "zero":
        return "zeros"
    if pad == "edge":
        return "copies of the last sample"
    return f"the value {c_float(pad)}"


def _crop_words(crop: str) -> str:
    return {"start": "its first KML_WINDOW_SAMPLES samples are kept",
            "center": "its middle KML_WINDOW_SAMPLES samples are kept (of an odd excess, the "
                      "extra sample is dropped at the end)",
            "end": "its last KML_WINDOW_SAMPLES samples are kept",
            "error": "it is not classified (returns -1)"}[crop]


def _recording_header(p: Pipeline) -> str:
    rule = p.recording
    if rule is None:
        return ""
    too_long = " or the recording is too long" if rule.crop == "error" else ""
    value = "" if isinstance(rule.pad, str) else f"\n#define KML_PAD_VALUE {c_float(rule.pad)}"
    return f"""
/* Whole recordings ([window] mode = "recording"): one recording is one example.
 * kml_classify_recording takes n_samples raw samples (rows of KML_CHANNELS floats at
 * KML_SAMPLE_RATE_HZ, row-major [n_samples][KML_CHANNELS], as kml_push_sample takes
 * them). It resets the library (kml_reset), runs the preprocessing stages over them
 * from that state, and fits the (n_samples - 1) / KML_DECIMATION + 1 preprocessed
 * samples to one window of KML_WINDOW_SAMPLES rows:
 *   shorter: padded after the last sample with {_pad_words(rule.pad)} (KML_PAD);
 *   longer:  {_crop_words(rule.crop)} (KML_CROP).
 * Then it classifies that window as kml_classify does and resets the library again
 * (it uses the streaming ring as its buffer: do not call it between kml_push_sample
 * calls whose stream you want to keep). Returns the class index (also in out->label),
 * or -1 with out untouched when n_samples < 1{too_long}. */
#define KML_RECORDING 1
#define KML_PAD "{_pad_name(rule.pad)}"{value}
#define KML_CROP "{rule.crop}"
int32_t kml_classify_recording(const float *samples, int32_t n_samples, kml_result_t *out);
"""


def _recording_source(p: Pipeline) -> str:
    rule = p.recording
    if rule is None:
        return ""
    if rule.crop == "error":
        first = """    if (n_processed > KML_WINDOW_SAMPLES) {
        return -1; /* crop = "error": longer than the window */
    }
    first = 0;"""
    else:
        excess = {"start": "0", "center": "(n_processed - KML_WINDOW_SAMPLES) / 2",
                  "end": "n_processed - KML_WINDOW_SAMPLES"}[rule.crop]
        first = f"""    /* crop = "{rule.crop}": the first preprocessed sample kept */
    first = n_processed > KML_WINDOW_SAMPLES ? {excess} : 0;"""
    if rule.pad == "edge":
        fill = "kml_ring[row * KML_CHANNELS + c] = kml_ring[(row - 1) * KML_CHANNELS + c];"
    else:
        value = "0.0f" if rule.pad == "zero" else "KML_PAD_VALUE"
        fill = f"kml_ring[row * KML_CHANNELS + c] = {value};"
    return f"""
int32_t kml_classify_recording(const float *samples, int32_t n_samples, kml_result_t *out)
{{
    float processed[KML_CHANNELS];
    const float *sample = samples;
    int32_t n_processed, first, index, row, c;
    if (samples == NULL || out == NULL || n_samples < 1) {{
        return -1;
    }}
    n_processed = (n_samples - 1) / KML_DECIMATION + 1; /* the decimators keep sample 0 */
{first}
    kml_reset();
    index = 0; /* of the preprocessed sample */
    row = 0;
    for (; n_samples > 0 && row < KML_WINDOW_SAMPLES; --n_samples, sample += KML_CHANNELS) {{
        if (!kml_preprocess_sample(sample, processed)) {{
            continue; /* decimation: no sample this time */
        }}
        if (index++ < first) {{
            continue;
        }}
        for (c = 0; c < KML_CHANNELS; ++c) {{
            kml_ring[row * KML_CHANNELS + c] = processed[c];
        }}
        ++row;
    }}
    for (; row < KML_WINDOW_SAMPLES; ++row) {{ /* pad = "{_pad_name(rule.pad)}" */
        for (c = 0; c < KML_CHANNELS; ++c) {{
            {fill}
        }}
    }}
    kml_run_features(kml_ring, 0, kml_feature_buf);
    (void)kml_run_model(kml_feature_buf, out);
    kml_reset();
    return out->label;
}}
"""


# --- a model on its input as it is (kiloml.convert: feature vectors, network inputs) ------


def reads_input_as_is(p: Pipeline) -> bool:
    """No stage between the caller's floats and the model: one raw stage (the window as
    the feature vector) and no preprocessing. Libraries made by kiloml.convert are so."""
    return not p.preprocess and len(p.features) == 1 and p.features[0].kind == "raw"


def _predict_header(p: Pipeline) -> str:
    if not reads_input_as_is(p):
        return ""
    what = ("the feature vector" if p.window_samples == 1 else
            "KML_WINDOW_SAMPLES rows of KML_CHANNELS floats, row-major ([T][C])")
    nan = ", or -1 when an input is NaN or infinite" \
        if getattr(p.model, "kind", "") == "linear" else ""
    return f"""
/* The model on one input (KML_FEATURES floats: {what}); no stage
 * runs before the model, so this is kml_classify without its copy of the window.
 * Returns the class index (also in out->label){nan}. */
#define KML_PREDICT 1
int32_t kml_predict(const float *input, kml_result_t *out);
"""


def _predict_source(p: Pipeline) -> str:
    if not reads_input_as_is(p):
        return ""
    return """
int32_t kml_predict(const float *input, kml_result_t *out)
{
    return kml_run_model(input, out);
}
"""


def _readme_predict(p: Pipeline) -> str:
    if not reads_input_as_is(p):
        return ""
    if p.window_samples == 1:
        what = (f"one feature vector of `KML_FEATURES` = {p.n_channels} floats, in this "
                f"order: {', '.join(p.channels)}")
    else:
        what = (f"one input of `KML_WINDOW_SAMPLES` x `KML_CHANNELS` = {p.window_samples} x "
                f"{p.n_channels} floats, row-major (`[T][C]`, channels last)")
    return f"""
## One input at a time

Nothing runs before the model (a library from `kiloml.convert`): `kml_predict` takes
{what}.

```c
kml_result_t result;
float input[KML_FEATURES] = {{ /* ... */ }};
int32_t label = kml_predict(input, &result); /* kml_class_names[label] */
```
"""

def _cmake(runtime: list[str], prefix: str) -> str:
    """The model's own target (``kiloml_model``, or ``P_model``) and one target per shared
    runtime module, defined by whichever kiloml library comes first: two libraries in one
    build link one copy of each kernel."""
    target = naming.model_source_name(prefix)[:-2]
    own = [naming.model_source_name(prefix), *[naming.module_source_name(n, prefix)
                                               for n in runtime
                                               if naming.module_source_name(n, prefix)
                                               != f"{n}.c"]]
    shared = [n for n in runtime if naming.module_source_name(n, prefix) == f"{n}.c"]
    blocks = []
    for n in shared:
        files = " ".join([f"{n}.c", *[x for x in EXTRA_SOURCES.get(n, []) if x.endswith(".c")]])
        blocks.append(f"""if(NOT TARGET kiloml_rt_{n})  # shared by every kiloml library
  add_library(kiloml_rt_{n} STATIC {files})
  kiloml_c_target(kiloml_rt_{n})
endif()
target_link_libraries({target} PUBLIC kiloml_rt_{n})""")
    runtime_targets = "\n".join(blocks)
    return f"""# kiloml inference library (generated). Add with add_subdirectory(); several kiloml
# libraries (different [library] prefix) can be added to one build.
cmake_minimum_required(VERSION 3.13)
project({target} C)
if(NOT COMMAND kiloml_c_target)
  function(kiloml_c_target name)
    target_include_directories(${{name}} PUBLIC ${{CMAKE_CURRENT_SOURCE_DIR}})
    set_target_properties(${{name}} PROPERTIES C_STANDARD 99 C_STANDARD_REQUIRED ON)
    # Python parity holds only without fused multiply-add contraction.
    target_compile_options(${{name}} PRIVATE -ffp-contract=off)
    if(NOT MSVC)
      target_link_libraries(${{name}} PUBLIC m)
    endif()
  endfunction()
endif()
add_library({target} STATIC {" ".join(own)})
kiloml_c_target({target})
{runtime_targets}
"""


def _readme(p: Pipeline, n_features: int, info: dict) -> str:
    return (_readme_windows(p, n_features) + _readme_recording(p) + _readme_predict(p)
            + _readme_monitor(p) + _readme_identity(info))


def _readme_monitor(p: Pipeline) -> str:
    if p.monitor is None:
        return ""
    return f"""
## Monitor

`[monitor]`: `kml_decide_latest` updates the on-device monitor (`kml_monitor.c`) after each
window's decision: input drift of {p.monitor.n_monitored} features, out-of-range rate, stuck
channels, confidence, out-of-distribution score, Page-Hinkley change detection.
`kml_monitor_flags()` gives the latest window's flags (`KML_MON_INPUT_DRIFT` ...
`KML_MON_CHANGE` of `kml_monitor.h`); `kml_monitor_snapshot(uptime_s, out)` writes the
48-byte `kml_telemetry_v1` record (one BLE notification) and starts the next one;
`kml_monitor_restart()` starts it again (`kml_reset` does not).
"""


def _readme_identity(info: dict) -> str:
    prefix = info["prefix"]
    own = naming.model_source_name(prefix)
    return f"""
## Identity, and several models in one firmware

- model id `{info["model_id"]}` (`KML_MODEL_ID`): the first 16 hex digits of the
  SHA-256 of this folder's files except this README, by name, each as `name NUL length
  NUL bytes`, with the identity block (the lines from `kiloml:identity begin` to
  `kiloml:identity end`) removed; `kiloml info` on this folder checks it.
- interface hash `{info["interface_hash"]}` (`KML_INTERFACE_HASH`): the SHA-256 (first
  8 hex digits) of the channels and their units, the rates, window, stride, classes and
  feeding mode; a firmware checks it at compile time:

```c
#if !KML_INTERFACE_IS({info["interface_hash"]}u)
#error "the model's interface (channels, units, rates, window, classes) changed"
#endif
```

- created {info["created_utc"]} (`KML_CREATED_UTC`; set `SOURCE_DATE_EPOCH` for a
  reproducible build), kiloml {info["kiloml_version"]}.

`kml_model_info` holds all of it, in the ELF section `.kml_model_info` (kept by the
linker; `kiloml info firmware.elf` lists every model an image holds).

This library's names start `{prefix}_` / `{prefix.upper()}_` (`[library] prefix`): its
own files are `{naming.model_header_name(prefix)}`, `{own}`,
`{naming.config_header_name(prefix)}` (and any `{prefix}_*.c`). The other `kml_*.c` files
are kiloml's runtime kernels, the same in every library of this kiloml version and
configured by no model: linking two models (different prefixes), compile them once
(CMake: `add_subdirectory` both folders; each shared kernel is one `kiloml_rt_*` target).
"""


def _readme_recording(p: Pipeline) -> str:
    rule = p.recording
    if rule is None:
        return ""
    ms = p.window_samples * 1000.0 / p.sample_rate_hz
    pre = (f"the preprocessing stages ({', '.join(s.kind for s in p.preprocess)}) run over "
           f"them from a reset state, then " if p.preprocess else "")
    decimated = (f" (a recording of n samples gives (n - 1) / {p.decimation} + 1 after "
                 f"decimation)" if p.decimation > 1 else "")
    setting = f'"{rule.pad}"' if isinstance(rule.pad, str) else f"{float(rule.pad)!r}"
    return f"""
## Whole recordings

This model classifies one whole recording at a time (`[window] mode = "recording"`):
every recording was one example in training, fitted to one window of
{p.window_samples} samples ({ms:g} ms at {p.sample_rate_hz:g} Hz). The device does
the same with

```c
int32_t kml_classify_recording(const float *samples, int32_t n_samples, kml_result_t *out);
```

`samples` holds the raw recording, `n_samples` rows of `KML_CHANNELS` floats at
`KML_SAMPLE_RATE_HZ` (`[n_samples][KML_CHANNELS]`, what `kml_push_sample` takes one row
of); {pre}the recording is fitted to `KML_WINDOW_SAMPLES` samples{decimated}:

- shorter: padded after its last sample with {_pad_words(rule.pad)} (`pad = {setting}`);
- longer: {_crop_words(rule.crop)} (`crop = "{rule.crop}"`).

The return value is the class index (also `out->label`), or -1 with `out` untouched
when `n_samples < 1`{" or the recording is longer than the window" if rule.crop == "error" else ""}.
The function resets the library (`kml_reset`) before and after, and uses the
streaming ring buffer as its window: no extra RAM, but do not call it in the middle of
a stream you feed with `kml_push_sample`.

```c
kml_result_t result;
/* a gesture, a word ...: n rows of KML_CHANNELS raw samples */
if (kml_classify_recording(recording, n, &result) >= 0) {{
    /* kml_class_names[result.label], result.scores[...] */
}}
```
"""


def _readme_windows(p: Pipeline, n_features: int) -> str:
    return f"""# kiloml model library: {p.name}

Generated by kiloml {__version__}. C99, no malloc, all state static.

- input: {p.n_channels} channels ({", ".join(p.channels)}) at {p.sample_rate_hz:g} Hz
- window: {p.window_samples} samples, a new window every {p.stride_samples} samples
- features: {n_features}; classes: {", ".join(p.class_names)}

Build every `.c` file here with your firmware and link the math library
(`-lm`). Any C or C++ compiler flags will do except `-ffast-math`/`-Ofast`
(refused with an `#error`): every `.c` file includes `kml_fp.h` first, which turns
floating-point contraction (fused multiply-adds) off for it, as parity with the
Python reference needs (clang's `-ffp-contract=fast` overrides it: do not use that).

```c
#include "kiloml_model.h"

kml_result_t result;
kml_reset();
for (;;) {{
    float sample[KML_CHANNELS] = {{ /* read the sensor */ }};
    if (kml_push_sample(sample)) {{
        kml_classify_latest(&result);
        /* kml_class_names[result.label], result.scores[...] */
    }}
}}
```
"""
