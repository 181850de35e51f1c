"""[window] mode = "recording" (one example per recording, fitted by pad / crop), the same
rule in C (kml_classify_recording, host and QEMU parity on every held-out recording and on
boundary-length probes), per_recording = "vote" for windowed projects, and check-data not
counting padding as clipping."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import CLASSES, CsvProject, assert_user_error, csv_text, run_cli, signal

from kiloml.codegen.library import write_library
from kiloml.data.recording import Recording
from kiloml.data.windows import fit_recording, make_recording_windows
from kiloml.errors import KilomlError
from kiloml.evaluate.data_checks import channels
from kiloml.evaluate.per_recording import per_recording_vote, vote
from kiloml.persist.pipeline_state import load_pipeline
from kiloml.project import RecordingRule, TargetConfig
from kiloml.targets.budget import Budget
from kiloml.targets.profiles import load_profile
from kiloml.verify.host import build_host, run_recordings
from kiloml.verify.parity import recording_parity
from kiloml.verify.reference import REFERENCE_FILE, Reference, whole_recording_reference
from kiloml.verify.target import verify_target

RECORDING_TOML = """\
name = "gestures"

[data]
source = "csv"
path = "data"
sample_rate_hz = 50
timestamp_column = "t"
label_from_folder = true
group_pattern = '(?P<group>s\\d+)_'

[[preprocess]]
stage = "decimate"
factor = 2

[window]
mode = "recording"
length_ms = 1000
pad = "edge"
crop = "center"

[[features]]
stage = "statistics"

[model]
kind = "random_forest"
n_estimators = 5
max_depth = 6

[evaluation]
test_groups = ["s5"]
cv_folds = 3

[output]
dir = "out"
"""

SECONDS = (0.5, 1.0, 1.7)  # shorter than, about, and longer than length_ms


def write_gestures(root: Path, toml: str = RECORDING_TOML) -> Path:
    """Three classes x five subjects x three recordings of 0.5 to 2 s (50 Hz)."""
    seed = 0
    for label in CLASSES:
        for subject in ("s1", "s2", "s3", "s4", "s5"):
            for k in range(3):
                seconds = SECONDS[(k + seed) % 3] + 0.02 * seed
                path = root / "data" / label / f"{subject}_{k}.csv"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(csv_text(signal(label, seconds, seed)))
                seed += 1
    (root / "kiloml.toml").write_text(toml)
    return root / "kiloml.toml"


@pytest.fixture(scope="module")
def gestures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The gesture project run once, host and Cortex-M4F (QEMU) parity included."""
    toml = write_gestures(tmp_path_factory.mktemp("gestures"))
    result = run_cli("run", str(toml))
    assert result.exit_code == 0, result.stderr + result.stdout
    assert "kml_classify_recording" in result.stdout
    return toml


def metrics_of(toml: Path) -> dict:
    return json.loads((toml.parent / "out" / "metrics.json").read_text())


# --- the rule in Python ------------------------------------------------------------------


def ramp(n: int, channels: int = 2) -> np.ndarray:
    return (np.arange(n * channels, dtype=np.float32).reshape(n, channels) + 1.0)


@pytest.mark.parametrize(("pad", "fill"), [("zero", [0.0, 0.0]), ("edge", [5.0, 6.0]),
                                           (-2.5, [-2.5, -2.5])])
def test_shorter_recordings_are_padded_after_their_end(pad, fill) -> None:
    fitted = fit_recording(ramp(3), 5, RecordingRule(pad=pad))
    assert fitted is not None and fitted.first == 0 and fitted.valid == 3
    np.testing.assert_array_equal(fitted.window[:3], ramp(3))
    np.testing.assert_array_equal(fitted.window[3:], [fill, fill])
    assert fitted.window.dtype == np.float32


@pytest.mark.parametrize(("crop", "n", "first"), [
    ("start", 9, 0), ("end", 9, 4), ("center", 9, 2), ("center", 10, 2), ("center", 6, 0),
    ("center", 7, 1)])
def test_longer_recordings_are_cropped_to_the_part_kept(crop, n, first) -> None:
    fitted = fit_recording(ramp(n), 5, RecordingRule(crop=crop))
    assert fitted is not None and fitted.first == first and fitted.valid == 5
    np.testing.assert_array_equal(fitted.window, ramp(n)[first:first + 5])


