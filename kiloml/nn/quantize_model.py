"""A float model file and calibration inputs -> the int8 graph, and what quantization cost.

Shared by ``kiloml model quantize`` (writes the int8 .tflite) and ``kiloml model compile
--calibration`` (compiles it). The int8 model reads what the float model reads: an ONNX
model's inputs keep the ONNX layout (a ``[1, C, W]`` input is moved to the IR's NHWC by
a TRANSPOSE in front of the network, kiloml.nn.input_layout), so the same X.npy runs
both. Calibration inputs are the ones ``model run`` takes (``load_inputs``): float32,
``[N, ...input shape]``, N >= 1, finite.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kiloml.errors import KilomlError
from kiloml.nn.graph import Graph
from kiloml.nn.quantize import (
    CalibrationMethod,
    dequantize_output,
    quantize_graph,
    quantize_input,
)
from kiloml.nn.reference import Interpreter
from kiloml.npyfile import read_npy_array

WIDE_INPUT_RATIO = 20.0  # input features whose spreads differ more share one int8 scale badly


@dataclass
class QuantizedModel:
    graph: Graph  # int8, its input in the model file's own layout
    float_graph: Graph  # the float graph with the same input layout
    n_calibration: int
    report: dict = field(default_factory=dict)


def is_float_model(graph: Graph) -> bool:
    """No int8 activation anywhere (a float model kiloml can quantize)."""
    return not graph.is_quantized and not any(
        graph.tensors[i].dtype == "int8" for op in graph.ops for i in op.outputs)


def with_declared_input(graph: Graph, model: Path) -> Graph:
    """The graph reading the input as the model file declares it (an ONNX model's NCHW /
    NCW input, which the IR holds NHWC)."""
    if Path(model).suffix.lower() != ".onnx":
        return graph
    from kiloml.nn.input_layout import match_input
    from kiloml.nn.onnx_import import onnx_input_layout

    layout = onnx_input_layout(graph)[0]
    if layout.is_identity:
        return graph
    adapted, _ = match_input(graph, layout.onnx_shape[1:], what="inputs",
                             setting="channels_last", declared_shape=layout.onnx_shape,
                             to_ir=layout.to_ir)
    return adapted


def load_calibration(path: Path, graph: Graph) -> np.ndarray:
    """Calibration inputs for ``graph`` (already in the declared layout): float32,
    [N, ...input shape] (or one sample without N), N >= 1, every value finite."""
    from kiloml.nn.load import load_inputs

    x = load_inputs(path, graph)
    bad = ~np.isfinite(x)
    if bad.any():
        at = np.argwhere(bad)[0].tolist()
        raise KilomlError(f"calibration value {float(x[tuple(at)])} at index {at} is not "
                          "finite; calibration needs real input values", file=path)
    return x


def load_labels(path: Path, n: int, n_outputs: int) -> np.ndarray:
    """Integer class labels [n] in [0, n_outputs)."""
    y = read_npy_array(path)
    if y.dtype.kind not in "iu":
        raise KilomlError(f"labels have dtype {y.dtype}; integer class indices are needed",
                          file=path)
    y = y.reshape(-1) if y.ndim == 2 and 1 in y.shape else y
    if y.shape != (n,):
        raise KilomlError(f"labels have shape {list(y.shape)}; the calibration inputs hold "
                          f"{n} samples, so [{n}] labels are needed", file=path)
    if y.min(initial=0) < 0 or y.max(initial=0) >= n_outputs:
        raise KilomlError(f"labels range from {int(y.min())} to {int(y.max())}; the model "
                          f"has {n_outputs} outputs (classes 0 to {n_outputs - 1})", file=path)
    return y.astype(np.int64)


def quantize_file(model: Path, calibration: Path, *, labels: Path | None = None,
                  method: CalibrationMethod = "minmax", percentile: float = 99.99
                  ) -> QuantizedModel:
    """Load, check and quantize ``model`` on the inputs in ``calibration``."""
    from kiloml.nn.load import load_model

    model = Path(model)
    graph = load_model(model)
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise KilomlError(f"the model has {len(graph.inputs)} inputs and "
                          f"{len(graph.outputs)} outputs; one of each is supported here",
                          file=model)
    if not is_float_model(graph):
        raise KilomlError("the model is int8 already; there is nothing to quantize (compile "
                          "or run it as it is)", file=model)
    graph = with_declared_input(graph, model)
    x = load_calibration(Path(calibration), graph)
    q = quantize_graph(graph, [x], method=method, percentile=percentile)
    q.name = graph.name
    result = QuantizedModel(q, graph, len(x))
    result.report = quantization_report(graph, q, x, method)
    if labels is not None:
        n_out = graph.output_tensors[0].shape[-1]
        y = load_labels(Path(labels), len(x), n_out)
        result.report.update(accuracy_report(graph, q, x, y))
    return result


def _outputs(graph: Graph, int8: Graph, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(all="ignore"):
        f = Interpreter(graph).run([x])[0].reshape(len(x), -1).astype(np.float64)
    t_in, t_out = int8.input_tensors[0], int8.output_tensors[0]
    raw = Interpreter(int8).run([quantize_input(x, t_in)])[0].reshape(len(x), -1)
    return f, dequantize_output(raw, t_out).astype(np.float64)


def quantization_report(graph: Graph, int8: Graph, x: np.ndarray,
                        method: CalibrationMethod) -> dict:
    """Agreement of the int8 arg-max with the float one on the calibration inputs, the
    largest output difference, and a warning when the input's features span very
    different ranges under the one int8 input scale."""
    f, q = _outputs(graph, int8, x)
    out: dict = {"calibration_samples": len(x), "calibration_method": method,
                 "max_abs_output_diff": float(np.abs(f - q).max(initial=0.0)),
                 "output_range": float(np.abs(f).max(initial=0.0))}
    if f.shape[1] > 1:
        out["int8_float_agreement"] = float(np.mean(f.argmax(1) == q.argmax(1)))
    t_in = int8.input_tensors[0]
    k = t_in.shape[-1] if len(t_in.shape) > 1 else 1
    spread = np.ptp(x.reshape(-1, k).astype(np.float64), axis=0) if k > 1 else None
    if spread is not None and spread.max() > 0:
        narrow = float(spread[spread > 0].min()) if (spread > 0).any() else 0.0
        ratio = float(spread.max() / narrow) if narrow > 0 else float("inf")
        out["input_scale"] = float(t_in.quant.s)
        out["input_spread_ratio"] = ratio
        if ratio > WIDE_INPUT_RATIO:
            levels = narrow / float(t_in.quant.s)
            out["warnings"] = [
                f"the input's {k} features (last axis) span ranges {ratio:.0f}x apart under "
                f"one int8 scale ({t_in.quant.s:.4g}): the narrowest gets {levels:.1f} int8 "
                f"levels. Standardize them per feature before the network (a kiloml project "
                f"does: [model] kind = 'imported' folds it into the first layer)"]
    return out


def accuracy_report(graph: Graph, int8: Graph, x: np.ndarray, y: np.ndarray) -> dict:
    f, q = _outputs(graph, int8, x)
    fa, qa = float(np.mean(f.argmax(1) == y)), float(np.mean(q.argmax(1) == y))
    return {"float_accuracy": fa, "int8_accuracy": qa,
            "int8_minus_float_points": round(100 * (qa - fa), 2)}
