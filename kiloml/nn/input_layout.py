"""A user's model input matched to the project's samples.

A project hands the model one sample at a time in its own element order: a window
``[T, C]`` (samples, channels; time-major, channels inner), a feature vector ``[F]``,
or a time-frequency image ``[frames, coefficients]``. A model file may declare the same
values with extra unit dimensions (``[1, 1, T, C]``), channels first (PyTorch's
``[1, C, T]``, an NCHW ``[1, C, T, 1]``) or flattened (``[1, T * C]``), and an ONNX
model's input is held in the IR in NHWC (``read_onnx`` moves a ``[1, C, T]`` input to
``[1, 1, T, C]``).

``match_input`` compares the shape the model *declares* (the ONNX shape for .onnx, the
tensor's shape for .tflite) with the sample, ignoring unit dimensions:

- the same sizes in the same order: the sample as it is (channels last);
- the two sizes of a 2-D sample swapped: the sample transposed (channels first);
- one dimension of ``T * C`` values, or a square sample (``T == C``): both orders fit,
  so the setting ``[model] input_layout`` must say which (one line naming both shapes
  and the setting otherwise);
- anything else: one line naming both shapes.

It returns the graph with a RESHAPE (and a TRANSPOSE when the element order differs) in
front, so the graph's input is exactly ``[1, *sample_shape]`` in the sample's own order:
everything after it (standardization, quantization, the C code, TFLM) sees the sample
as the project computes it. The ops added only move bytes (their int8 quantization is
the input's).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from kiloml.nn.graph import Graph, Tensor

InputLayout = Literal["channels_last", "channels_first"]
LAYOUT_SETTING = "[model] input_layout"


class InputMismatch(ValueError):
    """The model input cannot be matched to the samples (message: one line, both shapes)."""


@dataclass(frozen=True)
class InputMatch:
    """How the samples reach the model: ``layout`` (the element order the model reads) and
    whether the order was decided by the setting."""

    layout: InputLayout
    from_setting: bool
    declared_shape: tuple[int, ...]


def _non_unit(shape: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(d) for d in shape if int(d) != 1)


def _fmt(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(int(d)) for d in shape) + "]"


def candidate_layouts(declared: Sequence[int], sample_shape: Sequence[int]
                      ) -> list[InputLayout]:
    """The element orders in which the sample fills a model input declared as ``declared``
    (batch first): [] when none, two when the shape alone cannot tell."""
    have = _non_unit(declared[1:])
    sample = tuple(int(d) for d in sample_shape)
    if math.prod(have) != math.prod(sample):
        return []
    core = _non_unit(sample)
    if len(core) <= 1:
        # one dimension of size > 1: every order is the same order
        return ["channels_last"] if len(have) <= 1 else []
    if len(sample) != 2:  # a rank-3+ sample: only its own order is meaningful
        return ["channels_last"] if have == core else []
    t, c = sample
    out: list[InputLayout] = []
    if have == (t, c) or len(have) == 1:
        out.append("channels_last")
    if have == (c, t) or len(have) == 1:
        out.append("channels_first")
    return out


def sample_to_declared(x: np.ndarray, layout: InputLayout, declared: Sequence[int]
                       ) -> np.ndarray:
    """Samples [N, *sample_shape] -> the model's declared layout [N, *declared[1:]]."""
    x = np.asarray(x)
    if layout == "channels_first" and x.ndim == 3:
        x = np.swapaxes(x, 1, 2)
    return np.ascontiguousarray(x).reshape(len(x), *(int(d) for d in declared[1:]))


def match_input(graph: Graph, sample_shape: Sequence[int], *, what: str,
                setting: InputLayout | None = None,
                declared_shape: Sequence[int] | None = None,
                to_ir=None) -> tuple[Graph, InputMatch]:
    """``graph`` with its single input taking ``[1, *sample_shape]`` in the sample's order.

    ``declared_shape`` is the shape the model file declares (default: the IR input's),
    ``to_ir`` maps arrays in that shape to the IR's (an ONNX model's
    ``OnnxLayout.to_ir``; default: identity). ``what`` names the samples in messages
    ("windows [samples, channels]", "features"). Raises InputMismatch."""
    t_in = graph.input_tensors[0]
    ir_shape = tuple(t_in.shape)
    declared = tuple(int(d) for d in (declared_shape if declared_shape is not None
                                      else ir_shape))
    sample = tuple(int(d) for d in sample_shape)
    want = (1, *sample)
    fits = candidate_layouts(declared, sample)
    named = f"model input {t_in.name!r} has shape {_fmt(declared)}; the project's {what} " \
            f"are {_fmt(want)}"
    if not fits:
        raise InputMismatch(named + _no_fit_hint(declared, sample))
    if setting is not None:
        if setting not in fits:
            other = fits[0]
            raise InputMismatch(
                f"{named}: {LAYOUT_SETTING} = '{setting}' reads them as "
                f"{_fmt(_as(sample, setting))} but the model's shape fits '{other}' "
                f"({_fmt(_as(sample, other))}); set {LAYOUT_SETTING} = '{other}' or remove it")
        layout, chosen = setting, True
    elif len(fits) > 1:
        a, b = (_fmt(_as(sample, f)) for f in fits)
        raise InputMismatch(
            f"{named}: the model's shape fits both {a} (channels last) and {b} (channels "
            f"first); set {LAYOUT_SETTING} = 'channels_last' or 'channels_first' to say "
            "which order it reads")
    else:
        layout, chosen = fits[0], False
    order = _ir_order(sample, layout, declared, to_ir)
    adapted = _prepend(graph, sample, order, ir_shape)
    return adapted, InputMatch(layout, chosen, declared)