def test_crop_error_refuses_longer_and_keeps_exact_lengths() -> None:
    assert fit_recording(ramp(6), 5, RecordingRule()) is None
    exact = fit_recording(ramp(5), 5, RecordingRule())
    assert exact is not None and exact.valid == 5
    np.testing.assert_array_equal(exact.window, ramp(5))


def rec(n: int, label: str = "a", source: str = "r.csv", labels=None) -> Recording:
    return Recording(ramp(n), 10.0, ["x", "y"], "g1", source,
                     label=None if labels is not None else label, sample_labels=labels)


def test_recording_windows_count_padding_and_cropping() -> None:
    w = make_recording_windows([rec(3, "a"), rec(5, "b"), rec(9, "a"), rec(12, "b")], 500,
                               RecordingRule(crop="end"))
    assert len(w) == 4 and w.window_samples == 5 and w.stride_samples == 5
    assert w.valid.tolist() == [3, 5, 5, 5] and w.start.tolist() == [0, 0, 4, 7]
    assert (w.fit["padded"], w.fit["cropped"], w.fit["exact"]) == (1, 2, 1)
    assert w.class_names == ["a", "b"] and w.y.tolist() == [0, 1, 0, 1]
    kept = w.subset(np.array([1, 3]))
    assert kept.valid.tolist() == [5, 5] and kept.fit == w.fit


def test_recording_with_two_labels_is_refused() -> None:
    labels = np.array(["a"] * 3 + ["b"] * 3, dtype=object)
    with pytest.raises(KilomlError, match="one label; this one has labels 'a', 'b'"):
        make_recording_windows([rec(6, labels=labels, source="two.csv")], 500, RecordingRule())
    one = np.array(["", "a", "a", "", "a", "a"], dtype=object)  # unlabelled samples: no class
    w = make_recording_windows([rec(6, labels=one), rec(4, "b")], 500, RecordingRule(crop="end"))
    assert w.class_names == ["a", "b"]


def test_longer_recording_without_a_crop_rule_names_the_file() -> None:
    with pytest.raises(KilomlError) as info:
        make_recording_windows([rec(3), rec(9, source="long.csv")], 500, RecordingRule())
    assert info.value.file == "long.csv" and 'crop = "error"' in info.value.message
    w = make_recording_windows([rec(3), rec(9, source="long.csv")], 500, RecordingRule(),
                               refused="skip")  # stress tests: left out, as the C does
    assert w.recording.tolist() == [0]


# --- end to end: host and QEMU ---------------------------------------------------------


def assert_recordings_equal(p: dict) -> None:
    rec = p["recordings"]
    assert rec["decisions_equal"] == rec["n"] > 0 and rec["all_decisions_equal"]
    assert rec["scores_bit_exact"] and rec["out_untouched_when_refused"]
    assert rec["held_out_recordings"] == 9 and rec["boundary_probes"] >= 7
    assert rec["padded"] > 0 and rec["cropped"] > 0  # shorter and longer held-out ones
    assert p["all_decisions_equal"] and p["features_bit_exact"]


def test_whole_recordings_match_on_host_and_qemu(gestures: Path) -> None:
    m = metrics_of(gestures)
    fit = m["data"]["recording_fit"]
    assert fit["length_samples"] == 25 and fit["pad"] == "edge" and fit["crop"] == "center"
    assert fit["padded"] + fit["cropped"] + fit["exact"] == m["data"]["n_recordings"] == 45
    assert m["evaluation"]["n_test_windows"] == 9  # one per held-out recording
    assert_recordings_equal(m["parity"]["host"])
    assert_recordings_equal(m["parity"]["cortex-m4f"])
    r = m["resources"]["cortex-m4f"]
    assert r["recording_instructions_max"] >= r["recording_instructions_mean"] > \
        r["instructions_per_inference"]  # preprocessing and fitting on top of a window
    assert r["stack_bytes"] >= r["recording_stack_bytes"] > 0
    # the report says what an example is (not "windows of 250 ms every ...")
    report = (gestures.parent / "out" / "report.html").read_text()
    assert "one example per recording, fitted to 1000 ms (pad = edge, crop = center" in report


