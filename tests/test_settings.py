"""Whole runs on small projects: what a run reports about its data (natural order, dropped
classes, impossible cross-validation) and settings that cannot work, refused before
training with one line naming the key."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from conftest import csv_text, run_cli

RATE_HZ = 50.0

NUMERIC_TOML = """\
name = "numeric"

[data]
source = "csv"
path = "data"
sample_rate_hz = 50
timestamp_column = "t"
label_from_folder = true
group_pattern = '(?P<group>[0-9]+)_'
short_recordings = "{short}"

[window]
window_ms = 1000
stride_ms = 500

[[features]]
stage = "statistics"
statistics = ["mean", "std", "rms"]

[model]
kind = "decision_tree"
max_depth = 8

[evaluation]
test_groups = ["10"]
cv_folds = {folds}

[output]
dir = "out"
"""


def rows(label: int, group: int, seconds: float) -> np.ndarray:
    rng = np.random.default_rng(100 * label + group)
    t = np.arange(int(seconds * RATE_HZ)) / RATE_HZ
    x = np.sin(2 * np.pi * 0.5 * label * t) + 0.05 * rng.standard_normal(len(t))
    return np.column_stack([t, x, label + 0.1 * rng.standard_normal(len(t)), x * x])


def numeric_project(root: Path, labels=range(1, 13), groups=(1, 2, 10), seconds=3.0,
                    short="error", folds=2) -> Path:
    for label in labels:
        for group in groups:
            path = root / "data" / str(label) / f"{group}_rec.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(csv_text(rows(label, group, seconds)))
    toml = root / "kiloml.toml"
    toml.write_text(NUMERIC_TOML.format(short=short, folds=folds))
    return toml


def strict_json(path: Path) -> dict:
    """metrics.json as a strict JSON reader sees it: NaN or Infinity is an error."""
    def refuse(constant: str) -> None:
        raise AssertionError(f"{path} holds {constant}")
    return json.loads(path.read_text(), parse_constant=refuse)


def test_numeric_labels_in_natural_order_everywhere(tmp_path: Path) -> None:
    toml = numeric_project(tmp_path)
    result = run_cli("run", str(toml), "--no-emulator")
    assert result.exit_code in (0, 1), result.stderr
    names = [str(c) for c in range(1, 13)]
    metrics = strict_json(tmp_path / "out" / "metrics.json")
    assert metrics["data"]["class_names"] == names
    assert metrics["evaluation"]["class_names"] == names
    assert metrics["data"]["groups"] == ["1", "2", "10"]
    assert metrics["evaluation"]["train_groups"] == ["1", "2"]
    c_code = (tmp_path / "out" / "firmware" / "kiloml_model.c").read_text()
    table = c_code[c_code.index("kml_class_names[KML_CLASSES]"):].split(";")[0]
    assert table.split("{")[1].split("}")[0] == ", ".join(f'"{n}"' for n in names)
    # the report draws its confusion matrix from these class_names (a PNG: not read here)
    assert list(metrics["evaluation"]["per_group_accuracy"]) == ["10"]
