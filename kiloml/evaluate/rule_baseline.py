"""Is ML even needed here? The best simple rule on the pipeline's features: a single
threshold on one feature (a depth-1 tree) or a depth-2 tree, chosen by grouped
cross-validation on the training groups, emitted in C like any tree and measured on
the same target, so the model's accuracy can be weighed against the rule's cost."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from sklearn.tree import export_text

from kiloml.codegen.library import write_library
from kiloml.data.recording import Recording
from kiloml.data.splits import Split
from kiloml.data.windows import WindowSet
from kiloml.dsp.statistics import Statistics
from kiloml.evaluate.metrics import classification_metrics
from kiloml.models.trees import TreeModel
from kiloml.pipeline import Pipeline
from kiloml.project import TreeModelConfig
from kiloml.verify.reference import Reference

DEPTHS = (1, 2)


def _rule_pipeline(pipeline: Pipeline, depth: int) -> Pipeline:
    """The project's feature stages (already fitted) with a rule as the model; networks
    that read the raw window get per-channel statistics instead: a rule on raw samples
    is no rule."""
    raw = not pipeline.features or any(s.kind == "raw" for s in pipeline.features)
    config = TreeModelConfig(kind="decision_tree", max_depth=depth, max_features="all",
                             class_weight="balanced", random_state=0)
    return Pipeline(
        name=f"{pipeline.name}-rule", channels=list(pipeline.channels),
        sample_rate_hz=pipeline.sample_rate_hz, window_samples=pipeline.window_samples,
        stride_samples=pipeline.stride_samples, class_names=list(pipeline.class_names),
        features=[Statistics()] if raw else pipeline.features,
        model=TreeModel(config, pipeline.n_classes), preprocess=pipeline.preprocess,
        input_sample_rate_hz=pipeline.input_sample_rate_hz)


def _balanced(y: np.ndarray, pred: np.ndarray, groups: np.ndarray, names: list[str]) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return classification_metrics(y, pred, groups, names)


def fit_rule(pipeline: Pipeline, windows: WindowSet, split: Split) -> tuple[Pipeline, dict]:
    """The rule with the best grouped-CV balanced accuracy (ties: the simpler one)."""
    best: tuple[float, int] | None = None
    scores = {}
    features = None
    for depth in DEPTHS:
        rule = _rule_pipeline(pipeline, depth)
        if features is None:
            features = rule.compute_features_batched(windows.x)
        folds = split.folds or [(split.train, split.train)]
        accs = []
        for fit_idx, val_idx in folds:
            model = TreeModel(rule.model.config, rule.n_classes)
            model.fit(features[fit_idx], windows.y[fit_idx])
            accs.append(_balanced(windows.y[val_idx], model.predict(features[val_idx]),
                                  windows.group[val_idx],
                                  windows.class_names)["balanced_accuracy"])
        scores[depth] = float(np.mean(accs))
        if best is None or scores[depth] > best[0] + 1e-12:
            best = (scores[depth], depth)
    assert best is not None and features is not None
    rule = _rule_pipeline(pipeline, best[1])
    rule.model.fit(features[split.train], windows.y[split.train])
    names = rule.feature_names()
    text = export_text(rule.model.estimator, feature_names=names,
                       class_names=[str(c) for c in rule.class_names])
    return rule, {"depth": best[1], "cv_balanced_accuracy_by_depth": scores,
                  "features_used": sorted({names[i] for i in rule.model.estimator.tree_.feature
                                           if i >= 0}),
                  "rule": text.strip(), "_features": features}


def rule_baseline(pipeline: Pipeline, windows: WindowSet, split: Split,
                  streamed: list[tuple[Recording, Recording]], out: Path, profile, budget,
                  emulate: bool, model_balanced_accuracy: float,
                  model_resources: dict | None) -> dict:
    """Fit, evaluate on the held-out groups, emit and measure the rule; the verdict
    compares it with the model."""
    from kiloml.verify.host_parity import verify_host
    from kiloml.verify.sizes import measure_library
    from kiloml.verify.target import verify_target

    rule, info = fit_rule(pipeline, windows, split)
    features = info.pop("_features")
    test = split.test
    pred = rule.model.predict(features[test])
    m = _balanced(windows.y[test], pred, windows.group[test], windows.class_names)
    library = write_library(rule, out / "firmware")
    reference = Reference.build(rule, windows.x[test], features[test], pred,
                                rule.model.predict_proba(features[test]),
                                [r for r, _ in streamed], [p for _, p in streamed])
    host = verify_host(rule, library, reference, out / "host")
    result = {**info, "accuracy": m["accuracy"], "balanced_accuracy": m["balanced_accuracy"],
              "parity_host": host["all_decisions_equal"]}
    if emulate:
        target = verify_target(rule, library, reference, profile, budget, out / profile.name)
        r = target.resources
        result.update(flash_bytes=r["flash_bytes"], ram_bytes=r["ram_bytes"],
                      instructions_per_inference=r.get("instructions_per_inference"),
                      measured_on=r.get("measured_on"),
                      parity_target=target.parity["all_decisions_equal"])
    else:
        sizes = measure_library(library, out / "sizes")
        result.update(flash_bytes=sizes.flash_bytes, ram_bytes=sizes.ram_bytes,
                      instructions_per_inference=None, measured_on="host object sizes")
    gain = (model_balanced_accuracy - result["balanced_accuracy"]) * 100.0
    model_flash = (model_resources or {}).get("flash_bytes")
    result["model_gain_points"] = gain
    result["note"] = ("flash and instructions include the feature stages the rule reads "
                      "(computed whole, as the library does)")
    result["verdict"] = (
        f"the model adds {gain:.1f} points of balanced accuracy over a rule costing "
        f"{result['flash_bytes']:,} bytes"
        + (f" (the model: {model_flash:,} bytes)" if model_flash else "")
        + ("; a rule does as well: consider shipping the rule" if gain < 1.0 else ""))
    return result
