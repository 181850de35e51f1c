"""The decision layer: the C runtime against its Python twin (bit-exact), threshold
calibration, event metrics, and a project with a decision layer on host and QEMU."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import CsvProject, assert_user_error, run_cli

from kiloml.codegen.library import RUNTIME_DIR, STRICT_CFLAGS
from kiloml.decision.calibrate import calibrate_thresholds
from kiloml.decision.events import event_metrics
from kiloml.decision.layer import SMOOTHING, UNCERTAIN, DecisionLayer, DecisionParams
from kiloml.errors import KilomlError

F32 = np.float32

HARNESS = r"""
#include <stdio.h>
#include "kml_decision.h"
static float history[64 * 64];
static int32_t votes[64];
int main(int argc, char **argv)
{
    int32_t head[5], n, i, label, cand, dec, ch;
    float lim[2], thr[64], scores[64], sm[64];
    kml_decision_params p;
    kml_decision_state s;
    FILE *in = fopen(argv[1], "rb"), *out = fopen(argv[2], "wb");
    (void)argc;
    if (fread(head, 4, 5, in) != 5 || fread(lim, 4, 2, in) != 2) return 1;
    if (fread(thr, 4, (size_t)head[0], in) != (size_t)head[0]) return 1;
    p.n_classes = head[0]; p.smoothing = head[1]; p.smoothing_windows = head[2];
    p.on_windows = head[3]; p.off_windows = head[4]; p.thresholds = thr;
    p.min_score = lim[0]; p.min_margin = lim[1];
    s.history = history; s.votes = votes;
    kml_decision_reset(&s);
    if (fread(&n, 4, 1, in) != 1) return 1;
    for (i = 0; i < n; ++i) {
        if (fread(scores, 4, (size_t)p.n_classes, in) != (size_t)p.n_classes) return 1;
        if (fread(&label, 4, 1, in) != 1) return 1;
        ch = kml_decision_step(&p, &s, scores, label, sm, &cand, &dec);
        fwrite(sm, 4, (size_t)p.n_classes, out);
        fwrite(&cand, 4, 1, out); fwrite(&dec, 4, 1, out); fwrite(&ch, 4, 1, out);
    }
    fclose(out);
    return 0;
}
"""


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("decision")
    (work / "main.c").write_text(HARNESS)
    exe = work / "decide"
    subprocess.run(["gcc", *STRICT_CFLAGS, "-O2", f"-I{RUNTIME_DIR}",
                    str(RUNTIME_DIR / "kml_decision.c"), str(work / "main.c"), "-o", str(exe)],
                   check=True)
    return exe


def _c_steps(exe: Path, p: DecisionParams, scores: np.ndarray, labels: np.ndarray,
             work: Path) -> tuple[np.ndarray, np.ndarray]:
    k = p.n_classes
    payload = (np.array([k, SMOOTHING[p.smoothing], p.smoothing_windows, p.on_windows,
                         p.off_windows], "<i4").tobytes()
               + np.array([p.min_score, p.min_margin], "<f4").tobytes()
               + p.thresholds.astype("<f4").tobytes() + np.int32(len(scores)).tobytes())
    rows = np.zeros(len(scores), np.dtype([("s", "<f4", (k,)), ("l", "<i4")]))
    rows["s"], rows["l"] = scores, labels
    (work / "in.bin").write_bytes(payload + rows.tobytes())
    subprocess.run([str(exe), str(work / "in.bin"), str(work / "out.bin")], check=True)
    out = np.frombuffer((work / "out.bin").read_bytes(),
                        np.dtype([("sm", "<f4", (k,)), ("c", "<i4"), ("d", "<i4"),
                                  ("ch", "<i4")]))
    return out["sm"], np.stack([out["c"], out["d"], out["ch"]], axis=1)


@pytest.mark.parametrize(("smoothing", "windows", "on", "off", "min_score", "margin"), [
    ("none", 1, 1, 1, 0.0, 0.0), ("average", 5, 3, 2, 0.3, 0.05),
    ("majority", 7, 2, 4, 0.0, 0.2), ("average", 64, 1, 1, 0.2, 0.0)])
def test_c_layer_is_bit_exact_with_the_twin(harness: Path, tmp_path: Path, smoothing: str,
                                            windows: int, on: int, off: int,
                                            min_score: float, margin: float) -> None:
    rng = np.random.default_rng(windows)
    k, n = 5, 600
    raw = rng.dirichlet(np.full(k, 0.7), size=n).astype(F32)
    # runs of one dominant class, so hysteresis and smoothing have something to do
    boost = np.repeat(rng.integers(0, k, n // 20), 20)
    raw[np.arange(n), boost] += F32(0.5)
    scores = (raw / raw.sum(axis=1, keepdims=True)).astype(F32)
    labels = np.argmax(scores, axis=1)
    p = DecisionParams(k, rng.uniform(0, 0.3, k).astype(F32), min_score, margin, smoothing,
                       windows, on, off)
    twin = DecisionLayer(p).run(scores, labels)
    smoothed, ints = _c_steps(harness, p, scores, labels, tmp_path)
    assert np.array_equal(smoothed.view(np.int32), twin.smoothed.view(np.int32))
    np.testing.assert_array_equal(ints[:, 0], twin.candidate)
    np.testing.assert_array_equal(ints[:, 1], twin.decision)
    np.testing.assert_array_equal(ints[:, 2], twin.changed)
    assert twin.changed.sum() > 3  # the sequence exercises switching
    if min_score or margin:
        assert (twin.candidate == UNCERTAIN).any()


@pytest.mark.parametrize("smoothing", ["none", "average", "majority"])
def test_refused_windows_are_uncertain_and_stay_out_of_the_history(
        harness: Path, tmp_path: Path, smoothing: str) -> None:
    """A label of -1 (a linear model's answer to a NaN feature, scores all zero) is no
    evidence: the candidate is uncertain, the smoothing history does not take it (a
    pass-through layer used to report class 0), and C and Python agree bit for bit."""
    rng = np.random.default_rng(7)
    k, n = 3, 300
    scores = rng.dirichlet(np.full(k, 0.5), size=n).astype(F32)
    labels = np.argmax(scores, axis=1).astype(np.int32)
    refused = np.zeros(n, bool)
    refused[rng.choice(n, 40, replace=False)] = True
    refused[100:110] = True  # a run long enough to switch the decision off
    scores[refused], labels[refused] = 0.0, -1
    p = DecisionParams(k, np.zeros(k, F32), 0.0, 0.0, smoothing, 4, 1, 3)
    twin = DecisionLayer(p).run(scores, labels)
    assert (twin.candidate[refused] == UNCERTAIN).all()
    assert (twin.decision[102:110] == UNCERTAIN).all()
    assert (twin.candidate[~refused] != UNCERTAIN).all()  # pass-through otherwise
    if smoothing != "none":  # the window after a refused one smooths over real ones only
        after = np.flatnonzero(refused[:-1] & ~refused[1:]) + 1
        assert (twin.smoothed[after].sum(axis=1) > F32(0.99)).all()
    smoothed, ints = _c_steps(harness, p, scores, labels, tmp_path)
    assert np.array_equal(smoothed.view(np.int32), twin.smoothed.view(np.int32))
    np.testing.assert_array_equal(ints[:, 0], twin.candidate)
    np.testing.assert_array_equal(ints[:, 1], twin.decision)
    np.testing.assert_array_equal(ints[:, 2], twin.changed)


def test_hysteresis_and_smoothing_semantics() -> None:
    k = 2
    s = np.array([[1, 0], [0, 1], [1, 0], [1, 0], [1, 0], [0, 1], [0, 1]], F32)
    p = DecisionParams(k, np.zeros(k, F32), on_windows=2, off_windows=1)
    d = DecisionLayer(p).run(s, np.argmax(s, axis=1))
    # class 0 needs two windows in a row: the lone 0 at step 0 and the lone 1 do not switch
    assert d.decision.tolist() == [UNCERTAIN, UNCERTAIN, UNCERTAIN, 0, 0, 0, 1]
    assert d.changed.tolist() == [0, 0, 0, 1, 0, 0, 1]
    avg = DecisionLayer(DecisionParams(k, np.zeros(k, F32), smoothing="average",
                                       smoothing_windows=3)).run(s, np.argmax(s, axis=1))
    np.testing.assert_allclose(avg.smoothed[2], [2 / 3, 1 / 3], rtol=1e-6)  # mean of 3
    np.testing.assert_allclose(avg.smoothed[0], [1, 0])  # fewer while the history fills


def test_calibration_meets_each_target_on_validation() -> None:
    rng = np.random.default_rng(0)
    n, k = 4000, 3
    y = rng.integers(0, k, n)
    scores = rng.dirichlet(np.ones(k), n)
    scores[np.arange(n), y] += rng.uniform(0, 1.0, n)  # informative but noisy
    scores /= scores.sum(axis=1, keepdims=True)
    names = ["a", "b", "c"]
    pred = np.argmax(scores, axis=1)
    t, info = calibrate_thresholds(scores, y, names, "precision", 0.9, 0.5)
    for c in range(k):
        sel = (pred == c) & (scores[:, c] >= t[c])
        assert (y[sel] == c).mean() >= 0.9
        assert info["per_class"][names[c]]["precision"] >= 0.9
    t, _ = calibrate_thresholds(scores, y, names, "recall", 0.6, 0.5)
    for c in range(k):
        sel = (pred == c) & (scores[:, c] >= t[c])
        assert (sel & (y == c)).sum() / (y == c).sum() >= 0.6
    t, info = calibrate_thresholds(scores, y, names, "false_alarms_per_hour", 30.0, 0.5)
    hours = n * 0.5 / 3600
    for c in range(k):
        sel = (pred == c) & (scores[:, c] >= t[c])
        assert (sel & (y != c)).sum() / hours <= 30.0
    top = np.argmax(np.where(pred == 0, scores[:, 0], -1))
    y[top] = 1  # the most confident class-0 window is wrong: precision 1 is out of reach
    with pytest.raises(KilomlError, match=r"precision 1 cannot be met .* best achievable"):
        calibrate_thresholds(scores, y, names, "precision", 1.0, 0.5)


def test_event_metrics_count_false_alarms_misses_and_latency() -> None:
    rate = 10.0
    truth = np.repeat([0, 1, 2], 100)  # three 10 s events
    end = np.arange(9, 300, 5)
    decision = truth[end].copy()
    decision[end >= 200] = 1  # event 2 never detected
    decision[(end >= 100) & (end < 130)] = 0  # event 1 detected late (at sample 130)
    decision[(end >= 50) & (end < 60)] = 2  # a false alarm inside event 0
    changed = np.r_[1, (decision[1:] != decision[:-1]).astype(int)]
    e = event_metrics(truth, end, decision, changed, rate)
    assert e["events"] == 3 and e["missed_events"] == 1 and e["detected_events"] == 2
    # the switch to 2 inside event 0; staying on 1 into event 2 is a miss, not a switch
    assert e["false_alarms"] == 1
    assert e["latency_s_max"] == pytest.approx((134 - 100 + 1) / rate)
    assert e["false_alarms_per_hour"] == pytest.approx(1 / (30 / 3600))


DECISION = """
[decision]
thresholds = "calibrated"
target = "recall"
target_value = 0.5
min_margin = 0.05
smoothing = "average"
smoothing_windows = 3
on_windows = 2
off_windows = 2
"""


def test_project_decision_layer_on_host_and_m4(csv_project: CsvProject) -> None:
    csv_project.set_toml("[target]", DECISION + "\n[target]")
    result = run_cli("run", str(csv_project.toml))
    assert result.exit_code == 0, result.stderr
    m = json.loads((csv_project.out / "metrics.json").read_text())
    d = m["decision"]
    assert d["params"]["smoothing_windows"] == 3 and d["params"]["calibration"]["target"] == \
        "recall"
    for c in d["params"]["calibration"]["per_class"].values():
        assert c["recall"] >= 0.5
    assert d["stream"]["recordings"] == 3
    for key in ("raw", "decision"):
        assert d[key]["events"] == 3 and d[key]["false_alarms_per_hour"] >= 0
    for where in ("host", "cortex-m4f"):
        layer = m["parity"][where]["streaming"]["decision_layer"]
        assert layer["all_equal"] and layer["device_scores_bit_exact"], where
        assert layer["smoothed_bit_exact"] and layer["n"] == 3 * 15
    header = (csv_project.out / "firmware" / "kiloml_model.h").read_text()
    assert "kml_decide_latest" in header and "KML_SMOOTHING_WINDOWS 3" in header
    report = (csv_project.out / "report.html").read_text()
    assert "Decision layer" in report and "false alarms / h" in report
    assert "events" in result.stdout
    # the rule baseline: fitted, emitted, verified and measured like the model
    r = m["rule_baseline"]
    assert r["depth"] in (1, 2) and r["features_used"] and "class:" in r["rule"]
    assert r["parity_host"] and r["parity_target"]
    assert r["flash_bytes"] > 0 and r["instructions_per_inference"] > 0
    assert r["model_gain_points"] == pytest.approx(
        (m["evaluation"]["balanced_accuracy"] - r["balanced_accuracy"]) * 100)
    assert r["verdict"].startswith(f"the model adds {r['model_gain_points']:.1f} points")
    # three classes told apart by their dominant frequency: a depth-2 rule does as well
    assert r["balanced_accuracy"] > 0.9 and "consider shipping the rule" in r["verdict"]
    assert "Is ML needed" in report and "rule baseline" in result.stdout


def test_decision_bad_inputs(csv_project: CsvProject) -> None:
    # the same walking recordings of s1 and s2 also filed as idle: no threshold makes
    # every "idle" decision right
    for subject in ("s1", "s2"):
        twin = csv_project.file("idle", subject).with_name(f"{subject}_copy.csv")
        twin.write_text(csv_project.file("walk", subject).read_text())
    csv_project.set_toml("[target]", DECISION.replace('target = "recall"', 'target = '
                                                      '"precision"').replace("0.5", "1.0")
                         + "\n[target]")
    assert_user_error(run_cli("run", str(csv_project.toml)), "kiloml.toml",
                      "precision 1 cannot be met for class", "best achievable")
    assert not csv_project.out.exists()
    text = csv_project.toml.read_text().replace("target_value = 1.0", "target_value = 0.5")
    csv_project.toml.write_text(text.replace("smoothing_windows = 3", "smoothing_windows = 20"))
    assert_user_error(run_cli("run", str(csv_project.toml)), "kiloml.toml",
                      "smoothing_windows = 20", "shorter than the smoothing window")
    csv_project.toml.write_text(text.replace('smoothing = "average"', 'smoothing = "none"'))
    assert_user_error(run_cli("run", str(csv_project.toml)), "kiloml.toml",
                      "smoothing_windows needs smoothing")
    csv_project.toml.write_text(text.replace("on_windows", "onn_windows"))
    assert_user_error(run_cli("run", str(csv_project.toml)), "onn_windows", "on_windows")


# --- an imported model: calibrated thresholds without retraining per fold ------------

FIXTURES = Path(__file__).parent / "nn" / "fixtures"

IMPORTED_TOML = """\
name = "imported"

[data]
source = "csv"
path = "data"
sample_rate_hz = 32
label_column = "label"
group_pattern = '(?P<group>g[0-9]+)'

[window]
window_ms = 1000
stride_ms = 1000

[model]
kind = "imported"
path = "ops_mix_int8.tflite"
input = "window"

[evaluation]
test_groups = ["g5"]
cv_folds = {folds}

[decision]
thresholds = "calibrated"
target = "precision"
target_value = 0.9

[output]
dir = "out"
"""


def imported_project(root: Path, folds: int) -> tuple[Path, int]:
    """A converter-made model (Keras -> TFLite int8, [32, 4] windows -> 5 classes) and
    recordings whose windows carry the model's own predictions as labels (classes "0".."4"
    in its output order), five groups. Returns the project and its training windows."""
    from kiloml.models.neural import NeuralModel
    from kiloml.project import NeuralModelConfig

    fixture = FIXTURES / "ops_mix_int8.tflite"
    (root / fixture.name).write_bytes(fixture.read_bytes())
    model = NeuralModel(NeuralModelConfig(kind="imported", path=str(fixture), input="window"),
                        5, (32, 4), fixture)
    rng = np.random.default_rng(0)
    n = 4000
    pool = (rng.uniform(-1, 1, (n, 1, 4)) + rng.uniform(0, 1.5, (n, 1, 4))
            * rng.standard_normal((n, 32, 4))).astype(F32)
    model.fit(pool, np.zeros(n, int), np.zeros(n))
    label = model.predict(pool)
    train_windows = 0
    for g in range(1, 6):
        picks = np.concatenate([rng.choice(np.flatnonzero(label == c), 3, replace=False)
                                for c in range(5)] + [rng.choice(n, 10, replace=False)])
        rng.shuffle(picks)
        lines = ["a,b,c,d,label"]
        for w in picks:
            lines += [",".join(str(v) for v in row) + f",{label[w]}" for row in pool[w]]
        path = root / "data" / f"g{g}.csv"
        path.parent.mkdir(exist_ok=True)
        path.write_text("\n".join(lines) + "\n")
        train_windows += len(picks) if g < 5 else 0
    toml = root / "kiloml.toml"
    toml.write_text(IMPORTED_TOML.format(folds=folds))
    return toml, train_windows


@pytest.mark.parametrize("folds", [4, 0])
def test_imported_model_calibrates_thresholds_on_the_training_groups(tmp_path: Path,
                                                                    folds: int) -> None:
    """cv_folds = 4 (the issue's case) or 0: an imported network is not retrained per fold,
    so its scores on the training groups are what the thresholds are fitted on."""
    toml, n_train = imported_project(tmp_path, folds)
    result = run_cli("run", str(toml), "--no-emulator")
    assert result.exit_code == 0, result.stderr
    m = json.loads((tmp_path / "out" / "metrics.json").read_text(),
                   parse_constant=lambda c: pytest.fail(f"metrics.json holds {c}"))
    cv = m["evaluation"]["cross_validation"]
    assert cv["folds"] == 0 and "not retrained per fold" in cv["note"]
    calibration = m["decision"]["params"]["calibration"]
    assert calibration["validation_windows"] == n_train == m["evaluation"]["n_train_windows"]
    per_class = calibration["per_class"]
    assert list(per_class) == ["0", "1", "2", "3", "4"]
    # the labels are the model's own arg-max: every class reaches the precision target
    assert all(c["precision"] >= 0.9 and c["threshold"] > 0 for c in per_class.values())
    assert m["evaluation"]["accuracy"] == 1.0
    assert m["neural"]["tflm_parity"]["all_bit_exact"]
    assert m["parity"]["host"]["all_decisions_equal"]


def test_calibrated_thresholds_without_cross_validation_say_why(csv_project: CsvProject
                                                                 ) -> None:
    csv_project.set_toml("cv_folds = 3", "cv_folds = 0")
    csv_project.set_toml("[target]", DECISION + "\n[target]")
    line = csv_project.toml.read_text().splitlines().index('thresholds = "calibrated"') + 1
    assert_user_error(run_cli("run", str(csv_project.toml)), f"kiloml.toml:{line}: "
                      "[decision] thresholds:", "out-of-fold scores", "cv_folds = 0: no "
                      "cross-validation", "thresholds = 'none'")
