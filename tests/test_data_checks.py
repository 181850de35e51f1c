"""`kiloml check-data`: each check flags the fault planted for it, and clean data passes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    CsvProject,
    assert_user_error,
    csv_text,
    run_cli,
    signal,
)

from kiloml.data.recording import Recording
from kiloml.evaluate.data_checks import CHECKS, channels, group_bias, run_checks
from kiloml.project import load_project


def checks_of(project: CsvProject) -> dict:
    return run_checks(load_project(project.toml))[0]


def rows_of(path: Path) -> np.ndarray:
    return np.loadtxt(path, delimiter=",", skiprows=1)


def not_ok(checks: dict) -> list[str]:
    return [name for name, c in checks.items() if c["status"] != "ok"]


# --- planted faults on the toy project ---------------------------------------------------


def test_clean_data_passes(csv_project: CsvProject) -> None:
    checks = checks_of(csv_project)
    assert list(checks) == list(CHECKS)
    assert not_ok(checks) == [], {k: checks[k]["summary"] for k in not_ok(checks)}
    for c in checks.values():
        assert c["status"] == "ok" and c["summary"]
    assert checks["class_balance"]["imbalance_ratio"] == 1.0
    assert checks["duplicates"]["exact"] == checks["duplicates"]["near"] == 0


def test_duplicated_recording_across_split_is_found(csv_project: CsvProject) -> None:
    # s1's walk recording copied into the held-out group s4, once exactly, once with a
    # little noise (a near-duplicate)
    src = csv_project.file("walk", "s1")
    shutil.copy(src, src.parent / "s4_copy_rec.csv")
    rows = rows_of(src)
    rows[:, 1:] += 1e-3 * np.random.default_rng(1).standard_normal(rows[:, 1:].shape)
    (src.parent / "s4_near_rec.csv").write_text(csv_text(rows))
    dup = checks_of(csv_project)["duplicates"]
    assert dup["status"] == "warn"
    assert dup["exact"] == 15 and dup["near"] == 15  # every window of each copy
    pairs = {(p["test_recording"].split("/")[-1], p["train_recording"].split("/")[-1])
             for p in dup["recording_pairs"]}
    assert pairs == {("s4_copy_rec.csv", "s1_rec.csv"), ("s4_near_rec.csv", "s1_rec.csv")}
    e = dup["examples"][0]
    assert e["test_offset_s"] == e["train_offset_s"] and e["distance"] == 0.0


def test_constant_channel_is_found(csv_project: CsvProject) -> None:
    path = csv_project.file("idle", "s2")
    rows = rows_of(path)
    rows[:, 3] = 0.25  # az stuck
    path.write_text(csv_text(rows))
    ch = checks_of(csv_project)["channels"]
    assert ch["status"] == "warn" and ch["n_constant"] == 1 and ch["n_clipped"] == 0
    issue = ch["issues"][0]
    assert issue["recording"].endswith("idle/s2_rec.csv")
    assert (issue["channel"], issue["issue"], issue["value"]) == ("az", "constant", 0.25)


def test_channel_constant_everywhere_is_found() -> None:
    rng = np.random.default_rng(0)
    recs = [Recording(np.column_stack([rng.standard_normal(100), np.full(100, 9.81)]), 50.0,
                      ["x", "g"], f"g{i}", f"r{i}.csv", label="a") for i in range(3)]
    ch = channels(recs)
    assert ch["status"] == "warn" and ch["constant_channels"] == ["g"]
    assert ch["issues"] == []  # not repeated per recording


def test_clipped_channel_is_found(csv_project: CsvProject) -> None:
    path = csv_project.file("shake", "s3")
    rows = rows_of(path)
    rows[:, 1] = np.clip(rows[:, 1], -0.6, 0.6)  # ax at the rails
    path.write_text(csv_text(rows))
    ch = checks_of(csv_project)["channels"]
    assert ch["status"] == "warn" and ch["n_clipped"] == 1 and ch["n_constant"] == 0
    issue = ch["issues"][0]
    assert issue["recording"].endswith("shake/s3_rec.csv") and issue["channel"] == "ax"
    assert issue["fraction_at_min_or_max"] > 0.2


def test_mislabelled_recording_is_flagged(csv_project: CsvProject) -> None:
    # a shake recording filed under idle (training group s2)
    src = csv_project.file("shake", "s2")
    src.rename(src.parent.parent / "idle" / "s2_b_rec.csv")
    sus = checks_of(csv_project)["suspect_labels"]
    assert sus["status"] == "warn" and sus["n_suspect"] == 1
    s = sus["suspects"][0]
    assert s["recording"].endswith("idle/s2_b_rec.csv")
    assert (s["label"], s["looks_like"], s["group"]) == ("idle", "shake", "s2")
    assert s["label_probability"] < 0.2 < 0.6 < s["other_probability"]


def test_shifted_feature_gets_a_high_ks(csv_project: CsvProject) -> None:
    for label in ("idle", "walk", "shake"):  # the held-out group's ay offset by +3
        path = csv_project.file(label, "s4")
        rows = rows_of(path)
        rows[:, 2] += 3.0
        path.write_text(csv_text(rows))
    shift = checks_of(csv_project)["feature_shift"]
    assert shift["status"] == "warn"
    assert shift["ks_per_feature"]["ay.mean"] == 1.0
    assert "ay.mean" in shift["shifted_features"]
    assert shift["ks_per_feature"]["ax.std"] < shift["threshold"]  # untouched


def test_imbalanced_dataset_warns(csv_project: CsvProject) -> None:
    for i, subject in enumerate(("s1", "s2", "s3", "s4")):  # walk 5x longer
        csv_project.file("walk", subject).write_text(csv_text(signal("walk", 40.0, 100 + i)))
    bal = checks_of(csv_project)["class_balance"]
    assert bal["status"] == "warn"
    assert bal["windows_per_class"] == {"idle": 60, "shake": 60, "walk": 316}
    assert bal["imbalance_ratio"] == pytest.approx(316 / 60)


def test_small_group_warns(csv_project: CsvProject) -> None:
    for label in ("idle", "walk", "shake"):  # s3 recorded 2 s per activity
        csv_project.file(label, "s3").write_text(csv_text(signal(label, 2.0, 7)))
    groups = checks_of(csv_project)["groups"]
    assert groups["status"] == "warn" and groups["small_groups"] == ["s3"]
    assert groups["windows_per_group"]["s3"] == 9
    assert groups["windows_per_group_class"]["s3"] == {"idle": 3, "shake": 3, "walk": 3}


def test_group_bias_flags_a_group_far_below_the_median() -> None:
    y = np.tile([0, 1], 40)
    groups = np.repeat(["a", "b", "c", "d"], 20)
    proba = np.eye(2)[y].astype(float)
    proba[60:70] = np.eye(2)[1 - y[60:70]]  # group d: half wrong
    bias = group_bias(y, proba, groups, test_groups=["d"])
    assert bias["status"] == "warn" and bias["low_groups"] == ["d"]
    assert bias["accuracy_per_group"] == {"a": 1.0, "b": 1.0, "c": 1.0, "d": 0.5}
    assert bias["held_out_groups"] == ["d"]
    proba[60:70] = np.eye(2)[y[60:70]]
    proba[60:62] = np.eye(2)[1 - y[60:62]]  # 0.9: within the margin
    assert group_bias(y, proba, groups, ["d"])["status"] == "ok"


def test_neural_project_uses_a_stand_in(csv_project: CsvProject) -> None:
    csv_project.set_toml('[[features]]\nstage = "statistics"\n', "")
    csv_project.set_toml('kind = "random_forest"\nn_estimators = 5\nmax_depth = 6\n',
                         'kind = "cnn1d"\nepochs = 2\n')
    checks, info = run_checks(load_project(csv_project.toml))
    assert "stand-in" in info["model"] and "statistics" in info["features"]
    assert not_ok(checks) == []


# --- the command: a finished run's metrics and report, or the data alone ------------------


def test_command_updates_the_runs_metrics_and_report(toy_run: Path, tmp_path: Path) -> None:
    out = toy_run.parent / "out"
    result = run_cli("check-data", str(toy_run), "--json", str(tmp_path / "checks.json"),
                     "--strict")
    assert result.exit_code == 0, result.stderr
    for name in CHECKS:
        assert name in result.stdout
    assert "written" in result.stdout and "metrics.json" in result.stdout
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["data_checks"]) == set(CHECKS)
    for c in m["data_checks"].values():
        assert c["status"] in ("ok", "warn") and isinstance(c["summary"], str)
    assert m["data_checks_info"]["test_groups"] == m["evaluation"]["test_groups"] == ["s4"]
    assert m["evaluation"]["accuracy"] > 0  # the rest of the metrics kept
    saved = json.loads((tmp_path / "checks.json").read_text())
    assert saved["data_checks"] == m["data_checks"]
    html = (out / "report.html").read_text()
    section = html.split("<h2>Data checks</h2>")[1]
    assert section.count("data:image/png") == 2  # class balance, accuracy per group
    assert "constant or clipped channels" in section


def test_command_without_a_run_prints_only(csv_project: CsvProject) -> None:
    src = csv_project.file("walk", "s1")
    shutil.copy(src, src.parent / "s4_copy_rec.csv")
    result = run_cli("check-data", str(csv_project.toml))
    assert result.exit_code == 0, result.stderr
    assert "warn" in result.stdout and "s4_copy_rec.csv" in result.stdout
    assert "written        nothing" in result.stdout
    assert not csv_project.out.exists()
    assert run_cli("check-data", str(csv_project.toml), "--strict").exit_code == 1


# --- bad input: one line, exit 2, nothing written -------------------------------------------


def test_missing_project_is_a_user_error(tmp_path: Path) -> None:
    assert_user_error(run_cli("check-data", str(tmp_path / "nope")), "not found")


def test_single_class_is_a_user_error(csv_project: CsvProject) -> None:
    for label in ("walk", "shake"):
        shutil.rmtree(csv_project.root / "data" / label)
    assert_user_error(run_cli("check-data", str(csv_project.toml)), "kiloml.toml",
                      "single class ('idle')")


def test_single_group_is_a_user_error(csv_project: CsvProject) -> None:
    # every file in one group: nothing can be held out
    csv_project.set_toml('(?P<group>s\\\\d+)_', "(?P<group>rec)")
    csv_project.set_toml('test_groups = ["s4"]\n', "")
    assert_user_error(run_cli("check-data", str(csv_project.toml)), "single group")


def test_errors_leave_the_run_untouched(toy_run: Path, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(toy_run.parent, root)
    out = root / "out"
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    # an unwritable --json target: nothing written anywhere
    assert_user_error(run_cli("check-data", str(root / "kiloml.toml"), "--json",
                              str(tmp_path / "missing" / "x.json")), "--json")
    # data that no longer has two classes
    for label in ("walk", "shake"):
        shutil.rmtree(root / "data" / label)
    assert_user_error(run_cli("check-data", str(root / "kiloml.toml")), "single class")
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert after == before
    assert not (tmp_path / "missing").exists()