def test_the_library_documents_the_rule(gestures: Path) -> None:
    fw = gestures.parent / "out" / "firmware"
    header = (fw / "kiloml_model.h").read_text()
    assert "int32_t kml_classify_recording(const float *samples, int32_t n_samples, " \
           "kml_result_t *out);" in header
    assert '#define KML_PAD "edge"' in header and '#define KML_CROP "center"' in header
    readme = (fw / "README.md").read_text()
    for words in ("## Whole recordings", "25 samples", "copies of the last sample",
                  "middle KML_WINDOW_SAMPLES", "(n - 1) / 2 + 1", "kml_reset"):
        assert words in readme, words
    assert load_pipeline(gestures.parent / "out" / "pipeline.json").recording == \
        RecordingRule(pad="edge", crop="center")


RULES = [RecordingRule(pad=p, crop=c) for p in ("zero", "edge", 0.75)
         for c in ("error", "start", "center", "end")]


def rule_setup(gestures: Path, rule: RecordingRule, work: Path):
    out = gestures.parent / "out"
    pipeline = load_pipeline(out / "pipeline.json")
    pipeline.recording = rule
    reference = Reference.load(out / "verify" / REFERENCE_FILE, pipeline)
    held_out = [Recording(x, pipeline.input_rate_hz, list(pipeline.channels), "g", f"r{i}",
                          label="x") for i, x in enumerate(reference.whole_recordings)
                if reference.recording_probe[i] == 0]
    reference = dataclasses.replace(reference, **whole_recording_reference(pipeline, held_out))
    return pipeline, reference, write_library(pipeline, work / "firmware")


