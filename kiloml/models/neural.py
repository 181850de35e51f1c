"""A neural network as the pipeline's model stage.

Either a PyTorch template trained here (``mlp``, ``cnn1d``, ``dscnn``) or a
user's model (``.tflite`` / ``.onnx``). Whatever its origin, the model that
ships is the int8 graph (TFLite quantization spec) run by kiloml's reference
interpreter, which is bit-exact with TFLM; the float graph is kept to report
what quantization costs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kiloml.errors import KilomlError
from kiloml.nn.analysis import summarize
from kiloml.nn.graph import Graph
from kiloml.nn.quantize import dequantize_output, quantize_graph, quantize_input
from kiloml.nn.reference import Interpreter
from kiloml.nn.template_params import template_params
from kiloml.progress import epoch_progress
from kiloml.project import NeuralModelConfig, OptimizeConfig

F32 = np.float32


class NeuralModel:
    kind = "neural"

    def __init__(self, config: NeuralModelConfig, n_classes: int,
                 sample_shape: tuple[int, ...], model_path: Path | None = None,
                 optimize: OptimizeConfig | None = None) -> None:
        self.config = config
        # [optimize]: distillation, pruning, QAT (kiloml.optimize); its record after fit
        self.optimize = optimize if optimize is not None and optimize.active else None
        self.optimization = None
        self.params: dict[str, object] | None = None  # the template's sizes as trained
        self.n_classes = n_classes
        self.sample_shape = tuple(int(d) for d in sample_shape)
        self.model_path = model_path
        self.float_graph: Graph | None = None
        self.graph: Graph | None = None
        self.history = None
        # Per-channel (x - mean) / std in float32 before int8 quantization: one int8 scale
        # must not serve channels whose units differ (an accelerometer in g beside a
        # gyroscope in deg/s would lose the former's resolution).
        self.input_mean: np.ndarray | None = None
        self.input_std: np.ndarray | None = None
        self._interpreters: dict[int, Interpreter] = {}
        # kind = "imported": how the samples reach the model's input, what was done to it
        self.input_match = None
        self.import_notes: list[str] = []

    @property
    def reads(self) -> str:
        return self.config.reads

    def __getstate__(self) -> dict:
        # the optimizer holds training data, a teacher and loss closures: not for pickles
        return {**self.__dict__, "optimization": None}

    # ---- training / import ------------------------------------------------

    def fit(self, x: np.ndarray, y: np.ndarray, groups: np.ndarray,
            progress: bool = True) -> NeuralModel:
        """x [N, *sample_shape] float32; groups pick the early-stopping validation set."""
        c = self.config
        if c.kind == "imported":
            self._import(x)
            return self
        from kiloml.nn.torch_export import to_graph
        from kiloml.nn.train import train_classifier

        fit_idx, val_idx = validation_split(groups, c.validation_groups, c.seed)
        params = {**template_params(c), "standardize": "external"}
        optimizer, train_loss = None, None
        if self.optimize is not None:
            from kiloml.optimize.apply import Optimizer

            optimizer = Optimizer(self, self.optimize, x, y, groups, fit_idx, val_idx, params,
                                  progress)
            train_loss = optimizer.training_loss()  # distillation, or None
        callback, close = epoch_progress(c.epochs) if progress else (None, lambda: None)
        try:
            module, self.history = train_classifier(
                c.kind, params, x[fit_idx], y[fit_idx],
                x[val_idx] if len(val_idx) else None, y[val_idx] if len(val_idx) else None,
                self.n_classes, seed=c.seed, max_epochs=c.epochs, patience=c.patience,
                batch_size=c.batch_size, lr=c.learning_rate, weight_decay=c.weight_decay,
                class_weight=c.class_weight, threads=1, progress=callback,
                train_loss=train_loss)
        finally:
            close()
        self.input_mean = module.norm.mean.detach().numpy().astype(F32)
        self.input_std = module.norm.std.detach().numpy().astype(F32)
        self.params = {k: v for k, v in params.items() if k != "standardize"}
        self.float_graph = to_graph(module, self.sample_shape)
        self.float_graph.name = c.kind
        self._quantize(x)
        if optimizer is not None:
            optimizer.run(module)  # prunes, fine-tunes, QAT: sets the graphs and params
            self.optimization = optimizer
        return self

    def _import(self, x: np.ndarray) -> None:
        from kiloml.nn.load import load_model

        assert self.model_path is not None
        graph = load_model(self.model_path)
        if len(graph.inputs) != 1 or len(graph.outputs) != 1:
            raise KilomlError(f"the model has {len(graph.inputs)} inputs and "
                              f"{len(graph.outputs)} outputs; one of each is needed",
                              file=self.model_path)
        graph = self._match_input(graph)
        out = graph.output_tensors[0]
        if out.shape[-1] != self.n_classes or out.size != self.n_classes:
            raise KilomlError(f"model output {out.name!r} has shape {list(out.shape)}; the "
                              f"project has {self.n_classes} classes", file=self.model_path)
        if graph.is_quantized or any(graph.tensors[i].dtype == "int8"
                                     for op in graph.ops for i in op.outputs):
            self.graph = graph
            self.import_notes.append("int8 model: used as it is (no calibration, no input "
                                     "standardization)")
        else:
            self.float_graph = graph
            if self.config.input_scaling == "standardize":
                self._standardize_imported(x)
            self._quantize(x)

    def _match_input(self, graph: Graph) -> Graph:
        """The model's input fed with the project's samples in their own order (a RESHAPE /
        TRANSPOSE in front where the model declares unit axes or channels first)."""
        from kiloml.nn.input_layout import InputMismatch, match_input

        declared, to_ir = declared_input(graph, self.model_path)
        what = "windows [samples, channels]" if self.reads == "window" else "features"
        try:
            graph, match = match_input(graph, self.sample_shape, what=what,
                                       setting=self.config.input_layout,
                                       declared_shape=declared, to_ir=to_ir)
        except InputMismatch as exc:
            hint = ""
            if self.reads == "features" and sum(int(d) > 1 for d in declared[1:]) >= 2:
                hint = ("; a model of this input shape reads windows: set [model] input = "
                        "'window' (and remove the [[features]] stages)")
            raise KilomlError(f"{exc}{hint}", file=self.model_path) from None
        self.input_match = match
        return graph

    def _standardize_imported(self, x: np.ndarray) -> None:
        """Per-channel (x - mean) / std of the training samples folded into the imported
        float graph's first layer (kiloml.nn.input_scaling), when the fold is exact."""
        from kiloml.nn.input_scaling import (
            channel_statistics,
            fold_standardization,
            max_output_difference,
        )

        assert self.float_graph is not None
        k = self.sample_shape[-1]
        mean, std = channel_statistics(np.asarray(x, F32).reshape(len(x), -1, k))
        folded = fold_standardization(self.float_graph, mean, std)
        if folded is None:
            self.import_notes.append("input not standardized: the input reaches an operator "
                                     "other than FULLY_CONNECTED / CONV_2D / "
                                     "DEPTHWISE_CONV_2D (through reshapes and transposes)")
            return
        probe = self._seeded_rows(x, 256).reshape(-1, *self.float_graph.input_tensors[0].shape[1:])
        diff, top = max_output_difference(self.float_graph, folded, probe)
        if not diff <= 1e-3 * max(1.0, top):
            self.import_notes.append(f"input not standardized: folding it into the first "
                                     f"layer changed the float outputs by {diff:.3g}")
            return
        self.float_graph = folded.graph
        self.input_mean, self.input_std = folded.mean, folded.std
        self.import_notes.append(
            "input standardized per channel in float before int8 and folded into the first "
            "layer" + ("" if folded.centered else " (scale only: a padded convolution reads "
                       "the input, so the mean stays in it)")
            + f"; float outputs changed by at most {diff:.2g}")

    def _seeded_rows(self, x: np.ndarray, n: int) -> np.ndarray:
        rng = np.random.default_rng(self.config.seed)
        n = min(n, len(x))
        return np.asarray(x)[np.sort(rng.choice(len(x), size=n, replace=False))]

    def calibration_inputs(self, x: np.ndarray) -> np.ndarray:
        """The seeded subset of training inputs the quantizer calibrates on, standardized."""
        return self.standardize(self._seeded_rows(x, self.config.calibration_windows))

    def _quantize(self, x: np.ndarray) -> None:
        c = self.config
        calib = self.calibration_inputs(x)
        assert self.float_graph is not None
        self.graph = quantize_graph(self.float_graph, [calib.astype(F32)], method=c.calibration,
                                    percentile=c.percentile)
        self.graph.name = self.float_graph.name
        self._interpreters.clear()

    # ---- inference -----------------------------------------------------------

    def _interpreter(self, graph: Graph) -> Interpreter:
        key = id(graph)
        if key not in self._interpreters:
            self._interpreters[key] = Interpreter(graph)
        return self._interpreters[key]

    def standardize(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, F32)
        if self.input_mean is None or self.input_std is None:
            return x
        return ((x - self.input_mean) / self.input_std).astype(F32)

    def quantized_input(self, x: np.ndarray) -> np.ndarray:
        """Raw inputs -> what the int8 graph reads (standardized, then quantized)."""
        assert self.graph is not None
        t = self.graph.input_tensors[0]
        x = self.standardize(np.asarray(x).reshape(len(x), *self.sample_shape))
        x = x.reshape(len(x), *t.shape[1:])
        return quantize_input(x, t) if t.dtype == "int8" else x

    def raw_output(self, x: np.ndarray, batch: int = 512) -> np.ndarray:
        """The int8 graph's output tensor for inputs x (what the device computes)."""
        assert self.graph is not None
        xq = self.quantized_input(x)
        run = self._interpreter(self.graph).run
        parts = [run([xq[s:s + batch]])[0] for s in range(0, len(xq), batch)]
        return np.concatenate(parts).reshape(len(x), -1)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        assert self.graph is not None
        raw = self.raw_output(x)
        out = self.graph.output_tensors[0]
        return dequantize_output(raw, out) if out.dtype == "int8" else raw.astype(F32)

    def predict(self, x: np.ndarray) -> np.ndarray:
        # argmax of the int8 outputs: the first maximum wins, as in the C code
        return np.argmax(self.raw_output(x), axis=1)

    def predict_proba_float(self, x: np.ndarray, batch: int = 512) -> np.ndarray | None:
        if self.float_graph is None:
            return None
        t = self.float_graph.input_tensors[0]
        x = self.standardize(np.asarray(x).reshape(len(x), *self.sample_shape))
        x = x.reshape(len(x), *t.shape[1:])
        run = self._interpreter(self.float_graph).run
        return np.concatenate([run([x[s:s + batch]])[0].reshape(-1, self.n_classes)
                               for s in range(0, len(x), batch)])

    # ---- C ---------------------------------------------------------------------------

    def emit_c(self, ctx):  # -> CStage
        """Standardize and quantize the features into the arena, run the network, decide.

        The same float32 operations as ``quantized_input`` (division by std, division
        by the scale, roundf, clamp) and the same arg-max (first maximum) and
        dequantization (in double) as ``predict`` / ``predict_proba``."""
        from kiloml.codegen.cwriter import c_array, c_double, c_float
        from kiloml.codegen.nn_c import emit_network
        from kiloml.stage import CStage

        assert self.graph is not None
        net = emit_network(self.graph, prefix=ctx.prefix)
        self.network_c = net
        p = ctx.prefix
        t_in, t_out = self.graph.input_tensors[0], self.graph.output_tensors[0]
        lines = [net.source]
        n = ctx.n_inputs
        if self.input_mean is not None and self.input_std is not None:
            k = int(self.input_mean.size)
            lines.append(c_array("float", f"{p}mean", self.input_mean.reshape(-1), fmt=c_float))
            lines.append(c_array("float", f"{p}std", self.input_std.reshape(-1), fmt=c_float))
            value = (f"({ctx.input}[{p}i] - {p}mean[{p}i % {k}]) / {p}std[{p}i % {k}]"
                     if k > 1 else f"({ctx.input}[{p}i] - {p}mean[0]) / {p}std[0]")
        else:
            value = f"{ctx.input}[{p}i]"
        if t_in.dtype == "int8":
            store = [f"float {p}q = ({value}) / {c_float(t_in.quant.s)};",
                     f"int32_t {p}r;",
                     # |q| <= 1000 keeps the conversion defined; NaN takes -1000 (so
                     # -128, as kml_quantize_f32_s8 and quantize_input)
                     f"{p}q = {p}q > 1000.0f ? 1000.0f : ({p}q >= -1000.0f ? {p}q : -1000.0f);",
                     f"{p}r = (int32_t)roundf({p}q) + ({t_in.quant.zp});",
                     f"{p}x[{p}i] = (int8_t)({p}r > 127 ? 127 : ({p}r < -128 ? -128 : {p}r));"]
            x_type = "int8_t"
        else:
            store = [f"{p}x[{p}i] = {value};"]
            x_type = "float"
        if t_out.dtype == "int8":
            y_type = "int8_t"
            score = (f"(float)({c_double(float(t_out.quant.scale[0]))} * "
                     f"(double)({p}y[{p}k] - ({t_out.quant.zp})))")
        else:
            y_type = "float"
            score = f"{p}y[{p}k]"
        lines_call = [
            "{",
            f"    {x_type} *{p}x = {net.input_expr};",
            f"    const {y_type} *{p}y = {net.output_expr};",
            f"    int32_t {p}i, {p}k, {p}best = 0;",
            f"    for ({p}i = 0; {p}i < {n}; ++{p}i) {{",
            *(f"        {s}" for s in store),
            "    }",
            f"    {net.invoke}();",
            f"    for ({p}k = 0; {p}k < {self.n_classes}; ++{p}k) {{",
            f"        if ({p}y[{p}k] > {p}y[{p}best]) {{",
            f"            {p}best = {p}k;",
            "        }",
            f"        {ctx.output}->scores[{p}k] = {score};",
            "    }",
            f"    {ctx.output}->label = {p}best;",
            "}",
        ]
        return CStage(runtime=["kml_nn"], constants="\n".join(lines),
                      call="\n    ".join(lines_call))

    def cost(self, profile, n_features: int):  # -> StageCost
        from kiloml.stage import StageCost

        assert self.graph is not None
        macs = sum(r["macs"] for r in self.layers())
        per_mac = 1.0 if profile.has_dsp_ext else 3.0
        return StageCost(flash_bytes=self.graph.weight_bytes() + 6000, ram_bytes=0,
                         instructions=int(macs * per_mac) + 20 * n_features)

    # ---- description -------------------------------------------------------------

    def layers(self) -> list[dict]:
        assert self.graph is not None
        return [{"op": r.kind, "output_shape": list(r.output_shape), "macs": r.macs,
                 "weight_bytes": r.weight_bytes} for r in summarize(self.graph)]

    def describe(self) -> dict:
        assert self.graph is not None
        c = self.config
        layers = self.layers()
        d: dict = {"kind": c.kind, "reads": self.reads,
                   "input_shape": list(self.sample_shape),
                   "operators": len(layers), "macs": sum(r["macs"] for r in layers),
                   "weight_bytes": self.graph.weight_bytes(),
                   "quantization": "int8 (TFLite spec: asymmetric activations, symmetric "
                                   "per-channel conv weights, int32 bias)",
                   "calibration": c.calibration if self.float_graph is not None else "none "
                   "(imported int8 model)"}
        if self.input_mean is not None and self.input_std is not None:
            d["input_standardization"] = {"mean": self.input_mean.round(6).tolist(),
                                          "std": self.input_std.round(6).tolist()}
        if c.kind == "imported":
            d["path"] = str(self.model_path)
            if self.input_match is not None:
                d["input_layout"] = {"model_input_shape": list(self.input_match.declared_shape),
                                     "reads": self.input_match.layout,
                                     "from_setting": self.input_match.from_setting}
            d["import_notes"] = list(self.import_notes)
        else:
            d.update(self.params if self.params is not None else template_params(c))
        return d


def declared_input(graph: Graph, path: Path | None):
    """(the input shape the model file declares, the map from it to the IR's layout): an
    ONNX model's own shape (its IR input is NHWC), a .tflite's tensor shape."""
    if path is not None and Path(path).suffix.lower() == ".onnx":
        from kiloml.nn.onnx_import import onnx_input_layout

        layout = onnx_input_layout(graph)[0]
        return layout.onnx_shape, layout.to_ir
    return tuple(graph.input_tensors[0].shape), None


def validation_split(groups: np.ndarray, n_groups: int, seed: int) -> tuple[np.ndarray,
                                                                               np.ndarray]:
    """Hold out ``n_groups`` whole groups of the training set for early stopping."""
    names = sorted(set(groups.tolist()))
    if n_groups == 0 or len(names) <= n_groups:
        return np.arange(len(groups)), np.zeros(0, dtype=int)
    rng = np.random.default_rng(seed)
    held = set(rng.choice(names, size=n_groups, replace=False).tolist())
    mask = np.array([g in held for g in groups.tolist()])
    return np.flatnonzero(~mask), np.flatnonzero(mask)
