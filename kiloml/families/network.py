"""Neural networks: a PyTorch template trained here (mlp, cnn1d, dscnn) or a user's
imported .tflite / .onnx model. The int8 graph (TFLite quantization spec) is the model that
ships: evaluated with the reference interpreter, exported as ``model.tflite``, checked
bit-exact against the TFLM interpreter on the held-out windows, and compiled ahead of time
into the C library."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kiloml.data.splits import Split
from kiloml.data.windows import WindowSet
from kiloml.dsp.raw import RawWindow
from kiloml.errors import KilomlError
from kiloml.families.base import ModelFamily
from kiloml.feasibility import check_network
from kiloml.models.neural import NeuralModel
from kiloml.pipeline import Pipeline
from kiloml.progress import track
from kiloml.project import NeuralModelConfig, locate

F32 = np.float32

IMPORTED_CV_NOTE = ("an imported model is not retrained per fold; it was trained elsewhere, "
                    "so its scores on the training groups stand in for out-of-fold scores "
                    "(calibrated thresholds are fitted on them, never on the test groups)")


class NetworkFamily(ModelFamily):
    name = "network"
    config: NeuralModelConfig

    @property
    def imported(self) -> bool:
        return self.config.kind == "imported"

    @property
    def retrainable(self) -> bool:
        return not self.imported  # trained elsewhere: kiloml has nothing to train it with

    @property
    def reads_window(self) -> bool:
        return self.config.reads == "window"

    def prepare_pipeline(self, pipeline: Pipeline) -> None:
        if not self.reads_window:
            return
        project = self.project
        if "features" in project.config.model_fields_set and project.config.features:
            raise KilomlError(f"[model] kind = '{self.config.kind}' reads the raw window; "
                              "remove the [[features]] stages (or set input = 'features')",
                              file=project.path, line=locate(project, ("model",), "kind"))
        pipeline.features = [RawWindow(pipeline.window_samples, pipeline.n_channels)]

    def sample_shape(self, pipeline: Pipeline, n_features: int) -> tuple[int, ...]:
        cfg, project = self.config, self.project
        if cfg.reads == "window":
            shape: tuple[int, ...] = (pipeline.window_samples, pipeline.n_channels)
        elif cfg.kind == "dscnn":
            window_stages = [s for s in pipeline.features if s.reads == "window"]
            image = getattr(window_stages[0], "output_shape", None) \
                if len(window_stages) == 1 else None
            if image is None:
                raise KilomlError("dscnn reads a time-frequency image: use exactly one mfcc "
                                  "or mfe feature stage", file=project.path,
                                  line=locate(project, ("model",), "kind"),
                                  where="[model] kind")
            shape = (n_features // image[1], image[1])
        else:
            shape = (n_features,)
        check_network(project, cfg, shape)
        return shape

    def new_model(self, pipeline: Pipeline, sample_shape: tuple[int, ...]) -> NeuralModel:
        cfg = self.config
        path = self.project.resolve(cfg.path) if cfg.path else None
        return NeuralModel(cfg, pipeline.n_classes, sample_shape, path,
                           self.project.config.optimize)

    def fit(self, model: NeuralModel, x: np.ndarray, y: np.ndarray, groups: np.ndarray, *,
            progress: bool = True) -> None:
        model.fit(x, y, groups, progress=progress)

    def cross_validate(self, pipeline: Pipeline, inputs, windows: WindowSet, split: Split
                       ) -> dict:
        if self.imported:
            return {"folds": 0, "note": IMPORTED_CV_NOTE}
        return super().cross_validate(pipeline, inputs, windows, split)

    def out_of_fold_scores(self, cv: dict, model: NeuralModel, x: np.ndarray, split: Split
                           ) -> np.ndarray | None:
        if not self.imported:
            return super().out_of_fold_scores(cv, model, x, split)
        # The imported model's scores on the training windows (NaN elsewhere): kiloml fits
        # nothing of the network on them but, for a float model, the int8 activation
        # ranges; out of sample as long as its own training (elsewhere) did not use them.
        scores = model.predict_proba(x[split.train])
        out = np.full((len(x), scores.shape[1]), np.nan)
        out[split.train] = scores
        return out

    def finish(self, out: Path, model: NeuralModel, x: np.ndarray, windows: WindowSet,
               split: Split) -> dict:
        """Float and int8 accuracy on the held-out windows, model.tflite (and the float
        graph), TFLM parity on every held-out window, the layers and the training."""
        from kiloml.nn.tflite_io import write_tflite

        test_x, test_y = x[split.test], windows.y[split.test]
        test_pred = model.predict(test_x)
        float_proba = model.predict_proba_float(test_x)
        float_acc = None if float_proba is None else \
            float(np.mean(float_proba.argmax(1) == test_y))
        int8_acc = float(np.mean(test_pred == test_y))
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
        return {"neural": neural}

    def after_target(self, metrics: dict, model: NeuralModel, x: np.ndarray, split: Split,
                     profile, out: Path, emulate: bool) -> None:
        features = x.reshape(len(x), -1)
        metrics["neural"].update(profile_layers(model, features[split.test][:4], profile,
                                                out / "verify" / "layers", emulate))

    def search_columns(self, model: NeuralModel) -> dict:
        return {"params": int(sum(r["weight_bytes"] for r in model.layers())),
                "macs": int(sum(r["macs"] for r in model.layers()))}

    def as_pruned(self, pipeline: Pipeline, n_features: int) -> NeuralModelConfig:
        """The settings as structured pruning will leave them (its sizes are known before
        training), so the estimate before training is the pruned network's."""
        cfg, opt = self.config, self.project.config.optimize
        if opt.prune != "structured" or cfg.kind not in ("mlp", "cnn1d", "dscnn"):
            return cfg
        from kiloml.nn.template_params import template_params
        from kiloml.optimize.prune import structured_plan

        shape = self.sample_shape(pipeline, n_features)
        kept = structured_plan(cfg.kind, template_params(cfg), shape, pipeline.n_classes,
                               opt.sparsity)
        return cfg.model_copy(update={"hidden" if cfg.kind == "mlp" else "filters": kept})

    def estimate_before_training(self, pipeline: Pipeline, profile, n_features: int,
                                 n_train_windows: int,
                                 probe: tuple[np.ndarray, np.ndarray] | None) -> dict:
        from kiloml.targets.estimate import estimate_before_training

        return estimate_before_training(pipeline, self.as_pruned(pipeline, n_features),
                                        profile, n_features, n_train_windows)

    def check_data_estimator(self, n_classes: int, seed: int):
        from sklearn.ensemble import RandomForestClassifier

        return (RandomForestClassifier(n_estimators=50, random_state=seed, n_jobs=1),
                "random_forest (50 trees), a fast stand-in for the project's neural network")


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
