"""The report a user reads first: per-class metrics, misclassified windows, the threshold
warning, the summary (every budget, what failed, the exit status), readable figures and
the table of contents."""

from __future__ import annotations

import base64
import copy
import json
import re
import struct
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pytest

from kiloml.decision.calibrate import calibrate_thresholds
from kiloml.decision.layer import DecisionParams
from kiloml.decision.project import threshold_warnings
from kiloml.evaluate.metrics import misclassified_windows, per_class_metrics
from kiloml.persist.pipeline_state import load_pipeline
from kiloml.pipeline import Pipeline
from kiloml.report.data_checks_section import bias_figure
from kiloml.report.decision_section import timeline_figure
from kiloml.report.evaluation_section import common_folder, misclassified_runs
from kiloml.report.figures import bar_figure, confusion_figure
from kiloml.report.html import render_report
from kiloml.report.power_section import power_figure
from kiloml.report.resources_section import budget_figure, latency_figure
from kiloml.report.search_section import pareto_figure
from kiloml.report.stress_section import stress_figure
from kiloml.report.summary_section import exit_status, summary_checks
from kiloml.results import run_ok
from tests.conftest import run_cli, write_toy_project

# --- metrics ---------------------------------------------------------------------------


def test_per_class_precision_recall_f1_by_hand() -> None:
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 2, 2])
    pc = per_class_metrics(y_true, y_pred, ["a", "b", "c", "never"])
    assert list(pc) == ["a", "b", "c", "never"]
    assert pc["a"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8,
                                     "support": 3, "predicted": 2})
    assert pc["b"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5,
                                     "support": 2, "predicted": 2})
    assert pc["c"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3,
                                     "support": 1, "predicted": 2})
    assert pc["never"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0,
                           "predicted": 0}


def test_misclassified_windows_by_recording_and_time_capped() -> None:
    sources = ["data/s10_rec.csv", "data/s2_rec.csv", "data/s3_rec.csv"]
    recording = np.array([0, 0, 1, 1, 1, 2])
    start = np.array([100, 0, 50, 0, 25, 0])
    y_true = np.array([0, 1, 1, 1, 0, 2])
    y_pred = np.array([1, 0, 0, 1, 1, 2])
    scores = np.eye(3)[y_pred] * 0.7 + 0.1
    m = misclassified_windows(y_true, y_pred, scores, recording, start, sources, 50.0,
                              ["x", "y", "z"], limit=3)
    assert m["n"] == 4 and m["n_windows"] == 6 and m["not_listed"] == 1
    # natural order of the source (s2 before s10), then the start time
    assert [(w["recording"], w["start_s"]) for w in m["listed"]] == [
        ("data/s2_rec.csv", 0.5), ("data/s2_rec.csv", 1.0), ("data/s10_rec.csv", 0.0)]
    first = m["listed"][0]
    assert (first["true"], first["predicted"]) == ("x", "y")
    assert first["score"] == pytest.approx(0.8) and first["true_score"] == pytest.approx(0.1)
    assert m["by_recording"] == [
        {"recording": "data/s2_rec.csv", "misclassified": 2, "windows": 3},
        {"recording": "data/s10_rec.csv", "misclassified": 2, "windows": 2}]
    assert m["recordings_with_errors"] == 2
    none = misclassified_windows(y_true, y_true, scores, recording, start, sources, 50.0,
                                 ["x", "y", "z"])
    assert none["n"] == 0 and none["listed"] == [] and none["not_listed"] == 0


def test_consecutive_misclassified_windows_are_one_row() -> None:
    def w(rec: str, start: float, true: str = "a", pred: str = "b", score: float = 0.6) -> dict:
        return {"recording": rec, "start_s": start, "true": true, "predicted": pred,
                "score": score, "true_score": 0.1}
    listed = [w("r1", 1.0), w("r1", 1.5, score=0.9), w("r1", 2.0), w("r1", 3.0),
              w("r1", 3.5, pred="c"), w("r2", 4.0)]
    runs = misclassified_runs(listed, 0.5)
    assert [(r["recording"], r["start_s"], r["last_start_s"], len(r["scores"])) for r in runs] \
        == [("r1", 1.0, 2.0, 3), ("r1", 3.0, 3.0, 1), ("r1", 3.5, 3.5, 1), ("r2", 4.0, 4.0, 1)]
    assert runs[0]["scores"] == [0.6, 0.9, 0.6]


