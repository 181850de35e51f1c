"""Networks -> the int8 model stage: a float graph from PyTorch (ONNX export, or
kiloml's own templates directly), a Keras model (its layers, kiloml.conversion.keras_layers),
an MLPClassifier, or an .onnx / .tflite file; quantized to TFLite-spec int8 from
``calibration`` (kiloml.nn.quantize.quantize_graph) unless the file already is int8.

Layouts: the user gives inputs in the model's own layout (PyTorch: channels first,
``[N, C, T]``); the graph IR and the C library are channels last (``[T][C]``, a row of
channels per sample, what the streaming API pushes). ``Converted.layout`` (an OnnxLayout)
moves the one to the other."""

from __future__ import annotations

import contextlib
import io
import logging
import math
import tempfile
import warnings
from pathlib import Path

import numpy as np

from kiloml.conversion.result import Converted
from kiloml.errors import KilomlError

F32 = np.float32
MAX_CALIBRATION = 100_000  # samples; more only slows the calibration


def calibration_array(calibration: object, input_shape: tuple[int, ...] | None,
                      what: str) -> np.ndarray:
    """calibration as float32 [N, *input_shape] (N >= 1, finite), or one line naming the
    shape or dtype expected. ``input_shape`` None: any per-sample shape (PyTorch, whose
    input shape only the data tells)."""
    if calibration is None:
        raise KilomlError(f"{what} is a float network: kiloml quantizes it to int8 from "
                          "calibration data; pass calibration= an array of typical inputs "
                          "[N, ...] (a few hundred training samples)", where="calibration")
    try:
        x = np.asarray(calibration)
    except (ValueError, TypeError) as exc:
        raise KilomlError(f"not an array: {exc}"[:200], where="calibration") from None
    want = "[N" + "".join(f", {d}" for d in input_shape) + "]" if input_shape is not None \
        else "[N, ...]"
    if x.dtype.kind not in "fiu" or x.dtype.kind == "b":
        raise KilomlError(f"dtype {x.dtype}; expected floating-point inputs {want}",
                          where="calibration")
    if x.dtype.kind != "f":
        raise KilomlError(f"dtype {x.dtype} (integers); expected floating-point inputs {want} "
                          "as the model reads them (convert with .astype(np.float32))",
                          where="calibration")
    if input_shape is not None and (x.ndim != len(input_shape) + 1 or
                                    tuple(x.shape[1:]) != tuple(input_shape)):
        raise KilomlError(f"shape {list(x.shape)}; the model reads {want}",
                          where="calibration")
    if x.ndim < 2:
        raise KilomlError(f"shape {list(x.shape)}; expected [N, ...]: a batch of inputs",
                          where="calibration")
    if x.shape[0] < 1:
        raise KilomlError(f"shape {list(x.shape)}: no samples", where="calibration")
    with np.errstate(over="ignore"):
        x32 = x.astype(F32)
    if not np.all(np.isfinite(x32)):
        raise KilomlError("holds NaN or infinite values (or values beyond float32)",
                          where="calibration")
    if len(x32) > MAX_CALIBRATION:
        x32 = x32[np.linspace(0, len(x32) - 1, MAX_CALIBRATION).astype(int)]
    return np.ascontiguousarray(x32)


def _validated(graph, what: str):
    from kiloml.nn.validate import ModelError, validate_graph

    try:
        validate_graph(graph)
    except ModelError as exc:
        raise KilomlError(exc.message, where=f"{what}: {exc.where}" if exc.where else what
                          ) from None
    return graph


