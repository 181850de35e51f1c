"""Constant folding for imported TFLite graphs.

The TensorFlow converter and litert-torch wrap Flatten and Conv1D in small
shape computations (``SHAPE -> STRIDED_SLICE -> PACK -> RESHAPE``, ``GATHER`` /
``CAST`` / ``CONCATENATION`` of constant shape vectors) whenever the batch size
is dynamic. kiloml's shapes are static (batch 1), so these ops are evaluated
here with numpy and removed; the RESHAPE they fed is left with a constant shape.

Only unquantized operands are folded: quantized constants are weights, and
re-expressing them is the quantizer's business, not the importer's.
"""

from __future__ import annotations

import numpy as np

from kiloml.nn.graph import Graph, Op, Tensor

# Ops evaluated when their inputs are known. SHAPE only needs its input's
# static shape; the others need constant data.
FOLDABLE = frozenset({
    "SHAPE", "STRIDED_SLICE", "PACK", "CONCATENATION", "GATHER", "CAST",
    "RESHAPE", "SQUEEZE", "EXPAND_DIMS",
})


class FoldError(Exception):
    """An op that looked foldable cannot be evaluated (bad constant values)."""

    def __init__(self, op_index: int, op: Op, output: str, message: str) -> None:
        super().__init__(message)
        self.op_index = op_index  # position in the op list given to fold_constants
        self.kind = op.kind
        self.output = output
        self.message = message


def fold_constants(graph: Graph) -> list[int]:
    """Evaluate foldable ops in place and drop them.

    Returns the positions (in the op list as given) of the ops that remain, so
    the caller can still name operators by their index in the file. Dead
    tensors are left for ``graph.prune()``.
    """
    graph_outputs = set(graph.outputs)
    kept: list[int] = []
    computed: set[int] = set()  # tensors whose value was produced by folding
    for i, op in enumerate(graph.ops):
        if not _foldable(graph, op, graph_outputs):
            kept.append(i)
            continue
        try:
            value = _evaluate(graph, op)
            _store(graph.tensors[op.outputs[0]], value)
        except Exception as exc:  # the constants come from a user's file: anything can fail
            raise FoldError(i, op, graph.tensors[op.outputs[0]].name,
                            f"cannot evaluate constant {op.kind}: {exc}") from None
        computed.add(op.outputs[0])
    graph.ops = [graph.ops[i] for i in kept]
    for pos, op in zip(kept, graph.ops, strict=True):
        if op.kind == "RESHAPE" and len(op.inputs) == 2 and op.inputs[1] in computed:
            try:
                _settle_reshape(graph, op)
            except ValueError as exc:
                raise FoldError(pos, op, graph.tensors[op.outputs[0]].name, str(exc)) from None
    return kept


def _foldable(graph: Graph, op: Op, graph_outputs: set[int]) -> bool:
    if op.kind not in FOLDABLE or len(op.outputs) != 1 or op.outputs[0] in graph_outputs:
        return False
    out = graph.tensors[op.outputs[0]]
    if out.quant is not None:
        return False
    ins = [graph.tensors[t] for t in op.inputs if t >= 0]
    if not ins:
        return False
    if op.kind == "SHAPE":
        return True
    if op.kind == "CONCATENATION" and op.options.get("fused_activation", "NONE") != "NONE":
        return False
    return all(t.is_constant and t.quant is None for t in ins)