def test_recording_paths_are_shown_relative_to_their_common_folder() -> None:
    assert common_folder(["/d/data/walk/s1.csv", "/d/data/walk/s1.csv"]) == "/d/data/walk"
    assert common_folder(["/d/data/walk/s1.csv", "/d/data/idle/s2.csv"]) == "/d/data"
    assert common_folder(["/s1.csv", "/s2.csv"]) == ""
    assert common_folder(["seglearn:watch[5]", "/d/a.csv"]) == ""
    assert common_folder(["data/a.csv", "/d/a.csv"]) == ""


# --- the threshold warning --------------------------------------------------------------


def noisy_middle_class(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three classes; class 1 ("b") is confused with the others except for its 2% most
    confident windows, so a precision target puts its threshold above nearly all of it."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    scores = np.full((n, 3), 0.05)
    scores[np.arange(n), y] = 0.9
    confused = (y != 1) & (rng.random(n) < 0.4)
    mid = rng.uniform(0.4, 0.6, n)
    for rows in (y == 1, confused):
        scores[rows] = 0.0
        scores[rows, 1] = mid[rows]
        scores[rows, 0] = 1 - mid[rows]
    sure = (y == 1) & (rng.random(n) < 0.02)
    scores[sure] = [0.005, 0.99, 0.005]
    return scores.astype(np.float32), y


def test_a_threshold_that_almost_never_reports_a_class_warns() -> None:
    names = ["a", "b", "c"]
    oof, y = noisy_middle_class(3000, 0)
    held, y_held = noisy_middle_class(1000, 1)
    thresholds, cal = calibrate_thresholds(oof, y, names, "precision", 0.95, 0.5)
    assert cal["per_class"]["b"]["recall"] < 0.1 < cal["per_class"]["b"]["argmax_recall"]
    params = DecisionParams(3, thresholds, calibration=cal)
    warnings = threshold_warnings(params, held, y_held, names)
    assert [w["class"] for w in warnings] == ["b"]
    w = warnings[0]
    reported = (np.argmax(held, 1) == 1) & (held[:, 1] >= thresholds[1]) & (y_held == 1)
    assert w["recall_held_out"] == pytest.approx(reported.sum() / (y_held == 1).sum())
    assert w["recall_out_of_fold"] == cal["per_class"]["b"]["recall"] < 0.1
    assert "'b' is almost never reported" in w["message"] and "target_value" in w["message"]
    json.dumps(warnings)  # goes into metrics.json as it is
    # a recall target keeps the class: no warning; no calibration: no warning
    thresholds, cal = calibrate_thresholds(oof, y, names, "recall", 0.3, 0.5)
    assert threshold_warnings(DecisionParams(3, thresholds, calibration=cal), held, y_held,
                              names) == []
    assert threshold_warnings(DecisionParams.passthrough(3), held, y_held, names) == []


def test_held_out_recall_alone_can_warn() -> None:
    """Out-of-fold recall is fine but the held-out windows of the class score lower."""
    names = ["a", "b"]
    y = np.repeat([0, 1], 200)
    oof = np.where(y[:, None] == np.arange(2), 0.9, 0.1).astype(np.float32)
    thresholds, cal = calibrate_thresholds(oof, y, names, "precision", 0.9, 0.5)
    held = oof.copy()
    held[y == 1] = [0.45, 0.55]  # still the arg-max, below the threshold of 0.9
    warnings = threshold_warnings(DecisionParams(2, thresholds, calibration=cal), held, y, names)
    assert [w["class"] for w in warnings] == ["b"]
    assert warnings[0]["recall_out_of_fold"] == 1.0 and warnings[0]["recall_held_out"] == 0.0
    assert warnings[0]["argmax_recall_held_out"] == 1.0


# --- readable figures -------------------------------------------------------------------


def overlapping_tick_labels(fig) -> list[tuple[str, str]]:
    """Pairs of drawn tick labels (on one axis) whose boxes overlap."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    found = []
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            slack = 1e-9 * max(abs(lo), abs(hi), 1e-300)
            boxes = []
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                label = tick.label1
                if (lo - slack <= tick.get_loc() <= hi + slack and label.get_visible()
                        and label.get_text()):
                    boxes.append((label.get_text(), label.get_window_extent(renderer)))
            for i, (ta, a) in enumerate(boxes):
                for tb, b in boxes[i + 1:]:
                    if a.overlaps(b) and a.intersection(a, b).width > 0.5 and \
                            a.intersection(a, b).height > 0.5:
                        found.append((ta, tb))
    matplotlib.pyplot.close(fig)
    return found


def resources_of(latencies_us: dict[str, float], budget_us: float | None = None) -> dict:
    """Resources as verify_target writes them (the instruction counts of the watch forest:
    its mean is 1.4% under its max)."""
    return {t: {"latency_us": lat, "instructions_per_inference": 60_413,
                "instructions_mean": 59_552, "latency_budget_us": budget_us,
                "flash_fraction": 0.3 + 0.1 * i, "ram_fraction": 0.2, "stack_bytes": 100,
                "estimated": [] if i % 2 else ["latency_us"]}
            for i, (t, lat) in enumerate(latencies_us.items())}


LONG = "stage 3: mfcc.frame_12.coefficient_07.very_long_feature_name"


@pytest.mark.parametrize("case", [
    "latency one target", "latency narrow", "latency decades", "budget many targets",
    "groups 300", "long labels", "confusion 12", "confusion 45", "power flat",
    "pareto narrow", "timeline 30 classes", "bias 300 groups", "stress 9 perturbations"])
def test_figures_have_no_overlapping_labels(case: str) -> None:
    rng = np.random.default_rng(3)
    if case == "latency one target":  # the report's old latency axis: 4.43e-1 4.44e-1 ...
        fig = latency_figure(resources_of({"cortex-m4f": 449.5}))
    elif case == "latency narrow":
        fig = latency_figure(resources_of({"cortex-m4f": 449.5, "cortex-m7": 452.0,
                                           "cortex-m33": 455.0}, budget_us=460.0))
    elif case == "latency decades":
        fig = latency_figure(resources_of({"cortex-m0plus": 90_000.0, "cortex-m4f": 449.5,
                                           "cortex-m7": 30.0}))
    elif case == "budget many targets":
        fig = budget_figure(resources_of({f"cortex-m{i}": 100.0 for i in range(8)}))
    elif case == "groups 300":
        fig = bar_figure([f"subject{i}" for i in range(300)], list(rng.random(300)),
                         "Accuracy per held-out group", "accuracy", reference=0.5,
                         what="groups")
        assert fig.get_size_inches()[1] < 12  # 30 bars and a gap, not 300
    elif case == "long labels":
        fig = bar_figure([LONG + str(i) for i in range(15)], list(rng.random(15)),
                         "Most important features", "importance", fmt="{:.3f}")
    elif case.startswith("confusion"):
        k = int(case.split()[1])
        fig = confusion_figure(rng.integers(0, 50, (k, k)).tolist(),
                               [f"class_with_a_long_name_{i}" for i in range(k)])
    elif case == "power flat":
        fig = power_figure({"sample_rate_hz": 50.0, "energy_per_sample_push_uj": 0.01,
                            "active_time_per_inference_us": 10.0,
                            "energy_per_inference_uj": 0.001, "sleep_power_uw": 900.0,
                            "power_budget_uw": 950.0, "inference_rate_hz": 2.0}, "cortex-m4f")
    elif case == "pareto narrow":
        rows = [{"key": str(i), "score": 0.8 + 0.001 * i, "status": "evaluated",
                 "estimate": {"flash_bytes": 20_000 + 10 * i, "ram_bytes": 5000 + i,
                              "stack_bytes": 100, "latency_us": 440.0 + i,
                              "energy_uj": 58.0 + 0.01 * i}} for i in range(12)]
        fig = pareto_figure({"rows": rows, "front": ["3", "7"], "chosen": "7",
                             "budget": {"flash_bytes": 262_144, "ram_bytes": 65_536,
                                        "latency_us": None},
                             "score": "balanced_accuracy", "project": "p",
                             "target": "cortex-m4f"})
    elif case == "timeline 30 classes":
        n = 400
        labels = rng.integers(0, 30, n).tolist()
        fig = timeline_figure({"time_s": list(np.arange(n) * 0.5), "truth": labels,
                               "raw": labels, "decision": labels},
                              [f"gesture_{i}" for i in range(30)])
    elif case == "stress 9 perturbations":
        def entry(sev: list[float], lower: bool) -> dict:
            return {"severities": sev, "accuracy": list(np.linspace(0.95, 0.3, len(sev))),
                    "baseline_accuracy": 0.95, "breaking_point": sev[len(sev) // 2],
                    "more_severe": "lower" if lower else "higher", "unit": "dB SNR"}
        stress = {f"perturbation_{i}": entry(list(np.linspace(40 - i, 0.01 * i, 9)), i % 2 == 0)
                  for i in range(9)}
        fig = stress_figure(stress, {"perturbation_0": stress["perturbation_0"]}, 5.0)
    else:  # bias 300 groups
        groups = {f"g{i}": float(rng.random()) for i in range(300)}
        fig = bias_figure({"accuracy_per_group": groups, "held_out_groups": ["g1", "g2"],
                           "low_groups": ["g5"], "median_accuracy": 0.5, "margin": 0.2})
        assert fig.get_size_inches()[1] < 12
    assert overlapping_tick_labels(fig) == []


def test_log_axis_only_across_decades() -> None:
    fig = latency_figure(resources_of({"cortex-m4f": 449.5}))
    assert fig.axes[0].get_xscale() == "linear"
    matplotlib.pyplot.close(fig)
    fig = latency_figure(resources_of({"a": 10.0, "b": 10_000.0}))
    assert fig.axes[0].get_xscale() == "log"
    matplotlib.pyplot.close(fig)


def test_many_bars_show_the_best_and_the_worst_with_the_rest_counted() -> None:
    values = [i / 299 for i in range(300)]
    fig = bar_figure([f"g{i}" for i in range(300)], values, "Accuracy per group", "accuracy",
                     what="groups")
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels[:15] == [f"g{i}" for i in range(299, 284, -1)]  # best first
    assert labels[15] == "\u22ef 270 more \u22ef"
    assert labels[16:] == [f"g{i}" for i in range(14, -1, -1)]  # the worst at the bottom
    assert "highest and lowest of 300 groups" in fig.axes[0].get_title()
    matplotlib.pyplot.close(fig)


# --- the report from a real run ---------------------------------------------------------


@pytest.fixture(scope="module")
def emulated_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The toy project run once with QEMU (target parity, latency and stack measured)."""
    toml = write_toy_project(tmp_path_factory.mktemp("report_run"))
    result = run_cli("run", str(toml))
    assert result.exit_code == 0, result.stderr
    return toml


def run_of(toml: Path) -> tuple[dict, Pipeline]:
    out = toml.parent / "out"
    return json.loads((out / "metrics.json").read_text()), load_pipeline(out / "pipeline.json")


def section_ids(html: str) -> list[str]:
    return re.findall(r"<section id='([^']+)'>", html)


def test_run_metrics_have_per_class_and_misclassified(emulated_run: Path) -> None:
    m, _ = run_of(emulated_run)
    ev = m["evaluation"]
    assert list(ev["per_class"]) == ev["class_names"]
    cm = np.array(ev["confusion_matrix"])
    for c, name in enumerate(ev["class_names"]):
        pc = ev["per_class"][name]
        assert pc["support"] == cm[c].sum() and pc["predicted"] == cm[:, c].sum()
        assert pc["recall"] == pytest.approx(cm[c, c] / max(cm[c].sum(), 1))
    mis = ev["misclassified"]
    assert mis["n"] == cm.sum() - np.trace(cm) and mis["n_windows"] == ev["n_test_windows"]
    for w in mis["listed"]:
        assert w["true"] != w["predicted"] and w["recording"].endswith(".csv")
        assert w["start_s"] >= 0 and 0 <= w["score"] <= 1
    assert isinstance(m["decision"]["warnings"], list)


def test_report_sections_and_table_of_contents(emulated_run: Path) -> None:
    m, _ = run_of(emulated_run)
    html = (emulated_run.parent / "out" / "report.html").read_text()
    ids = section_ids(html)
    assert ids[0] == "summary"
    assert {"held-out", "per-class", "misclassified", "decision", "parity", "resources",
            "power", "model", "data"} <= set(ids)
    toc = re.search(r"<nav class='toc' id='contents'>(.*?)</nav>", html).group(1)
    assert re.findall(r"href='#([^']+)'", toc) == ids
    # the summary comes before every other section and names every budget
    summary = html.split("<section id='summary'>")[1].split("</section>")[0]
    for key in ("parity:host", "flash:cortex-m4f", "ram:cortex-m4f", "latency:cortex-m4f",
                "power:cortex-m4f", "accuracy"):
        assert f"data-check='{key}'" in summary, key
    per_class = html.split("<section id='per-class'>")[1].split("</section>")[0]
    for name in m["evaluation"]["class_names"]:
        assert f">{name}</span>" in per_class


def test_summary_shows_the_failed_power_budget_in_red_and_the_exit_status(emulated_run: Path
                                                                           ) -> None:
    m, pipeline = run_of(emulated_run)
    assert not m["power"]["cortex-m4f"]["within_power_budget"]  # 100 uW with a 924 uW floor
    assert run_ok(m)  # ... and still exit status 0: the budgets that set it are met
    html = render_report(m, pipeline)
    verdict = re.search(r"<p class='verdict fail' id='summary-verdict'>(.*?)</p>", html).group(1)
    assert "power budget on cortex-m4f" in verdict and "100 &micro;W" in verdict
    assert "kiloml run exits 0 on this" in verdict
    row = re.search(r"<tr data-check='power:cortex-m4f'>(.*?)</tr>", html).group(1)
    assert row.startswith("<td class='fail'>") and '<span class="fail">FAIL</span>' in row
    # every budget met: the verdict says so, in green
    ok = copy.deepcopy(m)
    ok["power"]["cortex-m4f"].update(within_power_budget=True, power_budget_uw=10_000.0)
    assert "<p class='verdict ok' id='summary-verdict'>Parity holds and every budget is met" \
        in render_report(ok, pipeline)


def variants(m: dict) -> list[dict]:
    out = [copy.deepcopy(m) for _ in range(4)]
    r = out[1]["resources"]["cortex-m4f"]
    r.update(flash_bytes=r["flash_budget_bytes"] + 1, status="fail", within_budget=False)
    out[2]["parity"]["host"]["all_decisions_equal"] = False
    r = out[3]["resources"]["cortex-m4f"]
    r.update(latency_budget_us=r["latency_us"] / 2, status="fail", within_budget=False)
    return out


def test_summary_exit_status_is_the_runs(emulated_run: Path) -> None:
    m, pipeline = run_of(emulated_run)
    for v in variants(m):
        checks = summary_checks(v)
        assert exit_status(checks) == (0 if run_ok(v) else 1)
        html = render_report(v, pipeline)
        assert f"kiloml run exits {exit_status(checks)} on this" in html
    flash, parity, latency = variants(m)[1:]
    assert "flash budget on cortex-m4f" in verdict(render_report(flash, pipeline))
    assert "parity on host (gcc)" in verdict(render_report(parity, pipeline))
    assert "latency budget on cortex-m4f" in verdict(render_report(latency, pipeline))


def verdict(html: str) -> str:
    return re.search(r"<p class='verdict \w+' id='summary-verdict'>(.*?)</p>", html).group(1)


def png_size(html: str, alt: str) -> tuple[int, int]:
    data = re.search(rf'<img alt="{re.escape(alt)}" src="data:image/png;base64,([^"]+)"',
                     html).group(1)
    width, height = struct.unpack(">II", base64.b64decode(data)[16:24])
    return width, height


def test_hundreds_of_groups_stay_readable(emulated_run: Path) -> None:
    m, pipeline = run_of(emulated_run)
    ev = m["evaluation"]
    rng = np.random.default_rng(0)
    ev["test_groups"] = [f"subject{i}" for i in range(300)]
    ev["per_group_accuracy"] = {g: {"accuracy": float(rng.random()), "n_windows": 10}
                                for g in ev["test_groups"]}
    html = render_report(m, pipeline)
    _, height = png_size(html, "accuracy per held-out group")
    assert height < 1400, height  # 30 bars and the gap
    held = html.split("<section id='held-out'>")[1].split("</section>")[0]
    assert "and 280 more" in held and "15 best and the 15 worst" in held
    assert held.count("subject") < 60  # not all 300 names in the text


def test_an_older_run_without_the_new_metrics_still_renders(emulated_run: Path) -> None:
    m, pipeline = run_of(emulated_run)
    for key in ("per_class", "misclassified"):
        m["evaluation"].pop(key)
    m["decision"].pop("warnings")
    ids = section_ids(render_report(m, pipeline))
    assert "per-class" not in ids and "misclassified" not in ids and ids[0] == "summary"


def test_per_recording_votes_have_their_section_in_the_contents(emulated_run: Path) -> None:
    from kiloml.evaluate.per_recording import per_recording_vote

    m, pipeline = run_of(emulated_run)
    y = np.array([0, 0, 0, 1, 1, 1])
    m["evaluation"]["per_recording"] = per_recording_vote(
        y, np.array([0, 1, 1, 1, 1, 0]), np.array([0, 0, 0, 1, 1, 1]),
        np.array(["s1"] * 3 + ["s2"] * 3), ["a.csv", "b.csv"], ["idle", "walk"])
    html = render_report(m, pipeline)
    ids = section_ids(html)
    assert "recordings" in ids and ids.index("recordings") > ids.index("held-out")
    assert "href='#recordings'" in html and "Whole recordings" in html