def _as(sample: tuple[int, ...], layout: InputLayout) -> tuple[int, ...]:
    return tuple(reversed(sample)) if layout == "channels_first" and len(sample) == 2 \
        else sample


def _no_fit_hint(declared: tuple[int, ...], sample: tuple[int, ...]) -> str:
    have = _non_unit(declared[1:])
    if len(sample) == 2 and len(have) == 2 and set(have) & set(sample):
        t, c = sample
        if c in have and t not in have:
            other = have[0] if have[1] == c else have[1]
            return (f" (windows of {other} samples: change [window] window_ms, or export "
                    f"the model for {t} samples)")
        if t in have and c not in have:
            other = have[0] if have[1] == t else have[1]
            return (f" (the model reads {other} channels, the data has {c}: choose them "
                    "with [data] channels)")
    if len(sample) == 1:
        return " (the [[features]] stages make that many; export the model for them)"
    return ""


def _ir_order(sample: tuple[int, ...], layout: InputLayout, declared: tuple[int, ...],
              to_ir) -> np.ndarray:
    """The sample element (flat index) each IR input element holds, in IR memory order."""
    index = np.arange(math.prod(sample), dtype=np.int64).reshape(1, *sample)
    arr = sample_to_declared(index, layout, declared)
    if to_ir is not None:
        arr = to_ir(arr)
    return np.asarray(arr).reshape(-1).astype(np.int64)


def _prepend(graph: Graph, sample: tuple[int, ...], order: np.ndarray,
             ir_shape: tuple[int, ...]) -> Graph:
    n = order.size
    identity = np.array_equal(order, np.arange(n))
    transposed = len(sample) == 2 and np.array_equal(
        order, np.arange(n).reshape(sample).T.reshape(-1))
    if not identity and not transposed:  # no layout kiloml knows maps this way
        raise InputMismatch(f"the model input's element order is neither the samples' "
                            f"{_fmt(sample)} nor its transpose")
    want = (1, *sample)
    if identity and tuple(ir_shape) == want:
        return graph
    g = copy.deepcopy(graph)
    old = g.inputs[0]
    t = g.tensors[old]
    names = {x.name for x in g.tensors}
    # the new input keeps the model's input name; the tensor the network read is renamed
    base = t.name
    t.name = _fresh(f"{base}/{'nhwc' if len(ir_shape) == 4 else 'model'}", names)
    # (op, its constant parameter, output shape); the last step writes the old input,
    # so every op after the adapter is unchanged
    steps: list[tuple[str, np.ndarray, tuple[int, ...]]] = []
    if transposed:
        steps.append(("TRANSPOSE", np.array([0, 2, 1], np.int32), (1, sample[1], sample[0])))
    shape_now = steps[-1][2] if steps else want
    if tuple(shape_now) != tuple(ir_shape):
        steps.append(("RESHAPE", np.array(ir_shape, np.int32), tuple(ir_shape)))
    current = g.add_tensor(Tensor(base, want, t.dtype, copy.deepcopy(t.quant)))
    new_input = current
    taken = {op.name for op in g.ops}
    front = []
    for k, (kind, param, shape) in enumerate(steps):
        p = g.add_tensor(Tensor(_fresh(f"{base}/{kind.lower()}_param", names), param.shape,
                                "int32", data=param))
        out = old if k == len(steps) - 1 else g.add_tensor(
            Tensor(_fresh(f"{base}/{kind.lower()}", names), shape, t.dtype,
                   copy.deepcopy(t.quant)))
        g.add_op(kind, [current, p], [out], name=_fresh(f"kiloml_input_{kind.lower()}", taken))
        front.append(g.ops.pop())
        current = out
    g.ops = front + g.ops
    g.inputs = [new_input]
    return g.prune()


def _fresh(name: str, taken: set[str]) -> str:
    out, k = name, 2
    while out in taken:
        out, k = f"{name}#{k}", k + 1
    taken.add(out)
    return out
