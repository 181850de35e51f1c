"""Load a user's model file (.tflite or .onnx) into a validated IR graph."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kiloml.errors import KilomlError
from kiloml.nn.graph import Graph
from kiloml.nn.validate import ModelError, validate_graph
from kiloml.npyfile import read_npy_array

if TYPE_CHECKING:
    from kiloml.nn.onnx_import import OnnxLayout

MODEL_SUFFIXES = (".tflite", ".onnx")


def load_model(path: str | Path) -> Graph:
    path = Path(path)
    if not path.is_file():  # a FIFO or a device would block or never end
        raise KilomlError("model file not found" if not path.exists() else
                          "not a regular file (a folder, FIFO or device)", file=path)
    suffix = path.suffix.lower()
    if suffix == ".tflite":
        from kiloml.nn.tflite_io import read_tflite

        graph = read_tflite(path)
    elif suffix == ".onnx":
        from kiloml.nn.onnx_import import read_onnx

        graph = read_onnx(path)
    else:
        raise KilomlError(f"unknown model format {suffix or '(no suffix)'}; expected "
                          f"{' or '.join(MODEL_SUFFIXES)}", file=path)
    try:
        validate_graph(graph)
    except ModelError as exc:
        raise KilomlError(exc.message, file=path, where=exc.where) from None
    return graph


def load_inputs(path: str | Path, graph: Graph, layout: OnnxLayout | None = None) -> np.ndarray:
    """An .npy of model inputs [N, *input_shape[1:]] (N >= 1) in the model input's dtype.

    ``layout`` (an ONNX model's input layout) also accepts inputs in the ONNX layout
    ([N, C, W] for a 1-D convolution) and moves them to the IR's NHWC. The file is read
    without pickle (object arrays are refused); float inputs of a quantized model must
    quantize inside int32 (TFLM's QUANTIZE is undefined beyond)."""
    path = Path(path)
    if len(graph.inputs) != 1:
        raise KilomlError(f"the model has {len(graph.inputs)} inputs; one is supported here",
                          file=path)
    tensor = graph.tensors[graph.inputs[0]]
    x = read_npy_array(path)
    want = tensor.shape[1:]
    if x.ndim == len(tensor.shape) - 1 and tuple(x.shape) == want:
        x = x[None]  # one sample without the batch axis
    onnx_want = tuple(layout.onnx_shape[1:]) if layout is not None else None
    if (onnx_want is not None and x.ndim == len(layout.onnx_shape)
            and tuple(x.shape[1:]) == onnx_want and onnx_want != want):
        x = layout.to_ir(x).astype(x.dtype)
    if x.ndim != len(tensor.shape) or tuple(x.shape[1:]) != want:
        also = (f" (or [N, {', '.join(str(d) for d in onnx_want)}] in the ONNX layout)"
                if onnx_want is not None and onnx_want != want else "")
        raise KilomlError(
            f"inputs have shape {list(x.shape)}; the model input {tensor.name!r} needs "
            f"[N, {', '.join(str(d) for d in want)}]{also}", file=path)
    if x.shape[0] == 0:
        raise KilomlError(f"the inputs hold no samples (shape {list(x.shape)}); give at "
                          "least one", file=path)
    if x.dtype != np.dtype(tensor.dtype):
        hint = (" (quantize with the input's scale and zero point "
                f"{tensor.quant.s:g}, {tensor.quant.zp})" if tensor.quant is not None else "")
        raise KilomlError(f"inputs have dtype {x.dtype}; the model input {tensor.name!r} is "
                          f"{tensor.dtype}{hint}", file=path)
    _check_quantizable(x, graph, path)
    return x


def _check_quantizable(x: np.ndarray, graph: Graph, path: Path) -> None:
    """Float inputs a QUANTIZE reads: finite, and inside int32 once divided by its scale."""
    if x.dtype != np.float32:
        return
    index = graph.inputs[0]
    for op in graph.ops:
        if op.kind != "QUANTIZE" or op.inputs[0] != index:
            continue
        q = graph.tensors[op.outputs[0]].quant
        assert q is not None  # validate_graph checked
        bad = ~np.isfinite(x)
        limit = float(q.s) * float(1 << 30)
        bad |= np.abs(x.astype(np.float64)) >= limit
        if bad.any():
            at = np.argwhere(bad)[0].tolist()
            value = float(x[tuple(at)])
            raise KilomlError(f"input value {value:.6g} at index {at} cannot be quantized "
                              f"with scale {q.s:g} (it must be finite and smaller than "
                              f"{limit:.3g} in magnitude)", file=path)