def _check_io(graph, what: str) -> tuple[tuple[int, ...], int]:
    """(the IR input shape without the batch, classes) of a one-input one-output graph."""
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise KilomlError(f"the model has {len(graph.inputs)} inputs and {len(graph.outputs)} "
                          "outputs; kiloml converts models of one input and one output",
                          where=what)
    t_in, t_out = graph.input_tensors[0], graph.output_tensors[0]
    if not t_in.shape or t_in.shape[0] != 1:
        raise KilomlError(f"the input {t_in.name!r} has shape {list(t_in.shape)}; expected a "
                          "batch of one first", where=what)
    k = int(t_out.size)
    if k < 2 or t_out.shape[-1] != k:
        why = ("one output (a binary logit?): give the model one output per class"
               if k == 1 else "expected [1, classes]")
        raise KilomlError(f"the output {t_out.name!r} has shape {list(t_out.shape)}; {why}",
                          where=what)
    return tuple(int(d) for d in t_in.shape[1:]), k


def network_model(float_graph, int8_graph, source: str, input_shape: tuple[int, ...],
                  layout, calibration: np.ndarray | None, notes: list[str] | None = None
                  ) -> Converted:
    """The NeuralModel stage of a float graph quantized on ``calibration`` (user layout),
    or of an int8 graph as it is."""
    from kiloml.models.neural import NeuralModel
    from kiloml.nn.quantize import quantize_graph
    from kiloml.project import NeuralModelConfig

    graph = float_graph if float_graph is not None else int8_graph
    model_shape, k = _check_io(graph, source)
    if math.prod(model_shape) != math.prod(input_shape):
        raise KilomlError(f"the model input holds {math.prod(model_shape)} values, the inputs "
                          f"{math.prod(input_shape)}", where=source)
    extra = {"input_scaling": "none"} if "input_scaling" in NeuralModelConfig.model_fields \
        else {}
    config = NeuralModelConfig(kind="imported", path=source, **extra)
    model = NeuralModel(config, k, model_shape)
    if float_graph is not None:
        assert calibration is not None
        x = calibration if layout is None else layout.to_ir(
            calibration.reshape(len(calibration), *layout.onnx_shape[1:]))
        x = x.reshape(len(x), *float_graph.input_tensors[0].shape[1:]).astype(F32)
        try:
            model.graph = quantize_graph(float_graph, [x], method="minmax")
        except (ValueError, ArithmeticError) as exc:
            raise KilomlError(f"the network cannot be quantized to int8 on this calibration "
                              f"data: {exc}"[:300], where="calibration") from None
        model.graph.name = float_graph.name
        model.float_graph = float_graph
        _validated(model.graph, f"{source} (int8)")
    else:
        model.graph = int8_graph
    return Converted(model, "network", source, tuple(input_shape), model_shape, k,
                     layout=layout, notes=list(notes or []))


def _identity_layout(shape: tuple[int, ...]):
    from kiloml.nn.onnx_import import OnnxLayout

    rank = len(shape) + 1
    return OnnxLayout("input", (1, *shape), (1, *shape), tuple(range(rank)))


# --- origins ---------------------------------------------------------------------------------


def from_mlp(est: object, calibration: object) -> Converted:
    from kiloml.conversion.sklearn_models import mlp

    graph, classes, features, f = mlp(est)
    _validated(graph, "MLPClassifier")
    x = calibration_array(calibration, (f,), "the MLPClassifier")
    converted = network_model(graph, None, "MLPClassifier", (f,), None, x)
    converted.classes, converted.feature_names = classes, features
    return converted


def is_torch_module(model: object) -> bool:
    import sys

    torch = sys.modules.get("torch")
    return torch is not None and isinstance(model, torch.nn.Module)


def from_torch(module: object, calibration: object) -> Converted:
    """A kiloml template through torch_export.to_graph; any other module through
    torch.onnx.export (its default exporter) and kiloml's ONNX importer."""
    from kiloml.optional import require

    torch = require("torch", "converting a PyTorch module")
    x = calibration_array(calibration, None, "the torch.nn.Module")
    shape = tuple(int(d) for d in x.shape[1:])
    training = bool(getattr(module, "training", False))
    module.eval()  # type: ignore[attr-defined]  # inference (dropout off, BN statistics)
    try:
        return _torch_graph(module, x, shape, torch)
    finally:
        module.train(training)  # type: ignore[attr-defined]  # the user's mode back


