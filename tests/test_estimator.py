"""The calibrated resource estimator: calibration files, the before-training bounds, and
one pipeline measured on the emulated Cortex-M4F against its estimate."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from kiloml.codegen.nn_c import emit_network
from kiloml.project import NeuralModelConfig, TreeModelConfig
from kiloml.targets.calibrate import build_pipeline
from kiloml.targets.estimate import (
    estimate_before_training,
    estimate_graph,
    estimate_resources,
    load_calibration,
    tree_group,
    tree_terms,
    untrained_network,
)
from kiloml.targets.profiles import load_profile, profile_names

KEYS = {"flash_bytes", "ram_bytes", "stack_bytes", "instructions_per_inference", "latency_us",
        "energy_uj", "note"}
QUANTITIES = ("flash_bytes", "ram_bytes", "stack_bytes", "instructions_per_inference")


def _case(**kw) -> dict:
    base = {"name": "test_case", "rate": 50.0, "rows": 48, "channels": 3, "classes": 3,
            "features": [{"stage": "statistics"}], "preprocess": [],
            "model": {"kind": "random_forest", "n_estimators": 6, "max_depth": 5}}
    base.update(kw)
    return base


@pytest.mark.parametrize("name", profile_names())
def test_calibration_loads_for_every_profile(name: str) -> None:
    profile = load_profile(name)
    cal, how = load_calibration(profile)
    assert cal["instructions"]["statistics"]["sample_channel"] > 0
    assert cal["flash"]["functions"] and cal["fitted"]["cases"] > 20
    if profile.qemu_machine is None:
        assert "reuses" in how
    pipeline, _, _ = build_pipeline(_case())
    est = estimate_resources(pipeline, profile, len(pipeline.feature_names()))
    assert set(est) == KEYS
    assert all(est[q] > 0 for q in QUANTITIES)
    assert "calibrated" in est["note"]


def test_trees_before_training_bound_the_trained_forest() -> None:
    profile = load_profile("cortex-m4f")
    for model in ({"kind": "random_forest", "n_estimators": 6, "max_depth": 5},
                  {"kind": "extra_trees", "n_estimators": 4, "max_depth": None,
                   "min_samples_leaf": 3},
                  {"kind": "decision_tree", "max_depth": 8, "c_style": "inline"}):
        pipeline, _, _ = build_pipeline(_case(model=model, name=f"bound_{model['kind']}"))
        n = len(pipeline.feature_names())
        after = estimate_resources(pipeline, profile, n)
        untrained = build_pipeline(_case(model=model, name=f"bound_{model['kind']}"))[0]
        untrained.model = None
        before = estimate_before_training(untrained, TreeModelConfig(**model), profile, n, 400)
        assert set(before) == KEYS
        for q in QUANTITIES:
            assert before[q] >= after[q], (model, q, before[q], after[q])


def test_network_before_training_has_the_trained_weights_and_arena() -> None:
    profile = load_profile("cortex-m4f")
    cfg = NeuralModelConfig(kind="mlp", hidden=[24, 12], epochs=2, validation_groups=0)
    pipeline, _, _ = build_pipeline(_case(model={"kind": "random_forest", "n_estimators": 1}))
    n = len(pipeline.feature_names())
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, n)).astype(np.float32)
    y = np.arange(60) % 3
    from kiloml.models.neural import NeuralModel

    trained = NeuralModel(cfg, 3, (n,)).fit(x, y, np.zeros(60, int), progress=False)
    untrained = untrained_network(cfg, 3, (n,))
    assert untrained.graph.weight_bytes() == trained.graph.weight_bytes()
    assert emit_network(untrained.graph).plan.arena_bytes == \
        emit_network(trained.graph).plan.arena_bytes
    pipeline.model = trained
    after = estimate_resources(pipeline, profile, n)
    pipeline.model = None
    before = estimate_before_training(pipeline, cfg, profile, n, 60)
    assert before["ram_bytes"] == after["ram_bytes"]
    assert before["instructions_per_inference"] == after["instructions_per_inference"]
    assert abs(before["flash_bytes"] - after["flash_bytes"]) <= 64  # constants' values differ
    graph_est = estimate_graph(trained.graph, profile)
    assert graph_est["arena_bytes"] == emit_network(trained.graph).plan.arena_bytes


def test_compacted_forest_terms_and_group() -> None:
    """int16 thresholds count the features quantized per inference and integer
    comparisons; uint8 / uint16 leaves (score_mode 3) have their own cost group."""
    model = {"kind": "random_forest", "n_estimators": 6, "max_depth": 5,
             "thresholds": "int16", "leaves": "uint8"}
    pipeline, _, _ = build_pipeline(_case(model=model, name="compact_terms"))
    tables = pipeline.model.tables
    assert tables.quantized and tables.score_mode == 3
    assert tree_group(tables, "table") == "tree.table.weights"
    terms = tree_terms(tables, 20.0)
    assert terms["qnode"] == 20.0 and terms["node"] == 0.0
    assert terms["input"] == tables.n_inputs > 0
    plain, _, _ = build_pipeline(_case(name="compact_terms"))
    assert tree_group(plain.model.tables, "table") in ("tree.table.votes",
                                                       "tree.table.fractions")
    assert tree_terms(plain.model.tables, 20.0)["input"] == 0.0
    profile = load_profile("cortex-m0plus")
    est = estimate_resources(pipeline, profile, len(pipeline.feature_names()))
    assert "no coefficients" not in est["note"], est["note"]


def _assert_within_goals(est: dict, measured: dict) -> None:
    """Flash and RAM within 10%, instructions within 20% (the issue's goals)."""
    for q, goal in (("flash_bytes", 0.10), ("ram_bytes", 0.10),
                    ("instructions_per_inference", 0.20)):
        error = abs(est[q] - measured[q]) / measured[q]
        assert error <= goal, (q, est[q], measured[q])


@pytest.mark.skipif(shutil.which("qemu-system-arm") is None
                    or shutil.which("arm-none-eabi-gcc") is None,
                    reason="needs arm-none-eabi-gcc and qemu-system-arm")
def test_estimate_within_goals_on_the_emulated_m4(tmp_path) -> None:
    """A pipeline outside the calibration sweep (statistics + spectral + forest) built,
    linked and run in QEMU: flash and RAM within 10%, instructions within 20%."""
    from kiloml.targets.measure import measure_pipeline

    profile = load_profile("cortex-m4f")
    case = _case(name="emulated_check", rows=80, channels=2,
                 features=[{"stage": "statistics", "statistics": ["mean", "std", "max"]},
                           {"stage": "spectral", "fft_length": 32, "n_bands": 5,
                            "n_peaks": 2}],
                 model={"kind": "random_forest", "n_estimators": 8, "max_depth": 6})
    pipeline, windows, _ = build_pipeline(case)
    measured = measure_pipeline(pipeline, profile, windows, tmp_path, stages=False)
    est = estimate_resources(pipeline, profile, len(pipeline.feature_names()))
    _assert_within_goals(est, measured)


@pytest.mark.skipif(shutil.which("qemu-system-arm") is None
                    or shutil.which("arm-none-eabi-gcc") is None,
                    reason="needs arm-none-eabi-gcc and qemu-system-arm")
def test_compacted_forest_estimate_within_goals_on_the_emulated_m0(tmp_path) -> None:
    """A compacted forest (int16 thresholds, uint8 leaves) outside the sweep on the
    soft-float M0+, where quantizing the features costs most."""
    from kiloml.targets.measure import measure_pipeline

    profile = load_profile("cortex-m0plus")
    case = _case(name="emulated_compact", rows=64, channels=4,
                 model={"kind": "random_forest", "n_estimators": 12, "max_depth": 7,
                        "thresholds": "int16", "leaves": "uint8"})
    pipeline, windows, _ = build_pipeline(case)
    measured = measure_pipeline(pipeline, profile, windows, tmp_path, stages=False)
    est = estimate_resources(pipeline, profile, len(pipeline.feature_names()))
    _assert_within_goals(est, measured)