def _evaluate(graph: Graph, op: Op) -> np.ndarray:
    t = graph.tensors
    values = [t[i].data for i in op.inputs if i >= 0]
    out = t[op.outputs[0]]
    kind, opts = op.kind, op.options
    if kind == "SHAPE":
        return np.array(t[op.inputs[0]].shape, dtype=np.int64)
    if kind == "STRIDED_SLICE":
        if len(values) != 4:
            raise ValueError("needs input, begin, end and strides")
        return _strided_slice(*values, opts)
    if kind == "PACK":
        return np.stack(values, axis=int(opts.get("axis", 0)))
    if kind == "CONCATENATION":
        return np.concatenate([np.atleast_1d(v) for v in values], axis=int(opts.get("axis", 0)))
    if kind == "GATHER":
        if int(opts.get("batch_dims", 0)) != 0:
            raise ValueError("batch_dims is not supported")
        params, indices = values[0], values[1]
        axis = int(opts.get("axis", 0))
        dim = params.shape[axis]
        if np.any((indices < 0) | (indices >= dim)):
            raise ValueError(f"index out of range for a dimension of {dim}")
        return np.take(params, indices, axis=axis)
    if kind == "CAST":
        return values[0].astype(out.dtype)
    # RESHAPE / SQUEEZE / EXPAND_DIMS of a constant: the output tensor has the shape.
    if values[0].size != out.size:
        raise ValueError(f"{values[0].size} elements cannot become shape {list(out.shape)}")
    return values[0].reshape(out.shape)


def _strided_slice(data: np.ndarray, begin: np.ndarray, end: np.ndarray, strides: np.ndarray,
                   opts: dict[str, object]) -> np.ndarray:
    """TFLite STRIDED_SLICE without ellipsis / new-axis masks (never seen in shape code)."""
    if int(opts.get("ellipsis_mask", 0)) or int(opts.get("new_axis_mask", 0)):
        raise ValueError("ellipsis and new-axis masks are not supported")
    begin, end, strides = (np.atleast_1d(v).astype(np.int64).tolist()
                           for v in (begin, end, strides))
    if not len(begin) == len(end) == len(strides) <= data.ndim:
        raise ValueError("begin, end and strides must have one entry per sliced dimension")
    begin_mask = int(opts.get("begin_mask", 0))
    end_mask = int(opts.get("end_mask", 0))
    shrink_mask = int(opts.get("shrink_axis_mask", 0))
    offset = bool(opts.get("offset", False))
    index: list[int | slice] = []
    for d, (b, e, s) in enumerate(zip(begin, end, strides, strict=True)):
        if shrink_mask >> d & 1:
            n = data.shape[d]
            if not -n <= b < n:
                raise ValueError(f"index {b} out of range for a dimension of {n}")
            index.append(b)
            continue
        if s == 0:
            raise ValueError("stride 0")
        start = None if begin_mask >> d & 1 else b
        stop = None if end_mask >> d & 1 else (b + e if offset else e)
        index.append(slice(start, stop, s))
    return np.asarray(data[tuple(index)])


def _store(out: Tensor, value: np.ndarray) -> None:
    value = np.asarray(value).astype(out.dtype)
    # The file's shape may be the dynamic one the converter guessed; the value wins.
    out.shape = out.shape if value.size == out.size and out.shape else tuple(value.shape)
    out.data = value.reshape(out.shape)


def _settle_reshape(graph: Graph, op: Op) -> None:
    """Give a RESHAPE whose shape was computed the explicit (static) output shape."""
    shape_t = graph.tensors[op.inputs[1]]
    src, out = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    shape = [int(v) for v in np.ravel(shape_t.data)]
    if shape.count(-1) > 1 or any(v < -1 for v in shape):
        raise ValueError(f"RESHAPE to {shape}: invalid shape")
    if -1 in shape:
        known = int(np.prod([v for v in shape if v != -1], dtype=np.int64))
        if known == 0 or src.size % known:
            raise ValueError(f"RESHAPE of {src.size} elements to {shape}: does not divide")
        shape[shape.index(-1)] = src.size // known
    if int(np.prod(shape, dtype=np.int64)) != src.size or tuple(shape) != out.shape:
        raise ValueError(f"RESHAPE of {list(src.shape)} to {shape} does not match its "
                         f"output tensor shape {list(out.shape)}")
    op.inputs[1] = graph.add_tensor(Tensor(shape_t.name, (len(shape),), "int32",
                                           data=np.array(shape, np.int32)))
