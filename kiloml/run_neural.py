"""`kiloml run` for a neural-network model: train (or import), quantize, evaluate, export.

Shares data loading, windowing and the grouped split with the tree path
(``kiloml.run``). The int8 graph is what ships: it is evaluated with the
reference interpreter, exported as ``model.tflite`` and checked bit-exact
against the TFLM interpreter on the held-out windows. C code generation for
networks (an ahead-of-time library like the tree models') is not part of this
path yet; metrics say so under ``firmware``.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np

from kiloml import __version__
from kiloml.data.splits import Split
from kiloml.data.windows import WindowSet
from kiloml.errors import KilomlError
from kiloml.evaluate.metrics import classification_metrics
from kiloml.models.neural import NeuralModel
from kiloml.pipeline import Pipeline
from kiloml.progress import track
from kiloml.project import LoadedProject, NeuralModelConfig, locate
from kiloml.results import write_results

F32 = np.float32


def sample_shape(project: LoadedProject, pipeline: Pipeline, n_features: int) -> tuple[int, ...]:
    cfg: NeuralModelConfig = project.config.model  # type: ignore[assignment]
    if cfg.reads == "window":
        return (pipeline.window_samples, pipeline.n_channels)
    if cfg.kind == "dscnn":
        window_stages = [s for s in pipeline.features if s.reads == "window"]
        shape = getattr(window_stages[0], "output_shape", None) if len(window_stages) == 1 \
            else None
        if shape is None:
            raise KilomlError("dscnn reads a time-frequency image: use exactly one mfcc or mfe "
                              "feature stage", file=project.path,
                              line=locate(project, ("model",), "kind"), where="[model] kind")
        frames = n_features // shape[1]
        return (frames, shape[1])
    return (n_features,)


def _inputs(pipeline: Pipeline, windows: WindowSet, split: Split,
            reads_window: bool) -> np.ndarray:
    if reads_window:
        return windows.x.astype(F32)
    from kiloml.run import _window_features_in_batches

    parts = _window_features_in_batches(pipeline, windows)
    return pipeline.assemble(parts, fit_rows=split.train, y=windows.y)


def run_neural(project: LoadedProject, out: Path, pipeline: Pipeline, windows: WindowSet,
               split: Split, n_raw_recordings: int, n_recordings: int, n_aug: int,
               started: float) -> dict:
    cfg: NeuralModelConfig = project.config.model  # type: ignore[assignment]
    if cfg.reads == "window":
        if "features" in project.config.model_fields_set and project.config.features:
            raise KilomlError(f"[model] kind = '{cfg.kind}' reads the raw window; remove the "
                              "[[features]] stages (or set input = 'features')",
                              file=project.path, line=locate(project, ("model",), "kind"))
        pipeline.features = []
    x = _inputs(pipeline, windows, split, cfg.reads == "window")
    shape = sample_shape(project, pipeline, x.shape[1] if x.ndim == 2 else 0)
    x = x.reshape(len(x), *shape)
    model_path = project.resolve(cfg.path) if cfg.path else None
    model = NeuralModel(cfg, len(windows.class_names), shape, model_path)
    pipeline.model = model

    cv = _cross_validate(cfg, x, windows, split, shape)
    model.fit(x[split.train], windows.y[split.train], windows.group[split.train])
    test_x, test_y = x[split.test], windows.y[split.test]
    test_pred = model.predict(test_x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluation = classification_metrics(test_y, test_pred, windows.group[split.test],
                                            windows.class_names)
    evaluation.update(
        n_train_windows=len(split.train), n_test_windows=len(split.test),
        n_augmented_train_windows=n_aug, test_groups=split.test_groups,
        train_groups=sorted(set(windows.group[split.train].tolist())),
        cross_validation=cv, windows_dropped_low_label_coverage=windows.dropped_low_coverage,
        recordings_skipped_short=windows.skipped_recordings)

    float_proba = model.predict_proba_float(test_x)
    float_acc = None if float_proba is None else float(np.mean(float_proba.argmax(1) == test_y))
    int8_acc = float(np.mean(test_pred == test_y))
    from kiloml.nn.tflite_io import write_tflite

    assert model.graph is not None
    (out / "model.tflite").write_bytes(write_tflite(model.graph))
    if model.float_graph is not None:
        (out / "model_float.tflite").write_bytes(write_tflite(model.float_graph))
    tflm = tflm_parity(out / "model.tflite", model, test_x)
    neural = {
        "float_accuracy": float_acc,
        "int8_accuracy": int8_acc,
        "int8_minus_float_points": None if float_acc is None else
        round(100 * (int8_acc - float_acc), 2),
        "int8_float_agreement": None if float_proba is None else
        float(np.mean(float_proba.argmax(1) == test_pred)),
        "tflm_parity": tflm,
        "layers": model.layers(),
        "model_file": "model.tflite",
    }
    if model.history is not None:
        h = model.history
        neural["training"] = {
            "epochs_run": h.epochs_run, "best_epoch": h.best_epoch,
            "stopped_early": h.stopped_early, "seconds": round(h.seconds, 1),
            "train_loss": [round(v, 5) for v in h.train_loss],
            "val_loss": [round(v, 5) for v in h.val_loss],
            "val_accuracy": [round(v, 4) for v in h.val_accuracy]}

    data = {
        "source": project.config.data.source,
        "n_recordings": n_raw_recordings,
        "n_augmented_recordings": n_recordings - n_raw_recordings,
        "n_windows": len(windows),
        "channels": windows.channels,
        "sample_rate_hz": windows.sample_rate_hz,
        "window_samples": windows.window_samples,
        "stride_samples": windows.stride_samples,
        "window_ms": windows.window_samples * 1000.0 / windows.sample_rate_hz,
        "stride_ms": windows.stride_samples * 1000.0 / windows.sample_rate_hz,
        "class_names": windows.class_names,
        "windows_per_class": np.bincount(windows.y,
                                         minlength=len(windows.class_names)).tolist(),
        "groups": sorted(set(windows.group.tolist())),
    }
    metrics = {
        "kiloml_version": __version__,
        "project": project.config.name,
        "data": data,
        "features": {"n": int(np.prod(shape)) if cfg.reads != "window" else 0,
                     "names": pipeline.feature_names(),
                     "stages": [s.kind for s in pipeline.features]},
        "model": model.describe(),
        "neural": neural,
        "evaluation": evaluation,
        "parity": {},
        "resources": {},
        "firmware": {"generated": False,
                     "note": "C code generation for neural networks is not implemented yet; "
                             "the int8 model is exported as model.tflite (it runs in TFLM, "
                             "bit-exact with kiloml's reference interpreter)"},
        "targets": {},
    }
    metrics["elapsed_s"] = round(time.time() - started, 2)
    pipeline.save(out / "pipeline.pkl")
    write_results(out, metrics, pipeline)
    return metrics


def tflm_parity(model_file: Path, model: NeuralModel, x: np.ndarray) -> dict:
    """Run the exported .tflite in the TFLM interpreter on every held-out window."""
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError:
        return {"checked": False, "note": "tflite-micro is not installed"}
    xq = model.quantized_input(x)
    want = model.raw_output(x)
    interpreter = runtime.Interpreter.from_file(str(model_file), arena_size=1 << 20)
    equal = 0
    for i in track(range(len(xq)), "TFLM parity"):
        interpreter.set_input(xq[i:i + 1], 0)
        interpreter.invoke()
        equal += int(np.array_equal(interpreter.get_output(0).reshape(-1), want[i]))
    return {"checked": True, "n": len(xq), "bit_exact": equal,
            "all_bit_exact": equal == len(xq)}


def _cross_validate(cfg: NeuralModelConfig, x: np.ndarray, windows: WindowSet, split: Split,
                    shape: tuple[int, ...]) -> dict:
    if not split.folds:
        return {"folds": 0, "note": "too few training groups for cross-validation"}
    accuracies, balanced = [], []
    for fit_idx, val_idx in track(split.folds, "cross-validating"):
        fold = NeuralModel(cfg, len(windows.class_names), shape, None)
        if cfg.kind == "imported":
            return {"folds": 0, "note": "an imported model is not retrained per fold"}
        fold.fit(x[fit_idx], windows.y[fit_idx], windows.group[fit_idx], progress=False)
        pred = fold.predict(x[val_idx])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = classification_metrics(windows.y[val_idx], pred, windows.group[val_idx],
                                       windows.class_names)
        accuracies.append(m["accuracy"])
        balanced.append(m["balanced_accuracy"])
    return {"folds": len(split.folds), "accuracy_per_fold": accuracies,
            "accuracy_mean": float(np.mean(accuracies)),
            "accuracy_std": float(np.std(accuracies)),
            "balanced_accuracy_mean": float(np.mean(balanced))}
