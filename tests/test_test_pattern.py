"""[evaluation] test_pattern: the data set's own train/test split, matched on file paths;
cross-validation by group (or by recording without groups) on the training files; no
group on both sides."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import CLASSES, assert_user_error, csv_text, run_cli, signal

from kiloml.data.splits import pattern_test_groups
from kiloml.errors import KilomlError

SPLIT_TOML = """\
name = "published-split"

[data]
source = "csv"
path = "data"
sample_rate_hz = 50
timestamp_column = "t"
label_pattern = '(?P<label>[a-z]+)_\\d+\\.csv$'

[window]
window_ms = 1000
stride_ms = 500

[[features]]
stage = "statistics"

[model]
kind = "random_forest"
n_estimators = 5
max_depth = 6

[evaluation]
test_pattern = '(^|/)test/'
cv_folds = 4

[output]
dir = "out"
"""


def write_split(root: Path, toml: str = SPLIT_TOML, subjects: bool = False) -> Path:
    """train/ and test/ folders: four recordings per class to train, two to test (files
    <label>_<n>.csv, or <label>_<subject>-<n>.csv with subjects)."""
    seed = 0
    for side, n in (("train", 4), ("test", 2)):
        for label in CLASSES:
            for k in range(n):
                name = f"{label}_{k}.csv"
                if subjects:  # subjects 1-2 train, 3 tests
                    name = f"{label}_s{k % 2 + 1 if side == 'train' else 3}-{k}.csv"
                path = root / "data" / side / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(csv_text(signal(label, 4.0, seed)))
                seed += 1
    (root / "kiloml.toml").write_text(toml)
    return root / "kiloml.toml"


def metrics_of(root: Path) -> dict:
    return json.loads((root / "out" / "metrics.json").read_text())


def test_the_data_sets_own_split_end_to_end(tmp_path: Path) -> None:
    toml = write_split(tmp_path)
    result = run_cli("run", str(toml), "--no-emulator")
    assert result.exit_code == 0, result.stderr + result.stdout
    m = metrics_of(tmp_path)
    ev = m["evaluation"]
    # no groups: every file is its own group, so the test groups are the test files
    assert ev["test_groups"] == [f"test/{c}_{k}.csv" for c in sorted(CLASSES) for k in (0, 1)]
    assert all(g.startswith("train/") for g in ev["train_groups"])
    assert len(ev["train_groups"]) == 12 and ev["n_test_windows"] == 6 * 7
    cv = ev["cross_validation"]
    assert cv["folds"] == 4  # by recording: 12 training files in 4 folds
    assert ev["accuracy"] > 0.9
    host = m["parity"]["host"]
    assert host["all_decisions_equal"] and host["streaming"]["all_decisions_equal"]
    out = tmp_path / "checks.json"  # check-data holds out the same files
    assert run_cli("check-data", str(toml), "--json", str(out)).exit_code == 0
    info = json.loads(out.read_text())["data_checks_info"]
    assert info["test_groups"] == ev["test_groups"] and "note" not in info


def test_groups_stay_whole_with_a_pattern(tmp_path: Path) -> None:
    toml = write_split(tmp_path, SPLIT_TOML.replace(
        "label_pattern = '(?P<label>[a-z]+)_\\d+\\.csv$'",
        "label_pattern = '(?P<label>[a-z]+)_s'\ngroup_pattern = '_(?P<group>s\\d+)-'").replace(
        "cv_folds = 4", "cv_folds = 2"), subjects=True)
    result = run_cli("run", str(toml), "--no-emulator")
    assert result.exit_code == 0, result.stderr + result.stdout
    ev = metrics_of(tmp_path)["evaluation"]
    assert ev["test_groups"] == ["s3"] and ev["train_groups"] == ["s1", "s2"]
    assert ev["cross_validation"]["folds"] == 2  # by subject


def test_a_group_on_both_sides_is_named_with_a_file_of_each(tmp_path: Path) -> None:
    toml = write_split(tmp_path, SPLIT_TOML.replace(
        "label_pattern = '(?P<label>[a-z]+)_\\d+\\.csv$'",
        "label_pattern = '(?P<label>[a-z]+)_\\d'\ngroup_pattern = '_(?P<group>\\d)\\.csv'"))
    # files <label>_<k>.csv with groups k: k = 0 and 1 are in train/ and in test/
    assert_user_error(run_cli("run", str(toml), "--no-emulator"), "[evaluation] test_pattern",
                      "group '0' has files on both sides (2 groups are, e.g. this one)",
                      "'test/idle_0.csv' matches", "'train/idle_0.csv' does not",
                      "leave group_pattern / group_column out")


@pytest.mark.parametrize(("pattern", "fragments"), [
    ("'^validation/'", ("matches none of the 18 files", "e.g. test/idle_0.csv")),
    ("'\\.csv$'", ("matches every one of the 18 files", "none is left for training")),
    ("'(test'", ("test_pattern", "not a valid regular expression")),
    ("''", ("test_pattern", "an empty pattern matches every file")),
    ('"\\test"', ("test_pattern", "control character")),
])
def test_patterns_that_cannot_split(tmp_path: Path, pattern: str,
                                    fragments: tuple[str, ...]) -> None:
    toml = write_split(tmp_path, SPLIT_TOML.replace("'(^|/)test/'", pattern))
    line = assert_user_error(run_cli("run", str(toml), "--no-emulator"), *fragments)
    assert "kiloml.toml:" in line  # the project file and the line of test_pattern


@pytest.mark.parametrize("other", ['test_groups = ["test/idle_0.csv"]', "test_fraction = 0.3"])
def test_pattern_with_another_test_set_is_refused(tmp_path: Path, other: str) -> None:
    key = other.split()[0]
    toml = write_split(tmp_path, SPLIT_TOML.replace("cv_folds = 4", f"cv_folds = 4\n{other}"))
    assert_user_error(run_cli("run", str(toml), "--no-emulator"), "[evaluation]",
                      f"set test_pattern or {key}, not both")


@pytest.mark.parametrize("source", ["watch", "basic-motions"])
def test_built_in_data_sets_have_no_paths(tmp_path: Path, source: str) -> None:
    toml = tmp_path / "kiloml.toml"
    toml.write_text(f'name = "b"\n[data]\nsource = "{source}"\n[window]\nwindow_ms = 1000\n'
                    "stride_ms = 500\n[model]\nkind = \"decision_tree\"\n[evaluation]\n"
                    "test_pattern = 'test'\n")
    line = assert_user_error(run_cli("run", str(toml), "--no-emulator"),
                             "[evaluation] test_pattern", f"'{source}' has no file paths")
    assert "kiloml.toml:10:" in line  # the line of test_pattern


def test_pattern_test_groups_directly() -> None:
    paths = ["a/train/x.csv", "a/test/y.csv", "a/test/z.csv", "b/train/w.csv"]
    assert pattern_test_groups("/test/", paths, ["g1", "g2", "g2", "g3"]) == ["g2"]
    assert pattern_test_groups("/test/", paths, paths) == ["a/test/y.csv", "a/test/z.csv"]
    with pytest.raises(KilomlError, match="group 'g1' has files on both sides"):
        pattern_test_groups("/test/", paths, ["g1", "g1", "g2", "g3"])


def test_no_recording_crosses_a_fold(tmp_path: Path) -> None:
    """The split the run used, rebuilt: the test windows are exactly the test files', and no
    recording or group is on both sides of any fold (assert_no_leak ran on each)."""
    from kiloml.prepare import prepare_data
    from kiloml.project import load_project

    toml = write_split(tmp_path)
    raw, _, _, windows, split = prepare_data(load_project(toml), announce=False)
    sources = np.array([raw[i].source for i in windows.recording])
    assert all("/test/" in s for s in sources[split.test])
    assert all("/train/" in s for s in sources[split.train])
    for fit, val in split.folds:
        assert not set(windows.recording[fit]) & set(windows.recording[val])
    covered = np.concatenate([val for _, val in split.folds])
    assert sorted(covered.tolist()) == sorted(split.train.tolist())
