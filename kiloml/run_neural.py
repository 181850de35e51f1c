"""`kiloml run` for a neural-network model: train (or import), quantize, evaluate, export.

The rest of the run (C library, host and MCU parity, sizes, report) is the tree
path's (``kiloml.run``): the network is the pipeline's model stage. The int8
graph is what ships: evaluated with the reference interpreter, exported as
``model.tflite`` and checked bit-exact against the TFLM interpreter on the
held-out windows, and compiled ahead of time into the C library.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from kiloml.data.splits import Split
from kiloml.data.windows import WindowSet
from kiloml.dsp.raw import RawWindow
from kiloml.errors import KilomlError
from kiloml.evaluate.metrics import classification_metrics
from kiloml.feasibility import check_network
from kiloml.models.neural import NeuralModel
from kiloml.pipeline import Pipeline
from kiloml.progress import track
from kiloml.project import LoadedProject, NeuralModelConfig, locate

F32 = np.float32


def sample_shape(project: LoadedProject, pipeline: Pipeline, n_features: int) -> tuple[int, ...]:
    cfg: NeuralModelConfig = project.config.model  # type: ignore[assignment]
    if cfg.reads == "window":
        shape: tuple[int, ...] = (pipeline.window_samples, pipeline.n_channels)
    elif cfg.kind == "dscnn":
        window_stages = [s for s in pipeline.features if s.reads == "window"]
        shape = getattr(window_stages[0], "output_shape", None) if len(window_stages) == 1 \
            else None
        if shape is None:
            raise KilomlError("dscnn reads a time-frequency image: use exactly one mfcc or mfe "
                              "feature stage", file=project.path,
                              line=locate(project, ("model",), "kind"), where="[model] kind")
        frames = n_features // shape[1]
        shape = (frames, shape[1])
    else:
        shape = (n_features,)
    check_network(project, cfg, shape)
    return shape


def _inputs(pipeline: Pipeline, windows: WindowSet, split: Split) -> np.ndarray:
    from kiloml.run import window_features_in_batches

    parts = window_features_in_batches(pipeline, windows)
    return pipeline.assemble(parts, fit_rows=split.train, y=windows.y)


def fit_neural(project: LoadedProject, out: Path, pipeline: Pipeline, windows: WindowSet,
               split: Split) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict, dict]:
    """Train or import the network, quantize, evaluate float and int8, export model.tflite.

    Returns (features of every window as the C library computes them, int8 test
    predictions, test scores, cross-validation, the ``neural`` metrics)."""
    cfg: NeuralModelConfig = project.config.model  # type: ignore[assignment]
    if cfg.reads == "window":
        if "features" in project.config.model_fields_set and project.config.features:
            raise KilomlError(f"[model] kind = '{cfg.kind}' reads the raw window; remove the "
                              "[[features]] stages (or set input = 'features')",
                              file=project.path, line=locate(project, ("model",), "kind"))
        pipeline.features = [RawWindow(pipeline.window_samples, pipeline.n_channels)]
    features = _inputs(pipeline, windows, split)
    shape = sample_shape(project, pipeline, features.shape[1])
    x = features.reshape(len(features), *shape)
    model_path = project.resolve(cfg.path) if cfg.path else None
    optimize = project.config.optimize
    model = NeuralModel(cfg, len(windows.class_names), shape, model_path, optimize)
    pipeline.model = model

    cv = cross_validate_network(cfg, x, windows, split, shape, optimize)
    model.fit(x[split.train], windows.y[split.train], windows.group[split.train])
    if cfg.kind == "imported":
        cv["_oof_scores"] = _imported_scores(model, x, split)
    test_x, test_y = x[split.test], windows.y[split.test]
    test_pred = model.predict(test_x)
    test_scores = model.predict_proba(test_x)

    float_proba = model.predict_proba_float(test_x)
    float_acc = None if float_proba is None else float(np.mean(float_proba.argmax(1) == test_y))
    int8_acc = float(np.mean(test_pred == test_y))
    from kiloml.nn.tflite_io import write_tflite

    assert model.graph is not None
    (out / "model.tflite").write_bytes(write_tflite(model.graph))
    if model.float_graph is not None:
        (out / "model_float.tflite").write_bytes(write_tflite(model.float_graph))
    neural = {
        "float_accuracy": float_acc,
        "int8_accuracy": int8_acc,
        "int8_minus_float_points": None if float_acc is None else
        round(100 * (int8_acc - float_acc), 2),
        "int8_float_agreement": None if float_proba is None else
        float(np.mean(float_proba.argmax(1) == test_pred)),
        "tflm_parity": tflm_parity(out / "model.tflite", model, test_x),
        "layers": model.layers(),
        "model_file": "model.tflite",
    }
    if model.history is not None:
        neural["training"] = training_record(model.history)
    if model.optimization is not None:
        neural["optimization"] = model.optimization.report(test_x, test_y)
        print(optimization_summary(neural["optimization"]))
    return features, test_pred, test_scores, cv, neural


def training_record(h) -> dict:
    """The training history for metrics.json. Without validation groups (too few training
    groups, or validation_groups = 0) early stopping watched the training loss and there is
    no validation accuracy: null and a note, never NaN."""
    validated = bool(h.val_accuracy) and all(np.isfinite(h.val_accuracy))
    record = {"epochs_run": h.epochs_run, "best_epoch": h.best_epoch,
              "stopped_early": h.stopped_early, "seconds": round(h.seconds, 1),
              "train_loss": [round(v, 5) for v in h.train_loss],
              "val_loss": [round(v, 5) for v in h.val_loss] if validated else None,
              "val_accuracy": [round(v, 4) for v in h.val_accuracy] if validated else None}
    if not validated:
        record["note"] = ("no validation groups: early stopping watched the training loss "
                          "(give the training set more groups than validation_groups)")
    return record


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


def optimization_summary(record: dict) -> str:
    """One line: the techniques, and held-out int8 accuracy and size before -> after."""
    b, a = record["before"], record["after"]
    return (f"optimize       {', '.join(record['techniques'])}: int8 accuracy "
            f"{b['int8_accuracy']:.4f} -> {a['int8_accuracy']:.4f}, MACs {b['macs']:,} -> "
            f"{a['macs']:,}, weights {b['weight_bytes']:,} -> {a['weight_bytes']:,} B")


IMPORTED_CV_NOTE = ("an imported model is not retrained per fold; it was trained elsewhere, "
                    "so its scores on the training groups stand in for out-of-fold scores "
                    "(calibrated thresholds are fitted on them, never on the test groups)")


def _imported_scores(model: NeuralModel, x: np.ndarray, split: Split) -> np.ndarray:
    """The imported model's scores on the training windows (NaN elsewhere): what calibrated
    thresholds are fitted on. kiloml fits nothing of the network on them but, for a float
    model, the int8 activation ranges; out of sample for the network as long as its own
    training (elsewhere) did not use these recordings."""
    scores = model.predict_proba(x[split.train])
    out = np.full((len(x), scores.shape[1]), np.nan)
    out[split.train] = scores
    return out


def cross_validate_network(cfg: NeuralModelConfig, x: np.ndarray, windows: WindowSet, split: Split,
                    shape: tuple[int, ...], optimize=None) -> dict:
    if cfg.kind == "imported":
        return {"folds": 0, "note": IMPORTED_CV_NOTE}
    if not split.folds:
        return {"folds": 0, "note": split.cv_note or "no cross-validation"}
    accuracies, balanced = [], []
    oof = np.full((len(windows), len(windows.class_names)), np.nan)
    for fit_idx, val_idx in track(split.folds, "cross-validating"):
        fold = NeuralModel(cfg, len(windows.class_names), shape, None, optimize)
        fold.fit(x[fit_idx], windows.y[fit_idx], windows.group[fit_idx], progress=False)
        pred = fold.predict(x[val_idx])
        oof[val_idx] = fold.predict_proba(x[val_idx])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = classification_metrics(windows.y[val_idx], pred, windows.group[val_idx],
                                       windows.class_names)
        accuracies.append(m["accuracy"])
        balanced.append(m["balanced_accuracy"])
    return {"folds": len(split.folds), "accuracy_per_fold": accuracies,
            "accuracy_mean": float(np.mean(accuracies)),
            "accuracy_std": float(np.std(accuracies)),
            "balanced_accuracy_mean": float(np.mean(balanced)),
            **({"note": split.cv_note} if split.cv_note else {}),
            "_oof_scores": oof}  # out-of-fold scores, popped by run._run


def profile_layers(model: NeuralModel, features: np.ndarray, profile, work: Path,
                   emulate: bool) -> dict:
    """Arena, planner and, on an emulated target, instructions per layer of the network."""
    from kiloml.codegen.nn_library import write_nn_library

    assert model.graph is not None
    library, net = write_nn_library(model.graph, work / "lib")
    out: dict = {"arena_bytes": net.plan.arena_bytes,
                 "arena_lower_bound_bytes": net.plan.lower_bound_bytes,
                 "planner": {"strategy": net.plan.strategy, "strategies": net.plan.strategies,
                             "in_place_tensors": len(net.plan.aliased),
                    "outputs_over_inputs": len(net.plan.overlapped)},
                 "notes": list(net.notes)}
    layers = [dict(layer) for layer in net.layers]
    if emulate and profile.qemu_machine:
        from kiloml.nn.compile import run_target

        x = model.quantized_input(features)
        run = run_target(library, model.graph, profile, x, work / profile.name)
        if run.layer_instructions is not None:
            for layer, count in zip(layers, run.layer_instructions, strict=False):
                layer["instructions"] = round(count, 1)
                layer["instructions_per_mac"] = (round(count / layer["macs"], 3)
                                                 if layer["macs"] else None)
        out["layers_measured_on"] = f"QEMU {profile.qemu_machine} ({profile.name})"
    out["layers"] = layers
    return out
