"""Load a user's model file (.tflite or .onnx) into a validated IR graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kiloml.errors import KilomlError
from kiloml.nn.analysis import GraphError, validate
from kiloml.nn.graph import Graph

MODEL_SUFFIXES = (".tflite", ".onnx")


def load_model(path: str | Path) -> Graph:
    path = Path(path)
    if not path.is_file():
        raise KilomlError("model file not found", file=path)
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
        validate(graph)
    except GraphError as exc:
        raise KilomlError(str(exc), file=path) from None
    return graph


def load_inputs(path: str | Path, graph: Graph, layout=None) -> np.ndarray:
    """An .npy of model inputs [N, *input_shape[1:]] in the model input's dtype.

    ``layout`` (an ONNX model's input layout) also accepts inputs in the ONNX layout
    ([N, C, W] for a 1-D convolution) and moves them to the IR's NHWC."""
    path = Path(path)
    if len(graph.inputs) != 1:
        raise KilomlError(f"the model has {len(graph.inputs)} inputs; one is supported here",
                          file=path)
    tensor = graph.tensors[graph.inputs[0]]
    try:
        x = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise KilomlError("file not found", file=path) from None
    except (OSError, ValueError, EOFError) as exc:
        raise KilomlError(f"not a readable .npy file: {exc}", file=path) from None
    if not isinstance(x, np.ndarray):
        raise KilomlError("expected a single array (.npy), got an archive", file=path)
    want = tensor.shape[1:]
    if x.ndim == len(tensor.shape) - 1 and tuple(x.shape) == want:
        x = x[None]  # one sample without the batch axis
    onnx_want = tuple(layout.onnx_shape[1:]) if layout is not None else None
    if onnx_want is not None and tuple(x.shape[1:]) == onnx_want and onnx_want != want:
        x = layout.to_ir(x).astype(x.dtype)
    if tuple(x.shape[1:]) != want:
        also = (f" (or [N, {', '.join(str(d) for d in onnx_want)}] in the ONNX layout)"
                if onnx_want is not None and onnx_want != want else "")
        raise KilomlError(
            f"inputs have shape {list(x.shape)}; the model input {tensor.name!r} needs "
            f"[N, {', '.join(str(d) for d in want)}]{also}", file=path)
    if x.dtype != np.dtype(tensor.dtype):
        hint = (" (quantize with the input's scale and zero point "
                f"{tensor.quant.s:g}, {tensor.quant.zp})" if tensor.quant is not None else "")
        raise KilomlError(f"inputs have dtype {x.dtype}; the model input {tensor.name!r} is "
                          f"{tensor.dtype}{hint}", file=path)
    return x