@pytest.mark.parametrize("rule", RULES, ids=lambda r: f"{r.pad}-{r.crop}")
def test_every_pad_and_crop_rule_matches_on_the_host(gestures: Path, tmp_path: Path,
                                                     rule: RecordingRule) -> None:
    """The C of each rule against Python's fit_recording (itself checked above), on the
    held-out recordings and the probes; ASan and UBSan watch every access."""
    pipeline, reference, library = rule_setup(gestures, rule, tmp_path)
    exe = build_host(library, tmp_path / "build", sanitize=True)
    outputs = run_recordings(exe, reference.whole_recordings, pipeline.n_classes, tmp_path)
    p = recording_parity(reference, outputs, pipeline)
    assert p["all_decisions_equal"] and p["scores_bit_exact"], p
    refused_expected = 1 + (rule.crop == "error") * int(
        np.sum((reference.recording_lengths - 1) // 2 + 1 > pipeline.window_samples))
    assert p["refused"] == refused_expected  # the empty probe, and longer ones by "error"


@pytest.mark.parametrize("rule", [RecordingRule(pad=0.75, crop="error"),
                                  RecordingRule(pad="zero", crop="end")],
                         ids=lambda r: f"{r.pad}-{r.crop}")
def test_other_rules_match_on_qemu(gestures: Path, tmp_path: Path, rule: RecordingRule) -> None:
    pipeline, reference, library = rule_setup(gestures, rule, tmp_path)
    profile = load_profile("cortex-m4f")
    budget = Budget.for_target(profile, TargetConfig())
    result = verify_target(pipeline, library, reference, profile, budget, tmp_path / "m4f")
    assert result.parity["recordings"]["all_decisions_equal"], result.parity["recordings"]
    assert result.parity["recordings"]["scores_bit_exact"] and result.ok


def test_verify_on_a_small_board_checks_the_recordings_too(gestures: Path) -> None:
    result = run_cli("verify", str(gestures), "--target", "cortex-m0plus")
    assert result.exit_code == 0, result.stderr + result.stdout
    p = metrics_of(gestures)["parity"]["cortex-m0plus"]
    assert p["emulated"] and p["recordings"]["all_decisions_equal"]
    assert p["recordings"]["n"] == p["recordings"]["held_out_recordings"] + \
        p["recordings"]["boundary_probes"]


# --- bad input -----------------------------------------------------------------------------


def test_longer_recordings_without_crop_are_one_line(tmp_path: Path) -> None:
    toml = write_gestures(tmp_path, RECORDING_TOML.replace('crop = "center"\n', ""))
    line = assert_user_error(run_cli("run", str(toml), "--no-emulator"), 'crop = "error"',
                             "more than length_ms = 1000", 'set crop = "start", "center" or')
    assert "_2.csv" in line or "_1.csv" in line or "_0.csv" in line  # names the file


@pytest.mark.parametrize(("old", "new", "fragments"), [
    ("length_ms = 1000", "length_ms = 1000\nwindow_ms = 1000",
     ("[window]", "'window_ms' applies to mode = \"windows\"")),
    ("length_ms = 1000\n", "", ("[window]", "needs length_ms")),
    ('mode = "recording"\n', "", ("[window]", "missing required key 'window_ms'")),
    ('pad = "edge"', 'pad = "mirror"', ("[window] pad", "'zero' or 'edge'")),
    ('crop = "center"', 'crop = "middle"', ("[window] crop", "'center'")),
    ('pad = "edge"', "pad = 1e39", ("[window] pad", "float32")),
    ('group_pattern', 'pad_to_ms = 500\ngroup_pattern',
     ("[data] pad_to_ms", "applies to [window] mode = \"windows\"")),
    ("cv_folds = 3", 'cv_folds = 3\nper_recording = "vote"',
     ("[evaluation] per_recording", "every window is a whole recording")),
    ("[output]", '[decision]\nsmoothing = "average"\nsmoothing_windows = 3\n\n[output]',
     ("[decision] smoothing", "one decision per recording")),
])
def test_recording_settings_that_cannot_work(tmp_path: Path, old: str, new: str,
                                             fragments: tuple[str, ...]) -> None:
    text = RECORDING_TOML
    assert old in text
    toml = write_gestures(tmp_path, text.replace(old, new, 1))
    assert_user_error(run_cli("run", str(toml), "--no-emulator"), *fragments)


def test_windowed_projects_refuse_recording_keys(csv_project: CsvProject) -> None:
    csv_project.set_toml("stride_ms = 500", 'stride_ms = 500\ncrop = "end"')
    assert_user_error(run_cli("run", str(csv_project.toml)), "[window]",
                      "'crop' applies to mode = \"recording\"")


# --- per_recording = "vote" -------------------------------------------------------------


def test_vote_ties_go_to_the_first_class() -> None:
    assert vote(np.array([2, 1, 1, 2]), 3) == (1, True)
    assert vote(np.array([2, 2, 0]), 3) == (2, False)
    v = per_recording_vote(np.array([0, 0, 0, 1, 1, 1, 1]), np.array([0, 1, 1, 1, 0, 0, 1]),
                           np.array([4, 4, 4, 7, 7, 7, 7]), np.array(["g"] * 7),
                           [f"r{i}" for i in range(8)], ["a", "b"])
    assert v["n_recordings"] == 2 and v["ties"] == 1 and v["accuracy"] == 0.0
    assert [(r["recording"], r["decision"]) for r in v["misclassified"]] == \
        [("r4", "b"), ("r7", "a")]


def test_windowed_project_votes_per_recording(csv_project: CsvProject) -> None:
    csv_project.set_toml("cv_folds = 3", 'cv_folds = 3\nper_recording = "vote"')
    result = run_cli("run", str(csv_project.toml), "--no-emulator")
    assert result.exit_code == 0, result.stderr
    ev = json.loads((csv_project.out / "metrics.json").read_text())["evaluation"]
    v = ev["per_recording"]
    assert v["method"] == "vote" and v["n_recordings"] == 3  # s4's three recordings
    assert "first in class order" in v["tie_rule"]
    assert ev["n_test_windows"] == 45 and v["accuracy"] >= ev["accuracy"] - 1e-9 > 0.9
    assert "per recording" in result.stdout


# --- check-data: padding is not clipping ------------------------------------------------


def test_padding_is_not_counted_as_clipping() -> None:
    rng = np.random.default_rng(0)
    x = (1.0 + rng.random((200, 1))).astype(np.float32)  # strictly positive samples
    padded = np.concatenate([x, np.zeros((200, 1), np.float32)])
    r = Recording(padded, 50.0, ["a"], "g", "p.csv", label="x")
    assert channels([r])["n_clipped"] == 1  # the zeros sit at the minimum: looks clipped
    real = Recording(x, 50.0, ["a"], "g", "p.csv", label="x")
    assert channels([real])["n_clipped"] == 0


def test_a_short_clean_recording_is_not_clipped() -> None:
    """Its one minimum and one maximum were 2 / 25 = 8 % of it: above the 5 % line."""
    x = np.random.default_rng(1).standard_normal((25, 1)).astype(np.float32)
    assert channels([Recording(x, 50.0, ["a"], "g", "s.csv", label="x")])["n_clipped"] == 0
    x[:4] = x.min()  # four samples stuck at the minimum: three repeats, 12 %
    assert channels([Recording(x, 50.0, ["a"], "g", "s.csv", label="x")])["n_clipped"] == 1


@pytest.mark.parametrize("mode", ["windows", "recording"])
def test_check_data_ignores_padding(tmp_path: Path, mode: str) -> None:
    """Positive signals padded with zeros (by [data] pad_to_ms, or by [window] pad): the
    channel check looks at what the sensor gave only."""
    toml = write_gestures(tmp_path)
    for f in (tmp_path / "data").rglob("*.csv"):
        rows = np.loadtxt(f, delimiter=",", skiprows=1)
        rows[:, 1:] = np.abs(rows[:, 1:]) + 1.0
        f.write_text(csv_text(rows))
    if mode == "windows":
        text = RECORDING_TOML.replace('mode = "recording"\nlength_ms = 1000\npad = "edge"\n'
                                      'crop = "center"', "window_ms = 1000\nstride_ms = 1000")
        toml.write_text(text.replace("group_pattern", "pad_to_ms = 2000\nshort_recordings = "
                                     '"error"\ngroup_pattern'))
    else:
        toml.write_text(RECORDING_TOML.replace('pad = "edge"', 'pad = "zero"').replace(
            "length_ms = 1000", "length_ms = 2000"))
    out = tmp_path / "checks.json"
    result = run_cli("check-data", str(toml), "--json", str(out))
    assert result.exit_code == 0, result.stderr + result.stdout
    check = json.loads(out.read_text())["data_checks"]["channels"]
    assert check["n_clipped"] == 0, check["issues"]


def test_dumped_sections_validate_again() -> None:
    """Search candidates are sections dumped with model_dump and validated again: the keys
    of the other mode are there, at their defaults."""
    from kiloml.project import EvaluationConfig, WindowConfig

    for window in (WindowConfig(window_ms=1000, stride_ms=500),
                   WindowConfig(mode="recording", length_ms=800, pad=0.5, crop="end")):
        assert WindowConfig.model_validate(window.model_dump()) == window
    ev = EvaluationConfig(test_pattern="(^|/)test/", per_recording="vote")
    assert EvaluationConfig.model_validate(ev.model_dump()) == ev
    with pytest.raises(ValueError, match="'pad' applies to mode"):
        WindowConfig(window_ms=1000, stride_ms=500, pad="edge")


def test_a_length_beyond_memory_is_refused_before_allocating() -> None:
    fast = Recording(ramp(3), 1e6, ["x", "y"], "g", "fast.csv", label="a")  # 1 MHz
    with pytest.raises(KilomlError, match="GiB of float32") as info:
        make_recording_windows([fast], 3600e3, RecordingRule())  # an hour: 3.6e9 samples
    assert info.value.where == "[window] length_ms"


def test_a_reference_must_match_the_pipelines_mode(gestures: Path, tmp_path: Path) -> None:
    out = gestures.parent / "out"
    pipeline = load_pipeline(out / "pipeline.json")
    reference = Reference.load(out / "verify" / REFERENCE_FILE, pipeline)
    windowed = dataclasses.replace(reference, **{k: None for k in (
        "recording_samples", "recording_lengths", "recording_labels", "recording_scores",
        "recording_probe")})
    windowed.save(tmp_path / REFERENCE_FILE)
    with pytest.raises(KilomlError, match="recording_\\*\\) are missing"):
        Reference.load(tmp_path / REFERENCE_FILE, pipeline)
    pipeline.recording = None
    with pytest.raises(KilomlError, match="are there, and the pipeline cuts windows"):
        Reference.load(out / "verify" / REFERENCE_FILE, pipeline)
