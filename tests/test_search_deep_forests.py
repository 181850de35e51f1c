"""Issue 13 item 1: the estimator handles every forest a search may train, including
deep forests with pure leaves on projects with many classes (it stopped with
"every tree must see every class" on 4+ classes)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from kiloml.models.forest import forest_tables
from kiloml.targets.estimate import synthetic_tables
from tests.conftest import csv_text, run_cli

N_CLASSES = 10
RATE_HZ = 50.0


def _ten_class_project(root: Path, space: str) -> Path:
    """Ten well separated tones (pure leaves when trees grow deep), four subjects."""
    rng = np.random.default_rng(7)
    t = np.arange(int(6 * RATE_HZ)) / RATE_HZ
    for c in range(N_CLASSES):
        for s in range(4):
            f = 0.5 + 1.7 * c
            noise = 0.05 * rng.standard_normal((len(t), 2))
            rows = np.column_stack([t, np.sin(2 * np.pi * f * t) + noise[:, 0],
                                    0.1 * c + noise[:, 1]])
            path = root / "data" / f"class{c}" / f"s{s}_rec.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(csv_text(rows, header="t,a,b"))
    toml = root / "kiloml.toml"
    toml.write_text(f"""name = "ten"
[data]
source = "csv"
path = "data"
timestamp_column = "t"
label_from_folder = true
group_pattern = '(?P<group>s\\d+)_'
[window]
window_ms = 1000
stride_ms = 500
[model]
kind = "random_forest"
[evaluation]
test_groups = ["s3"]
cv_folds = 3
[output]
dir = "out"
{space}""")
    return toml


@pytest.mark.parametrize("n_classes", [2, 3, 4, 7, 10])
def test_synthetic_tables_have_every_class(n_classes: int) -> None:
    for trees, internal in ((1, 1), (2, 3), (3, 40)):
        t = synthetic_tables(trees, internal, n_classes, 12)
        assert t.leaf_proba.shape[1] == n_classes
        assert np.allclose(t.leaf_proba.sum(axis=1), 1.0)


def test_a_tree_fitted_alone_on_some_labels_is_placed_in_the_class_columns() -> None:
    from sklearn.tree import DecisionTreeClassifier

    x = np.array([[0.0], [1.0], [2.0], [3.0]], dtype=np.float32)
    est = DecisionTreeClassifier(random_state=0).fit(x, np.array([2, 2, 5, 7]))
    t = forest_tables([est], 8, 1)
    labels, _, _ = t.predict_batch(x)
    assert labels.tolist() == [2, 2, 5, 7]


def test_the_search_completes_on_ten_classes_with_deep_forests(tmp_path: Path) -> None:
    space = """
[search]
folds = 3
[search.space]
model = [
  {kind = "random_forest", n_estimators = [4, 12], max_depth = [12, 40]},
  {kind = "extra_trees", n_estimators = 8},
  {kind = "random_forest", n_estimators = 8, class_weight = "balanced"},
  {kind = "random_forest", n_estimators = 8, thresholds = "int16", leaves = "uint16"},
  {kind = "decision_tree"},
]
"""
    toml = _ten_class_project(tmp_path, space)
    result = run_cli("search", str(toml), "--workers", "1", "--no-emulator")
    assert result.exit_code == 0, result.stderr + result.stdout
    summary = json.loads((tmp_path / "out-search" / "search.json").read_text())
    assert summary["status_counts"] == {"evaluated": 8}, summary["status_counts"]
    metrics = json.loads((tmp_path / "out-search" / "chosen" / "metrics.json").read_text())
    assert len(metrics["data"]["class_names"]) == N_CLASSES
    assert metrics["parity"]["host"]["all_decisions_equal"]


def test_before_training_estimates_for_every_forest_setting(tmp_path: Path) -> None:
    """Every forest kind, depth, leaf and threshold form and class weighting, estimated
    from probe trees and from the analytic bound, on ten classes with pure leaves."""
    from kiloml.prepare import prepare_data
    from kiloml.project import TreeModelConfig, load_project
    from kiloml.targets.estimate import estimate_before_training

    toml = _ten_class_project(tmp_path, "")
    project = load_project(toml)
    _, _, pipeline, windows, split = prepare_data(project, announce=False)
    features = pipeline.compute_features(windows.x)
    probe = (features[split.train], windows.y[split.train])
    profile = project.target_profile()
    grid = itertools.product(("random_forest", "extra_trees", "decision_tree"),
                             (None, 6, 30), (("float32", "exact"), ("int16", "uint8"),
                                             ("float32", "uint16")), (None, "balanced"))
    for kind, depth, (thresholds, leaves), weight in grid:
        cfg = TreeModelConfig(kind=kind, n_estimators=6, max_depth=depth,
                              thresholds=thresholds, leaves=leaves, class_weight=weight)
        for with_probe in (probe, None):
            e = estimate_before_training(pipeline, cfg, profile, features.shape[1],
                                         len(split.train), probe=with_probe)
            assert e["flash_bytes"] > 0 and e["instructions_per_inference"] > 0, cfg