def _torch_graph(module: object, x: np.ndarray, shape: tuple[int, ...], torch) -> Converted:
    from kiloml.nn.torch_models import TemplateModel

    if isinstance(module, TemplateModel):
        from kiloml.nn.torch_export import to_graph

        graph = _validated(to_graph(module, shape), "torch template")
        return network_model(graph, None, f"torch {type(module).__name__} (kiloml template)",
                             shape, None, x)
    with tempfile.TemporaryDirectory(prefix="kiloml-torch-") as tmp:
        path = Path(tmp) / "model.onnx"
        try:
            with torch.no_grad(), _quiet():
                torch.onnx.export(module, (torch.from_numpy(x[:1]),), str(path),
                                  input_names=["input"], output_names=["output"])
        except Exception as exc:  # the exporter's own errors are many and varied
            first = " ".join(str(exc).split())[:300] or type(exc).__name__
            raise KilomlError(f"torch.onnx.export failed: {first}",
                              where=f"model ({type(module).__name__})") from None
        source = f"torch {type(module).__name__} (ONNX export)"
        try:
            return from_file(path, x, source=source, checked=True)
        except KilomlError as exc:  # about the exported file, which is gone: the module
            where = f"{source}: {exc.where}" if exc.where else source
            raise KilomlError(exc.message, where=where) from None


@contextlib.contextmanager
def _quiet():
    """The exporter's progress lines and warnings (stdout, logging, warnings) silenced:
    kiloml reports what went wrong itself."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo",
                                             "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def from_file(path: str | Path, calibration: object, *, source: str | None = None,
              checked: bool = False) -> Converted:
    """An .onnx or .tflite file: int8 as it is; float quantized on ``calibration`` (in the
    model's own layout, e.g. ONNX's channels first)."""
    from kiloml.nn.load import load_model

    path = Path(path)
    graph = load_model(path)
    source = source or path.name
    layout = None
    if path.suffix.lower() == ".onnx":
        from kiloml.nn.onnx_import import onnx_input_layout

        layouts = onnx_input_layout(graph)
        layout = layouts[0] if layouts else None
    if layout is not None:
        input_shape = tuple(int(d) for d in layout.onnx_shape[1:])
    else:
        input_shape = tuple(int(d) for d in graph.input_tensors[0].shape[1:]) \
            if graph.inputs else ()
    int8 = graph.is_quantized or any(graph.tensors[i].dtype == "int8"
                                     for op in graph.ops for i in op.outputs)
    if int8:
        if graph.input_tensors[0].dtype != "int8":
            raise KilomlError("a quantized model with a float input; kiloml converts int8 "
                              "models with int8 inputs and outputs, or float models",
                              file=path)
        return network_model(None, graph, source, input_shape, layout, None)
    x = calibration if checked else calibration_array(calibration, input_shape,
                                                      f"{path.name}")
    if checked and tuple(np.shape(x)[1:]) != input_shape:
        raise KilomlError(f"calibration has shape {list(np.shape(x))}; the exported model "
                          f"reads [N, {', '.join(map(str, input_shape))}]",
                          where="calibration")
    return network_model(graph, None, source, input_shape, layout, np.asarray(x, F32))


def is_keras_model(model: object) -> bool:
    return any(c.__module__.split(".")[0] == "keras" and c.__name__ in ("Model", "Sequential",
                                                                         "Functional")
               for c in type(model).__mro__)


def from_keras(model: object, calibration: object) -> Converted:
    from kiloml.conversion.keras_layers import keras_graph

    graph, input_shape = keras_graph(model)
    _validated(graph, "Keras model")
    x = calibration_array(calibration, input_shape, "the Keras model")
    return network_model(graph, None, f"Keras {type(model).__name__}", input_shape, None, x)
