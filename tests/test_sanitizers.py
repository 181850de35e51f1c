"""Generated C under AddressSanitizer and UndefinedBehaviorSanitizer (with
float-cast-overflow), on seeded random and extreme inputs, for every model family.

Each family (kiloml/verify/sanitize_families.py: forests in both C styles and every
compaction, every DSP stage, int8 networks standalone and in projects, the decision
layer) is built once and run once with a few thousand inputs per entry point: NaN,
+-inf, denormals, +-FLT_MAX, +-FLT_MIN, constant windows, alternating extremes,
maximum-amplitude int8 (`make fuzz` runs 100,000 per entry point:
bench/sanitize.py). A family passes with no sanitizer report, the API's promises kept
(labels and decisions in range, finite scores, ...) and every dumped input, finite or
not, agreeing with the Python reference bit for bit. The planted faults at the end show
that the harness does find a float-to-int conversion of NaN, an overrun and a wrong
answer.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest

from kiloml.codegen.library import write_library
from kiloml.decision.layer import DecisionParams
from kiloml.nn.graph import Graph, Quantization, Tensor
from kiloml.nn.quantize import quantize_input
from kiloml.nn.reference import Interpreter
from kiloml.verify.sanitize import Counts, run_family, run_library
from kiloml.verify.sanitize_families import Family, build_pipeline, families

INPUTS = 2000  # per entry point (make fuzz: 100,000)
FAMILIES = {f.name: f for f in families()}


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sanitize")


def test_the_families_cover_what_the_issue_lists() -> None:
    names = " ".join(FAMILIES)
    for style in ("table", "inline"):
        for thresholds in ("float32", "int16"):
            for leaves in ("exact", "uint8", "uint16"):
                assert f"random_forest-{style}-{thresholds}-{leaves}" in FAMILIES
    tomls = "\n".join(f.toml or "" for f in FAMILIES.values())
    for fragment in ('kind = "decision_tree"', 'kind = "extra_trees"', 'stage = "statistics"',
                     'stage = "spectral"', 'stage = "mfcc"', 'stage = "mfe"',
                     'method = "standard"', 'method = "minmax"', 'type = "lowpass"',
                     'type = "highpass"', 'type = "bandpass"', 'stage = "pre_emphasis"',
                     'stage = "decimate"', "log = true", "log = false",
                     'window_function = "hann"', 'window_function = "hamming"',
                     'window_function = "rectangular"', 'thresholds = "calibrated"',
                     "min_score = ", "min_margin = ", 'smoothing = "average"',
                     'smoothing = "majority"', "on_windows = ", 'kind = "mlp"',
                     'kind = "cnn1d"'):
        assert fragment in tomls, fragment
    for stem in ("mlp_int8", "cnn1d_int8", "dscnn_int8", "ops_mix_int8"):
        assert f"{stem}-standalone" in names


@pytest.mark.parametrize("name", list(FAMILIES))
def test_family_is_clean_under_sanitizers(name: str, work: Path) -> None:
    family = FAMILIES[name]
    run = run_family(family, work, INPUTS, seed=zlib.crc32(name.encode()) % 1000)
    assert run.findings == [], run.findings
    assert run.inputs >= INPUTS
    assert run.parity_ok, run.parity
    s = run.summary
    if family.standalone_network:
        kinds = {**s["int8_kinds"], **s["float_kinds"]}
        assert sum(s["int8_kinds"].values()) + sum(s["float_kinds"].values()) >= INPUTS
        used = s["float_kinds"] if sum(s["float_kinds"].values()) else s["int8_kinds"]
        assert min(used.values()) > 0, kinds  # every class of values was fed
        assert run.parity["n"] >= 200
        return
    assert min(s["kinds"].values()) > 0, s["kinds"]
    assert s["streamed_windows"] >= INPUTS and s["pushed_samples"] > s["streamed_windows"]
    assert sum(1 for n in s["labels"] if n) >= 2, s["labels"]  # a real model, not a constant
    p = run.parity
    assert p["windows"]["finite"]["n"] >= 100 and p["windows"]["non_finite"]["n"] >= 20
    assert p["streams"]["finite"]["n_windows"] >= 20
    assert p["decide"]["finite"]["calls"] >= 100 and p["decide"]["non_finite"]["calls"] >= 100
    if family.group == "decision":
        assert s["decisions"][0] > 0  # the layer does say "uncertain"
    if "[monitor]" in (family.toml or ""):  # every 5th streamed window wrote a record
        assert s["monitor_records"] >= s["streamed_windows"] // 5 - s["streams"]
        assert s["monitor_flagged_windows"] > 0  # hostile streams do raise flags


def _quantize_graph(n: int, q: Quantization) -> Graph:
    g = Graph(tensors=[], ops=[], inputs=[], outputs=[], name="quantize")
    x = g.add_tensor(Tensor("x", (1, n), "float32"))
    y = g.add_tensor(Tensor("y", (1, n), "int8", q))
    g.add_op("QUANTIZE", [x], [y])
    g.inputs, g.outputs = [x], [y]
    return g


def test_int8_input_quantization_agrees_on_nan_and_infinity() -> None:
    """The two float -> int8 conversions (a project network's input in kiloml_model.c,
    quantize_input; a QUANTIZE operator, kml_quantize_f32_s8) give the same integers for
    every float32, NaN and infinities included (their C is checked by the families)."""
    rng = np.random.default_rng(0)
    specials = np.array([np.nan, np.inf, -np.inf, 3.4e38, -3.4e38, 1e-45, -0.0, 2.0 ** 63,
                         -(2.0 ** 63), 6.375, -6.425], np.float32)
    bits = rng.integers(0, 2 ** 32, 500, dtype=np.uint64).astype(np.uint32).view(np.float32)
    x = np.concatenate([specials, rng.standard_normal(500).astype(np.float32) * 20,
                        bits]).reshape(1, -1)
    for zp in (-128, -5, 0, 3, 127):
        q = Quantization.per_tensor(0.05, zp)
        by_input = quantize_input(x, Tensor("x", x.shape, "int8", q))
        by_op = Interpreter(_quantize_graph(x.shape[1], q)).run([x])[0]
        np.testing.assert_array_equal(by_input, by_op.reshape(by_input.shape))
        assert by_input[0, 0] == -128  # NaN, as kml_quantize_f32_s8
        assert by_input[0, 1] == 127 and by_input[0, 2] == -128  # +-inf saturate


# ---- the harness finds what it is for --------------------------------------------------

def _tree_family() -> Family:
    return FAMILIES["random_forest-table-int16-uint8"]


def test_a_float_to_int_conversion_of_nan_is_found(work: Path, tmp_path: Path) -> None:
    """kiloml_model.c as it was before the fix: a NaN feature reached (int32_t)roundf()."""
    family = FAMILIES["min_score-network"]
    pipeline = build_pipeline(family, work)
    library = write_library(pipeline, tmp_path / "firmware")
    source = library.directory / "kiloml_model.c"
    text = source.read_text()
    fixed = "kml_m_q >= -1000.0f ? kml_m_q : -1000.0f"
    assert fixed in text
    source.write_text(text.replace(fixed, "kml_m_q < -1000.0f ? -1000.0f : kml_m_q"))
    run = run_library(family, pipeline, library, tmp_path, Counts.each(500, 50))
    assert any("nan is outside the range of representable values" in f for f in run.findings)


def test_an_overrun_is_found(work: Path, tmp_path: Path) -> None:
    family = _tree_family()
    pipeline = build_pipeline(family, work)
    library = write_library(pipeline, tmp_path / "firmware")
    source = library.directory / "kiloml_model.c"
    text = source.read_text()
    ring = "static float kml_ring[KML_WINDOW_SAMPLES * KML_CHANNELS];"
    assert ring in text
    source.write_text(text.replace(ring, ring.replace("KML_CHANNELS]", "KML_CHANNELS - 1]")))
    run = run_library(family, pipeline, library, tmp_path, Counts.each(500, 50))
    assert any("AddressSanitizer: global-buffer-overflow" in f for f in run.findings)


def test_a_wrong_answer_is_found(work: Path, tmp_path: Path) -> None:
    """The C decides with the emitted parameters; a Python twin with others disagrees."""
    family = FAMILIES["calibrated-thresholds-average-hysteresis"]
    pipeline = build_pipeline(family, work)
    library = write_library(pipeline, tmp_path / "firmware")
    p = pipeline.decision_params
    pipeline.decision = DecisionParams(p.n_classes, p.thresholds, 0.9, p.min_margin,
                                       p.smoothing, p.smoothing_windows, p.on_windows,
                                       p.off_windows)
    run = run_library(family, pipeline, library, tmp_path, Counts.each(500, 100))
    assert run.findings == []
    assert not run.parity_ok
    streams = run.parity["streams"]["finite"]
    assert streams["device_scores_equal"] and not streams["decisions_equal"]
    assert not run.parity["decide"]["finite"]["all_equal"]
    assert run.parity["windows"]["finite"]["all_equal"]  # features and scores still agree
