"""Import float32 ONNX models (PyTorch, tf2onnx, skl2onnx exports) into the graph IR.

``read_onnx(path)`` returns a float32 :class:`~kiloml.nn.graph.Graph`. The IR is
TFLite-shaped (NHWC activations, OHWI weights), ONNX is channels-first, so the
importer tracks, for every ONNX value, which ONNX axis each IR axis holds
(``axes``; ``None`` marks a unit axis the IR inserted, e.g. the H of a 1-D
convolution's ``[N, 1, W, C]``). A Transpose therefore costs nothing: it only
relabels axes, and an error is raised only where an operator would need the
data physically reordered (a Transpose that does not undo a layout change).
Flattening a channels-last activation keeps the IR's NHWC order and remembers
the feature permutation, which the next Gemm/MatMul folds into its weight
columns, so the IR computes exactly what the ONNX model computes.

Graph inputs: rank 2 ``[N, F]`` stays as is; rank 3 ``[N, C, W]`` becomes
``[N, 1, W, C]`` and rank 4 ``[N, C, H, W]`` becomes ``[N, H, W, C]``. When that
choice cannot work (a tf2onnx model whose input already is ``[N, W, C]`` and is
transposed to channels-first inside the graph) the import is retried with the
input taken as channels-last (``[N, W, C] -> [N, 1, W, C]``). A symbolic batch
dimension becomes 1. The mapping of every graph input and output is stored in
``graph.description``; read it with :func:`onnx_input_layout` /
:func:`onnx_output_layout`, whose :meth:`OnnxLayout.to_ir` /
:meth:`OnnxLayout.from_ir` convert arrays (any batch size) between the layouts.

skl2onnx classifiers: the probability output is kept (ZipMap's input when the
output is a ZipMap), label outputs (ArgMax/ArrayFeatureExtractor/Cast, any
non-float output) are dropped.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kiloml.errors import KilomlError
from kiloml.nn.graph import Graph, Op, Tensor
from kiloml.nn.onnx_checks import Attributes, check_model_limits, inline_external_data
from kiloml.nn.validate import MAX_TENSOR_ELEMENTS
from kiloml.optional import needs

Axes = tuple[int | None, ...]
Value = Any  # _Act | np.ndarray | None (ONNX values: activations or folded constants)

_LAYOUT_TAG = "onnx-layout: "
MAX_FILE_BYTES = 256 << 20
_QUANT_MESSAGE = ("quantized ONNX models (QuantizeLinear/DequantizeLinear) are not supported; "
                  "import the float model")
_N1_TO_1 = "_RELU_N1_TO_1"  # placeholder op: exists only until it is fused into its producer
_FUSE_INTO = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "MUL")
_ACTIVATION_OPS = {"RELU": "RELU", "RELU6": "RELU6", _N1_TO_1: "RELU_N1_TO_1"}


# ---- public layout description ------------------------------------------------

@dataclass(frozen=True)
class OnnxLayout:
    """How one ONNX graph input or output maps to its IR tensor.

    ``axes[i]`` is the ONNX axis held by IR axis ``i`` (``None``: a unit axis the
    IR adds). ``feature_order`` (outputs of rank 2 only) says that IR feature
    ``j`` is ONNX feature ``feature_order[j]``.
    """

    name: str
    onnx_shape: tuple[int, ...]
    ir_shape: tuple[int, ...]
    axes: Axes
    feature_order: tuple[int, ...] | None = None

    @property
    def is_identity(self) -> bool:
        return self.axes == tuple(range(len(self.onnx_shape))) and self.feature_order is None

    def to_ir(self, x: np.ndarray) -> np.ndarray:
        """An array in the ONNX layout ``[N, ...]`` -> the IR layout (float32; integer
        arrays, such as element indices, keep their dtype)."""
        x = np.asarray(x)
        if not np.issubdtype(x.dtype, np.integer):
            x = x.astype(np.float32)
        if x.ndim != len(self.onnx_shape):
            raise ValueError(f"{self.name}: expected rank {len(self.onnx_shape)}, got {x.shape}")
        y = _to_ir_array(x, self.axes)
        if self.feature_order is not None:
            y = y[..., list(self.feature_order)]
        return np.ascontiguousarray(y)

    def from_ir(self, y: np.ndarray) -> np.ndarray:
        """An array in the IR layout ``[N, ...]`` -> the ONNX layout."""
        y = np.asarray(y)
        if self.feature_order is not None:
            out = np.empty_like(y)
            out[..., list(self.feature_order)] = y
            y = out
        y = y.squeeze(axis=tuple(i for i, a in enumerate(self.axes) if a is None))
        kept = [a for a in self.axes if a is not None]
        return np.ascontiguousarray(np.transpose(y, np.argsort(kept)))

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "onnx_shape": list(self.onnx_shape),
                "ir_shape": list(self.ir_shape),
                "axes": [-1 if a is None else a for a in self.axes],
                "feature_order": None if self.feature_order is None else list(self.feature_order)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> OnnxLayout:
        order = d.get("feature_order")
        return cls(str(d["name"]), tuple(d["onnx_shape"]), tuple(d["ir_shape"]),
                   tuple(None if a < 0 else int(a) for a in d["axes"]),
                   None if order is None else tuple(int(i) for i in order))


def _layouts(graph: Graph, key: str) -> list[OnnxLayout]:
    for line in reversed(graph.description.splitlines()):
        if line.startswith(_LAYOUT_TAG):
            data = json.loads(line[len(_LAYOUT_TAG):])
            return [OnnxLayout.from_json(d) for d in data[key]]
    raise ValueError(f"graph {graph.name!r} was not imported from ONNX (no layout record)")


def onnx_input_layout(graph: Graph) -> list[OnnxLayout]:
    """Per graph input (in order): how to turn an ONNX-layout input into the IR's."""
    return _layouts(graph, "inputs")


def onnx_output_layout(graph: Graph) -> list[OnnxLayout]:
    """Per graph output (in order): how to turn an IR output back into ONNX's layout."""
    return _layouts(graph, "outputs")


# ---- layout helpers -------------------------------------------------------------

def _ir_shape(shape: Sequence[int], axes: Axes) -> tuple[int, ...]:
    return tuple(1 if a is None else int(shape[a]) for a in axes)


def _to_ir_array(x: np.ndarray, axes: Axes) -> np.ndarray:
    """Transpose an ONNX-layout array into ``axes`` order and insert the unit axes."""
    y = np.transpose(x, [a for a in axes if a is not None])
    return y.reshape(_ir_shape(x.shape, axes))


def _data_order(shape: Sequence[int], axes: Axes) -> list[int]:
    """The ONNX axes of size > 1 in IR memory order: equal lists mean equal bytes."""
    return [a for a in axes if a is not None and shape[a] != 1]


def _identity(rank: int) -> Axes:
    return tuple(range(rank))


def _channels_first(rank: int) -> Axes:
    """The IR layout of an ONNX channels-first activation: NCW -> N1WC, NCHW -> NHWC."""
    if rank == 3:
        return (0, None, 2, 1)
    if rank == 4:
        return (0, 2, 3, 1)
    return _identity(rank)


def _channels_last(rank: int) -> Axes:
    """An ONNX input that is already channels-last: NWC -> N1WC, NHWC unchanged."""
    return (0, None, 1, 2) if rank == 3 else _identity(rank)


def _same_pads(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TFLite SAME padding (the odd pixel goes after, as in ONNX SAME_UPPER)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


@dataclass(eq=False)
class _Act:
    """An ONNX activation: its IR tensor and how the IR lays out the ONNX axes."""

    index: int
    shape: tuple[int, ...]  # the ONNX shape (batch fixed)
    axes: Axes
    order: np.ndarray | None = None  # rank 2: IR feature j is ONNX feature order[j]
    origin: str = ""  # the node that relabelled the axes last (for error messages)


class _LayoutError(KilomlError):
    """The IR would need a real transpose (the importer may retry another input layout)."""


# ---- loading and validation -------------------------------------------------------

def _load(path: Path) -> Any:
    with needs("onnx", "reading .onnx models", file=path):
        import onnx
    if not path.is_file():
        raise KilomlError("model file not found", file=path)
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise KilomlError(f"the file has {size:,} bytes; kiloml reads models of at most "
                          f"{MAX_FILE_BYTES:,}", file=path)
    try:
        # never onnx's load_external_data (it follows any path): inline_external_data
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError and the like, on any bytes
        raise KilomlError(f"not a valid .onnx file: {_reason(exc)}", file=path) from None
    if not model.graph.node or not model.graph.output:
        raise KilomlError("not a valid .onnx file: the file holds no graph", file=path)
    inline_external_data(model, path)  # torch.onnx.export's default: model.onnx.data
    check_model_limits(model, path)
    try:
        # full_check adds strict type and shape inference: the parts kiloml does not import
        # (a classifier's label path) must be valid too
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # checker ValidationError (its C++ may raise others)
        node = _NODE_ERROR.search(str(exc))
        if node:  # "(op_type:Conv, node name: c1): [ShapeInferenceError] ..." -> node + reason
            raise KilomlError(f"{node['reason'].strip()} (onnx checker)", file=path,
                              where=f"node '{node['name']}' ({node['op']})") from None
        raise KilomlError(f"not a valid .onnx file: {_reason(exc)}", file=path) from None
    return model


def load_onnx_model(path: str | Path) -> Any:
    """The ModelProto of ``path`` after every check ``read_onnx`` makes before importing
    (size, external data beside the model, limits, onnx's full checker): for readers of
    other ONNX operators (kiloml.models.onnx_trees)."""
    return _load(Path(path))


_NODE_ERROR = re.compile(r"\(op_type:(?P<op>[^,]*), node name: (?P<name>[^)]*)\): "
                         r"(?:\[\w+\] )?(?P<reason>[^\n]*)")


def _reason(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _attrs(node: Any) -> dict[str, Any]:
    with needs("onnx", "reading .onnx models"):
        import onnx

    out = {}
    for a in node.attribute:
        v = onnx.helper.get_attribute_value(a)
        out[a.name] = v.decode("utf-8", errors="replace") if isinstance(v, bytes) else v
    return out


def _is_quant_op(op_type: str) -> bool:
    return (op_type in ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear")
            or op_type.startswith("QLinear") or op_type.endswith("Integer"))


# ---- constant folding ----------------------------------------------------------

def _axes_arg(node: Any, ins: list[Value], attrs: dict[str, Any], k: int = 1) -> list[int] | None:
    """``axes`` from an attribute (old opsets) or from input ``k`` (new opsets)."""
    if "axes" in attrs:
        return [int(a) for a in attrs["axes"]]
    if len(ins) > k and ins[k] is not None:
        return [int(a) for a in np.atleast_1d(ins[k])]
    return None


def _resolve_reshape(shape: Sequence[int], target: Sequence[int],
                     allowzero: bool) -> tuple[int, ...]:
    """ONNX Reshape semantics: 0 copies the input dimension (unless allowzero), -1 infers."""
    target = [int(d) for d in target]
    if target.count(-1) > 1 or any(d < -1 for d in target):
        raise ValueError(f"target shape {target}: at most one -1 and no other negative size")
    if not allowzero and any(d == 0 and i >= len(shape) for i, d in enumerate(target)):
        raise ValueError(f"target shape {target}: a 0 copies an input dimension, the input "
                         f"{list(shape)} has {len(shape)}")
    out = [int(shape[i]) if (d == 0 and not allowzero) else d for i, d in enumerate(target)]
    total = math.prod(int(d) for d in shape)
    if out.count(-1) == 1:
        known = math.prod(d for d in out if d != -1)
        if known == 0 or total % known:
            raise ValueError(f"cannot reshape {list(shape)} to {target}")
        out[out.index(-1)] = total // known
    if math.prod(out) != total:
        raise ValueError(f"cannot reshape {list(shape)} to {target}")
    return tuple(out)


def _check_fold_size(op: str, ins: list[Value]) -> None:
    """Operators on constants whose output size comes from a value, not an input's size:
    bounded before they allocate."""
    def ints(k: int) -> list[int]:
        return [int(v) for v in np.ravel(ins[k])] if len(ins) > k and ins[k] is not None else []

    count = None
    if op == "ConstantOfShape":
        count = math.prod(max(d, 0) for d in ints(0))
    elif op == "Expand":
        count = math.prod(max(d, 1) for d in ints(1)) * max(np.size(ins[0]), 1)
    elif op == "Tile":
        count = math.prod(max(d, 0) for d in ints(1)) * np.size(ins[0])
    elif op == "Range" and len(ins) == 3:
        start, limit, delta = (float(np.ravel(v)[0]) for v in ins)
        count = math.ceil((limit - start) / delta) if delta and math.isfinite(
            (limit - start) / delta) else MAX_TENSOR_ELEMENTS + 1
    if count is not None and count > MAX_TENSOR_ELEMENTS:
        raise ValueError(f"the result would have {count:,} elements")


def _fold(node: Any, ins: list[Value], opset: int) -> list[np.ndarray]:
    """Evaluate a node whose inputs are all constants."""
    with needs("onnx", "reading .onnx models"):
        import onnx
        from onnx import numpy_helper

    op, a = node.op_type, _attrs(node)
    x = ins[0] if ins else None
    _check_fold_size(op, ins)
    if op == "Constant":
        if "value" in a:
            return [numpy_helper.to_array(a["value"])]
        for key, dtype in (("value_float", np.float32), ("value_floats", np.float32),
                           ("value_int", np.int64), ("value_ints", np.int64)):
            if key in a:
                return [np.array(a[key], dtype=dtype)]
        raise ValueError("unsupported Constant attribute")
    if op in ("Identity", "Dropout"):
        return [x]
    if op == "Cast":
        return [np.asarray(x).astype(onnx.helper.tensor_dtype_to_np_dtype(a["to"]))]
    if op == "Shape":
        dims = np.array(np.shape(x), np.int64)
        return [dims[a.get("start", 0):a.get("end", len(dims))]]
    if op == "Size":
        return [np.array(np.size(x), np.int64)]
    if op == "Unsqueeze":
        axes = _axes_arg(node, ins, a) or []
        rank = np.ndim(x) + len(axes)
        out = np.asarray(x)
        for ax in sorted(ax % rank for ax in axes):
            out = np.expand_dims(out, ax)
        return [out]
    if op == "Squeeze":
        axes = _axes_arg(node, ins, a)
        return [np.squeeze(x) if axes is None else np.squeeze(x, axis=tuple(axes))]
    if op == "Concat":
        return [np.concatenate([np.atleast_1d(v) for v in ins if v is not None],
                               axis=a["axis"])]
    if op == "Gather":
        return [np.take(x, np.asarray(ins[1], np.int64), axis=a.get("axis", 0))]
    if op == "Reshape":
        return [np.reshape(x, _resolve_reshape(np.shape(x), ins[1],
                                               bool(a.get("allowzero", 0))))]
    if op == "Transpose":
        return [np.transpose(x, a.get("perm"))]
    if op == "ConstantOfShape":
        value = numpy_helper.to_array(a["value"]) if "value" in a else np.zeros(1, np.float32)
        return [np.full(tuple(int(d) for d in x), value.reshape(-1)[0], dtype=value.dtype)]
    if op in ("Add", "Sub", "Mul") and len(ins) == 2:
        fn = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply}[op]
        return [fn(x, ins[1]).astype(np.result_type(x, ins[1]))]
    with needs("onnx", "reading .onnx models"):
        from onnx.reference import ReferenceEvaluator

    evaluator = ReferenceEvaluator(node, opsets={node.domain or "": opset})
    feeds = {name: v for name, v in zip(node.input, ins, strict=False) if name}
    return list(evaluator.run(None, feeds))


# ---- the importer ------------------------------------------------------------------

@dataclass
class _Output:
    onnx_name: str  # the ONNX graph output the IR output stands for
    value_name: str  # the value that carries it (ZipMap's input for a ZipMap output)


@dataclass
class _Importer:
    model: Any
    path: Path
    channels_last_inputs: bool
    g: Graph = field(default_factory=lambda: Graph([], [], [], []))
    values: dict[str, Value] = field(default_factory=dict)
    input_layouts: list[OnnxLayout] = field(default_factory=list)
    node: Any = None  # the node being converted (for error messages)
    opset: int = 13  # of the default domain
    ml_opset: int = 1  # of ai.onnx.ml
    dropped: list[str] = field(default_factory=list)  # label outputs left out

    # ---- errors ---------------------------------------------------------------------
    def _where(self, node: Any = None) -> str | None:
        node = node if node is not None else self.node
        if node is None:
            return None
        return f"node '{node.name or node.output[0]}' ({node.op_type})"

    def error(self, message: str, node: Any = None) -> KilomlError:
        return KilomlError(message, file=self.path, where=self._where(node))

    def attr_error(self, name: str, value: object, why: str) -> KilomlError:
        return self.error(f"attribute {name}={value} is not supported ({why})")

    def attrs(self) -> Attributes:
        """The current node's attributes, checked as they are read."""
        return Attributes(self.node, self.error)

    def _constant_input(self, ins: list[Value], k: int, what: str) -> np.ndarray | None:
        """Input ``k`` as a constant array (None when absent); an activation is an error."""
        v = ins[k] if k < len(ins) else None
        if v is None:
            return None
        if not isinstance(v, np.ndarray):
            raise self.error(f"the {what} (input {k}) must be a constant")
        return v

    def _int_values(self, ins: list[Value], k: int, what: str) -> list[int] | None:
        v = self._constant_input(ins, k, what)
        if v is None:
            return None
        if v.dtype.kind not in "iu":
            raise self.error(f"the {what} (input {k}) must be integers, got {v.dtype}")
        return [int(a) for a in np.ravel(v)]

    def _scalar_input(self, ins: list[Value], k: int, what: str) -> float | None:
        v = self._constant_input(ins, k, what)
        if v is None:
            return None
        if v.size != 1 or v.dtype.kind not in "fiub":
            raise self.error(f"the {what} (input {k}) must be one number, got shape "
                             f"{list(v.shape)} of {v.dtype}")
        return float(v.reshape(-1)[0])

    def _axes(self, ins: list[Value], rank: int, k: int = 1) -> list[int] | None:
        """``axes`` from the attribute (old opsets) or from input ``k`` (new opsets), each in
        [-rank, rank), returned as sorted unique axes >= 0; None when neither is given."""
        a = self.attrs()
        axes = a.ints("axes", None) if "axes" in a else self._int_values(ins, k, "axes")
        if axes is None:
            return None
        if any(not -rank <= ax < rank for ax in axes):
            raise self.attr_error("axes", axes, f"outside [{-rank}, {rank - 1}] for rank {rank}")
        normal = [ax % rank for ax in axes]
        if len(set(normal)) != len(normal):
            raise self.attr_error("axes", axes, "an axis is repeated")
        return sorted(normal)

    def _f32(self, values: np.ndarray, what: str) -> np.ndarray:
        """float32 of computed constants (weights times alpha, folded BatchNorm...): finite."""
        with np.errstate(all="ignore"):
            out = np.asarray(values, np.float64).astype(np.float32)
        if not np.isfinite(out).all():
            raise self.error(f"the {what} is not finite in float32 (NaN, inf or beyond "
                             "3.4e38)")
        return out

    # ---- IR construction ------------------------------------------------------------
    def _const(self, name: str, data: np.ndarray, dtype: str = "float32") -> int:
        data = np.asarray(data, dtype=dtype)
        return self.g.add_tensor(Tensor(name, data.shape, dtype, data=data))

    def _emit(self, kind: str, inputs: list[int], shape: Sequence[int], axes: Axes,
              name: str, order: np.ndarray | None = None, **options: object) -> _Act:
        """Add an op writing a new float32 tensor for an ONNX value of ``shape``."""
        if any(int(d) < 1 for d in shape) or math.prod(int(d) for d in shape) > \
                MAX_TENSOR_ELEMENTS:
            raise self.error(f"the output '{name}' would have shape {list(shape)}; kiloml "
                             f"needs sizes of at least 1 and at most {MAX_TENSOR_ELEMENTS:,} "
                             "elements")
        out = self.g.add_tensor(Tensor(name, _ir_shape(shape, axes), "float32"))
        node = self.node
        main = node is not None and node.name and name == node.output[0]
        op_name = node.name if main else name
        taken = {op.name for op in self.g.ops}
        k = 2
        while op_name in taken:
            op_name, k = f"{op_name.rsplit('#', 1)[0]}#{k}", k + 1
        self.g.add_op(kind, inputs, [out], name=op_name, **options)
        return _Act(out, tuple(int(d) for d in shape), axes, order)

    def _ir(self, act: _Act) -> tuple[int, ...]:
        return self.g.tensors[act.index].shape

    def _reshape_ir(self, act: _Act, ir_shape: tuple[int, ...], shape: Sequence[int],
                    axes: Axes, name: str, order: np.ndarray | None = None) -> _Act:
        """RESHAPE the IR tensor (same bytes) and describe the result's layout."""
        if ir_shape == self._ir(act):
            return _Act(act.index, tuple(shape), axes, order, act.origin)
        target = self._const(f"{name}/shape", np.array(ir_shape), "int32")
        out = self._emit("RESHAPE", [act.index, target], shape, axes, name, order)
        assert self._ir(out) == ir_shape
        return out

    def _relayout(self, act: _Act, axes: Axes) -> _Act:
        """The same ONNX value laid out as ``axes`` (a RESHAPE at most, never a transpose)."""
        if act.axes == axes and act.order is None:
            return act
        if act.order is None and _data_order(act.shape, act.axes) == _data_order(act.shape, axes):
            return self._reshape_ir(act, _ir_shape(act.shape, axes), act.shape, axes,
                                    f"{self.g.tensors[act.index].name}/relayout")
        have = "with permuted features" if act.order is not None else (
            "as IR [" + ", ".join("1" if a is None else f"onnx axis {a}" for a in act.axes) + "]")
        want = "[" + ", ".join("1" if a is None else f"onnx axis {a}" for a in axes) + "]"
        origin = f" (laid out by '{act.origin}')" if act.origin else ""
        raise _LayoutError(
            f"input '{self.g.tensors[act.index].name}' of shape {list(act.shape)} is held "
            f"{have}{origin} but the operator needs {want}; that would take a transpose, "
            "which the IR does not have (only Transposes that undo a layout change can be "
            "imported)", file=self.path, where=self._where())

    def _plain(self, act: _Act) -> _Act:
        return self._relayout(act, _identity(len(act.shape)))

    def _const_for(self, act: _Act, c: np.ndarray, what: str) -> np.ndarray:
        """An ONNX constant broadcast against ``act``, laid out like ``act`` in the IR."""
        c = self._float(c, what)
        rank = len(act.shape)
        if c.ndim > rank:
            raise self.error(f"{what} has rank {c.ndim}, more than the activation's {rank}")
        c = c.reshape((1,) * (rank - c.ndim) + c.shape)
        if act.order is not None and c.shape[1] != 1:
            c = c[:, act.order]
        return _to_ir_array(c, act.axes)

    def _float(self, c: np.ndarray, what: str) -> np.ndarray:
        c = np.asarray(c)
        if c.dtype != np.float32:
            raise self.error(f"{what} is {c.dtype}; only float32 models can be imported")
        return c

    # ---- operands ------------------------------------------------------------------
    def _act(self, ins: list[Value], k: int = 0) -> _Act:
        v = ins[k] if k < len(ins) else None
        if not isinstance(v, _Act):
            raise self.error(f"input {k} must be computed at run time, not a constant")
        return v

    def _weight(self, ins: list[Value], k: int, what: str, optional: bool = False
                ) -> np.ndarray | None:
        v = ins[k] if k < len(ins) else None
        if v is None and optional:
            return None
        if not isinstance(v, np.ndarray):
            raise self.error(f"the {what} (input {k}) must be a constant initializer")
        return self._float(v, f"the {what}")

    # ---- driver ---------------------------------------------------------------------
    def run(self) -> Graph:
        graph = self.model.graph
        opset = {imp.domain or "": imp.version for imp in self.model.opset_import}
        self.opset = opset.get("", opset.get("ai.onnx", 13))
        self.ml_opset = opset.get("ai.onnx.ml", 1)
        for node in graph.node:
            if _is_quant_op(node.op_type):
                raise self.error(_QUANT_MESSAGE, node)
        initializers = {t.name: t for t in graph.initializer}
        self._add_inputs(initializers)
        producers = {o: n for n in graph.node for o in n.output if o}
        outputs = self._select_outputs(producers)
        needed = self._needed_nodes(outputs, producers)
        self._load_initializers(initializers, needed)
        for node in needed:
            self.node = node
            self._convert(node)
        self.node = None
        output_layouts = self._set_outputs(outputs)
        _optimize(self.g)
        leftover = [op for op in self.g.ops if op.kind == _N1_TO_1]
        if leftover:
            raise KilomlError(f"Clip(-1, 1) feeding {self.g.tensors[leftover[0].inputs[0]].name!r}"
                              " can only be imported fused into a single-consumer Conv, "
                              "Gemm/MatMul, Add or Mul", file=self.path,
                              where=f"operator '{leftover[0].name}'")
        self.g.prune()
        self.g.name = self.path.stem  # exporters' graph names ("main_graph", "tf2onnx") say little
        producer = " ".join(p for p in (self.model.producer_name,
                                        self.model.producer_version) if p)
        record = {"inputs": [lay.to_json() for lay in self.input_layouts],
                  "outputs": [lay.to_json() for lay in output_layouts]}
        dropped = f"; dropped outputs {', '.join(self.dropped)}" if self.dropped else ""
        self.g.description = (
            f"imported from {self.path.name} (ONNX opset {self.opset}"
            f"{', ' + producer if producer else ''}); rank-3/4 inputs read as "
            f"{'channels-last' if self.channels_last_inputs else 'channels-first'}{dropped}\n"
            f"{_LAYOUT_TAG}{json.dumps(record, separators=(',', ':'))}")
        return self.g

    def _select_outputs(self, producers: dict[str, Any]) -> list[_Output]:
        """Keep float outputs; a ZipMap output stands for its probability tensor."""
        kept = []
        for out in self.model.graph.output:
            node = producers.get(out.name)
            if node is not None and node.op_type == "ZipMap":
                kept.append(_Output(out.name, node.input[0]))
            elif (out.type.HasField("tensor_type")
                  and out.type.tensor_type.elem_type == 1):  # FLOAT
                kept.append(_Output(out.name, out.name))
            else:
                self.dropped.append(out.name)
        if not kept:
            raise KilomlError("the model has no float32 tensor output", file=self.path)
        return kept

    def _needed_nodes(self, outputs: list[_Output], producers: dict[str, Any]) -> list[Any]:
        need: set[int] = set()
        stack = [o.value_name for o in outputs]
        ids = {id(n): i for i, n in enumerate(self.model.graph.node)}
        while stack:
            node = producers.get(stack.pop())
            if node is None or ids[id(node)] in need:
                continue
            need.add(ids[id(node)])
            stack.extend(i for i in node.input if i)
            for a in node.attribute:  # subgraphs (If/Loop) would hide inputs; reject below
                if a.g.node or a.graphs:
                    raise self.error("operators with subgraphs (If, Loop, Scan) are not "
                                     "supported", node)
        return [n for i, n in enumerate(self.model.graph.node) if i in need]

    def _load_initializers(self, initializers: dict[str, Any], needed: list[Any]) -> None:
        with needs("onnx", "reading .onnx models"):
            from onnx import numpy_helper

        used = {name for node in needed for name in node.input}
        for name, t in initializers.items():
            if name not in used:
                continue
            try:
                value = numpy_helper.to_array(t, base_dir=str(self.path.parent))
            except Exception as exc:
                raise KilomlError(f"not a valid .onnx file: initializer {name!r}: {exc}",
                                  file=self.path) from None
            if value.dtype in (np.float16, np.float64) or t.data_type == 16:  # 16: bfloat16
                raise KilomlError(f"weight {name!r} is {value.dtype}; only float32 models can "
                                  "be imported (convert the model to float32)", file=self.path)
            self.values[name] = value

    def _add_inputs(self, initializers: dict[str, Any]) -> None:
        with needs("onnx", "reading .onnx models"):
            import onnx

        for inp in self.model.graph.input:
            if inp.name in initializers:
                continue  # old exporters list initializers as graph inputs too
            tt = inp.type.tensor_type
            if not inp.type.HasField("tensor_type") or tt.elem_type != 1:
                kind = (onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type).name
                        if inp.type.HasField("tensor_type") and tt.elem_type else "not a tensor")
                raise KilomlError(f"input {inp.name!r} is {kind}; only float32 inputs are "
                                  "supported", file=self.path)
            shape = []
            for i, d in enumerate(tt.shape.dim):
                if d.HasField("dim_value") and d.dim_value <= 0:
                    raise KilomlError(f"input {inp.name!r} has dimension {d.dim_value} at axis "
                                      f"{i}; sizes must be at least 1 (or symbolic for the "
                                      "batch)", file=self.path)
                if d.HasField("dim_value"):
                    if i == 0 and d.dim_value != 1:
                        raise KilomlError(
                            f"input {inp.name!r} has a fixed batch size of {d.dim_value}; "
                            "export with batch size 1 or a dynamic batch axis", file=self.path)
                    shape.append(int(d.dim_value))
                elif i == 0:
                    shape.append(1)  # a symbolic batch: the IR runs one sample at a time
                else:
                    raise KilomlError(f"input {inp.name!r} has a dynamic dimension at axis {i}; "
                                      "export with a fixed input shape", file=self.path)
            if not shape:
                raise KilomlError(f"input {inp.name!r} has no shape", file=self.path)
            if math.prod(shape) > MAX_TENSOR_ELEMENTS:
                raise KilomlError(f"input {inp.name!r} has shape {shape}, more than "
                                  f"{MAX_TENSOR_ELEMENTS:,} elements", file=self.path)
            rank = len(shape)
            axes = _channels_last(rank) if self.channels_last_inputs else _channels_first(rank)
            index = self.g.add_tensor(Tensor(inp.name, _ir_shape(shape, axes), "float32"))
            self.g.inputs.append(index)
            self.values[inp.name] = _Act(index, tuple(shape), axes)
            self.input_layouts.append(
                OnnxLayout(inp.name, tuple(shape), _ir_shape(shape, axes), axes))

    def _convert(self, node: Any) -> None:
        ins: list[Value] = []
        for name in node.input:
            if not name:
                ins.append(None)
            elif name in self.values:
                ins.append(self.values[name])
            else:
                raise self.error(f"input {name!r} is not available (produced by an output "
                                 "that was not imported)")
        domain = node.domain or ""
        handler: Callable[[list[Value]], list[Value]] | None = None
        if domain in ("", "ai.onnx"):
            handler = getattr(self, f"_op_{node.op_type}", None)
        elif domain == "ai.onnx.ml" and node.op_type == "Scaler":
            handler = self._op_Scaler
        all_const = all(v is None or isinstance(v, np.ndarray) for v in ins)
        if all_const and node.op_type not in ("Scaler",):
            try:
                results = [np.asarray(r) for r in _fold(
                    node, ins, self.opset if domain in ("", "ai.onnx") else self.ml_opset)]
            except Exception as exc:
                if handler is None:
                    raise self._unsupported(node) from None
                raise self.error(f"could not evaluate this constant operator: {exc}") from None
        elif handler is None:
            raise self._unsupported(node)
        else:
            results = handler(ins)
        for name, value in zip(node.output, results, strict=False):
            if name:
                self.values[name] = value

    def _unsupported(self, node: Any) -> KilomlError:
        ops = sorted(n[4:] for n in dir(self) if n.startswith("_op_"))
        domain = f"{node.domain}." if node.domain else ""
        if node.op_type == "TreeEnsembleClassifier" and node.domain == "ai.onnx.ml":
            return self.error("a tree ensemble (ai.onnx.ml.TreeEnsembleClassifier) is not a "
                              "network; use it in a project as [model] kind = 'imported' "
                              "(kiloml's tree engine runs it)", node)
        return self.error(f"unsupported operator {domain}{node.op_type}; supported: "
                          f"{', '.join(ops)} (and any operator on constants only)", node)

    def _set_outputs(self, outputs: list[_Output]) -> list[OnnxLayout]:
        layouts = []
        for out in outputs:
            value = self.values.get(out.value_name)
            if not isinstance(value, _Act):
                raise KilomlError(f"output {out.onnx_name!r} does not depend on the inputs",
                                  file=self.path)
            # a channels-last output stays so; the layout record tells callers how to undo it
            with contextlib.suppress(_LayoutError):
                value = self._plain(value)
            self.g.tensors[value.index].name = out.onnx_name
            self.g.outputs.append(value.index)
            order = None if value.order is None else tuple(int(i) for i in value.order)
            layouts.append(OnnxLayout(out.onnx_name, value.shape, self._ir(value), value.axes,
                                      order))
        return layouts

    # ---- operators: layout-free ------------------------------------------------------
    def _alias(self, ins: list[Value]) -> list[Value]:
        return [self._act(ins)]

    def _op_Identity(self, ins: list[Value]) -> list[Value]:
        return self._alias(ins)

    def _op_Dropout(self, ins: list[Value]) -> list[Value]:
        if self._scalar_input(ins, 2, "training_mode"):
            raise self.error("Dropout in training mode cannot be imported")
        return self._alias(ins)

    def _op_Cast(self, ins: list[Value]) -> list[Value]:
        to = self.attrs().int("to")
        if to != 1:
            raise self.attr_error("to", to, "only casts to float32 of activations are supported")
        return self._alias(ins)

    def _op_Shape(self, ins: list[Value]) -> list[Value]:
        a = self.attrs()
        dims = np.array(self._act(ins).shape, np.int64)
        return [dims[a.int("start", 0):a.int("end", len(dims))]]

    def _op_Size(self, ins: list[Value]) -> list[Value]:
        return [np.array(int(np.prod(self._act(ins).shape)), np.int64)]

    def _unary(self, kind: str, ins: list[Value]) -> list[Value]:
        x = self._act(ins)
        return [self._emit(kind, [x.index], x.shape, x.axes, self.node.output[0], x.order)]

    def _op_Relu(self, ins: list[Value]) -> list[Value]:
        return self._unary("RELU", ins)

    def _op_Sigmoid(self, ins: list[Value]) -> list[Value]:
        return self._unary("LOGISTIC", ins)

    def _op_Tanh(self, ins: list[Value]) -> list[Value]:
        return self._unary("TANH", ins)

    def _op_Clip(self, ins: list[Value]) -> list[Value]:
        a = self.attrs()
        if self.opset < 11:
            lo = a.float("min") if "min" in a else None
            hi = a.float("max") if "max" in a else None
        else:
            lo, hi = self._scalar_input(ins, 1, "min"), self._scalar_input(ins, 2, "max")
        lo = None if lo is None or lo <= -3.0e38 else lo
        hi = None if hi is None or hi >= 3.0e38 else hi
        kinds = {(0.0, None): "RELU", (0.0, 6.0): "RELU6", (-1.0, 1.0): _N1_TO_1}
        kind = kinds.get((lo, hi))
        if kind is None:
            raise self.attr_error("min/max", f"{lo}/{hi}", "only Clip(0, inf), Clip(0, 6) and "
                                  "Clip(-1, 1) map to TFLite activations")
        return self._unary(kind, ins)

    # ---- fully-connected ------------------------------------------------------------
    def _fc(self, x: _Act, w: np.ndarray, bias: np.ndarray | None) -> list[Value]:
        """FULLY_CONNECTED with ONNX weights ``w`` [out, in]."""
        if x.order is not None:
            w = w[:, x.order]  # the IR's flattened features are in NHWC order
        else:
            if len(x.shape) != 2:
                raise self.error(f"the input has shape {list(x.shape)}; only [batch, features]"
                                 " inputs are supported")
            x = self._plain(x)
        if w.shape[1] != x.shape[1]:
            raise self.error(f"the weights take {w.shape[1]} features, the input has "
                             f"{x.shape[1]}")
        name = self.node.output[0]
        wi = self._const(f"{name}/weights", w)
        bi = -1 if bias is None else self._const(f"{name}/bias", bias)
        return [self._emit("FULLY_CONNECTED", [x.index, wi, bi], (x.shape[0], w.shape[0]),
                           (0, 1), name)]

    def _op_Gemm(self, ins: list[Value]) -> list[Value]:
        a = self.attrs()
        if a.flag("transA"):
            raise self.attr_error("transA", 1, "the activation must not be transposed")
        x = self._act(ins)
        b = self._weight(ins, 1, "weight matrix")
        c = self._weight(ins, 2, "bias", optional=True)
        assert b is not None
        if b.ndim != 2:
            raise self.error(f"the weight matrix has shape {list(b.shape)}, expected 2-D")
        alpha, beta = a.float("alpha", 1.0), a.float("beta", 1.0)
        w = self._f32((b if a.flag("transB") else b.T) * np.float64(alpha), "alpha x weights")
        bias = None
        if c is not None:
            c = self._f32(np.asarray(c, np.float64) * beta, "beta x bias")
            if c.ndim > 2 or (c.ndim == 2 and c.shape[0] != 1):
                raise self.error(f"the bias has shape {list(c.shape)}; it must not vary "
                                 "along the batch")
            vec = c.reshape(c.shape[-1:]) if c.ndim else c.reshape(1)
            if vec.shape[0] not in (1, w.shape[0]):
                raise self.error(f"the bias has {vec.shape[0]} values for {w.shape[0]} outputs")
            bias = np.broadcast_to(vec, (w.shape[0],)).copy()
        return self._fc(x, w, bias)

    def _op_MatMul(self, ins: list[Value]) -> list[Value]:
        if len(ins) != 2:
            raise self.error(f"MatMul has {len(ins)} inputs; it takes 2")
        if isinstance(ins[0], np.ndarray):
            raise self.error("MatMul with a constant left operand is not supported")
        if not isinstance(ins[1], np.ndarray):
            raise self.error("MatMul of two activations is not supported (the right operand "
                             "must be a constant weight matrix)")
        b = self._weight(ins, 1, "weight matrix")
        assert b is not None
        if b.ndim != 2:
            raise self.error(f"the weight matrix has shape {list(b.shape)}, expected 2-D")
        return self._fc(self._act(ins), np.ascontiguousarray(b.T), None)

    # ---- convolution and pooling ----------------------------------------------------
    def _spatial_input(self, ins: list[Value]) -> _Act:
        x = self._act(ins)
        if len(x.shape) not in (3, 4):
            raise self.error(f"the input has shape {list(x.shape)}; only 1-D [N, C, W] and "
                             "2-D [N, C, H, W] operators are supported")
        return self._relayout(x, _channels_first(len(x.shape)))

    def _padding(self, a: Attributes, size: Sequence[int], kernel: Sequence[int],
                 strides: Sequence[int], dil: Sequence[int]) -> tuple[str, list[int], list[int]]:
        """("VALID" | "SAME" | "EXPLICIT", pads before, pads after) per spatial axis."""
        n = len(size)
        same = [_same_pads(s, k, st, d) for s, k, st, d in zip(size, kernel, strides, dil,
                                                                  strict=True)]
        auto = a.string("auto_pad", "NOTSET", ("NOTSET", "SAME_UPPER", "VALID", "SAME_LOWER"))
        if auto != "NOTSET" and "pads" in a:  # the ONNX spec: one or the other
            raise self.attr_error("auto_pad", auto, "auto_pad and pads cannot be used together")
        if auto == "VALID":
            return "VALID", [0] * n, [0] * n
        if auto == "SAME_UPPER":
            return "SAME", [p[0] for p in same], [p[1] for p in same]
        if auto != "NOTSET":
            raise self.attr_error("auto_pad", auto, "use NOTSET, SAME_UPPER or VALID")
        if "pads" in a and len(a.get("pads")) != 2 * n:
            raise self.attr_error("pads", list(a.get("pads")), f"{2 * n} values are needed "
                                  f"(begin and end of {n} spatial axes)")
        pads = a.ints("pads", [0] * 2 * n, 2 * n, 0, MAX_TENSOR_ELEMENTS)
        before, after = pads[:n], pads[n:]
        if not any(pads):
            return "VALID", before, after
        if [(b, e) for b, e in zip(before, after, strict=True)] == same:
            return "SAME", before, after
        return "EXPLICIT", before, after

    def _pad_spatial(self, x: _Act, before: list[int], after: list[int]) -> _Act:
        """An explicit zero PAD of the spatial axes of a channels-first activation."""
        pads = [0, 0] * len(x.shape)
        for i, (b, e) in enumerate(zip(before, after, strict=True)):
            pads[2 + i], pads[len(x.shape) + 2 + i] = b, e
        return self._pad(x, pads, f"{self.node.output[0]}/pad")

    def _pad(self, x: _Act, pads: list[int], name: str) -> _Act:
        rank = len(x.shape)
        if not any(pads):
            return x
        if x.order is not None:
            x = self._plain(x)
        ir = np.zeros((len(x.axes), 2), np.int32)
        for i, a in enumerate(x.axes):
            if a is not None:
                ir[i] = (pads[a], pads[rank + a])
        shape = tuple(d + pads[i] + pads[rank + i] for i, d in enumerate(x.shape))
        pi = self._const(f"{name}/paddings", ir, "int32")
        return self._emit("PAD", [x.index, pi], shape, x.axes, name)

    def _window_attrs(self, a: Attributes, kernel: Sequence[int]
                      ) -> tuple[list[int], list[int]]:
        """strides and dilations: one integer >= 1 per spatial axis."""
        n = len(kernel)
        strides = a.ints("strides", [1] * n, n, 1)
        dil = a.ints("dilations", [1] * n, n, 1)
        if "kernel_shape" in a and a.ints("kernel_shape", None) != list(kernel):
            raise self.attr_error("kernel_shape", a.get("kernel_shape"),
                                  f"the weights are {list(kernel)}")
        return strides, dil

    def _op_Conv(self, ins: list[Value]) -> list[Value]:
        a = self.attrs()
        x = self._spatial_input(ins)
        w = self._weight(ins, 1, "weights")
        bias = self._weight(ins, 2, "bias", optional=True)
        assert w is not None
        rank = len(x.shape)
        if w.ndim != rank:
            raise self.error(f"the weights have shape {list(w.shape)}, expected rank {rank}")
        kernel = list(w.shape[2:])
        strides, dil = self._window_attrs(a, kernel)
        group = a.int("group", 1, 1)
        cin, cout = x.shape[1], w.shape[0]
        if w.shape[1] * group != cin or cout % group or 0 in w.shape:
            raise self.attr_error("group", group, f"weights {list(w.shape)} do not fit "
                                  f"{cin} input channels")
        if bias is not None and bias.shape != (cout,):
            raise self.error(f"the bias has shape {list(bias.shape)}; [{cout}] is needed")
        mode, before, after = self._padding(a, x.shape[2:], kernel, strides, dil)
        if mode == "EXPLICIT":
            x, mode = self._pad_spatial(x, before, after), "VALID"
        if rank == 3:  # 1-D: a CONV_2D over [N, 1, W, C]
            w, kernel, strides, dil = w[:, :, None, :], [1, *kernel], [1, *strides], [1, *dil]
        sizes = [1, x.shape[2]] if rank == 3 else list(x.shape[2:])
        out = [(-(-s // st) if mode == "SAME" else (s - (k - 1) * d - 1) // st + 1)
               for s, k, st, d in zip(sizes, kernel, strides, dil, strict=True)]
        if min(out) <= 0:
            raise self.error(f"the {kernel} kernel does not fit the input {list(x.shape)}")
        name = self.node.output[0]
        options: dict[str, object] = {
            "padding": mode, "stride_h": strides[0], "stride_w": strides[1],
            "dilation_h": dil[0], "dilation_w": dil[1]}
        if group == cin and group > 1:  # depthwise: [1, kh, kw, cout], cout = cin * multiplier
            kind = "DEPTHWISE_CONV_2D"
            weights = w.transpose(1, 2, 3, 0)
            options["depth_multiplier"] = cout // cin
        else:  # OHWI; 1 < group < cin stays a grouped CONV_2D (filter in_c = cin / group)
            kind = "CONV_2D"
            weights = w.transpose(0, 2, 3, 1)
        wi = self._const(f"{name}/weights", weights)
        bi = -1 if bias is None else self._const(f"{name}/bias", bias)
        shape = (x.shape[0], cout, *(out[1:] if rank == 3 else out))
        return [self._emit(kind, [x.index, wi, bi], shape, x.axes, name, **options)]

    def _pool(self, ins: list[Value], kind: str) -> list[Value]:
        a = self.attrs()
        if len([o for o in self.node.output if o]) > 1:
            raise self.error("MaxPool's Indices output is not supported")
        x = self._spatial_input(ins)
        kernel = a.ints("kernel_shape", None, len(x.shape) - 2, 1)
        strides, dil = self._window_attrs(a, kernel)
        if any(d != 1 for d in dil):
            raise self.attr_error("dilations", dil, "pools have no dilation in TFLite")
        if a.int("storage_order", 0):
            raise self.attr_error("storage_order", a.get("storage_order"), "only 0")
        mode, before, after = self._padding(a, x.shape[2:], kernel, strides, dil)
        if a.flag("ceil_mode"):
            for s, k, st, b, e in zip(x.shape[2:], kernel, strides, before, after, strict=True):
                if (s + b + e - k) // st != -(-(s + b + e - k) // st):
                    raise self.attr_error("ceil_mode", 1,
                                          "ceil rounding changes the output size here")
        include_pad = kind == "AVERAGE_POOL_2D" and a.flag("count_include_pad")
        if mode != "VALID" and include_pad:  # padding counts: pad with zeros, pool VALID
            x, mode = self._pad_spatial(x, before, after), "VALID"
        elif mode == "EXPLICIT":
            raise self.attr_error("pads", a.get("pads"), "pool padding must be 0 or TFLite SAME "
                                  "(padded values are ignored, not zeros)")
        if len(x.shape) == 3:
            kernel, strides = [1, *kernel], [1, *strides]
        sizes = [1, x.shape[2]] if len(x.shape) == 3 else list(x.shape[2:])
        out = [(-(-s // st) if mode == "SAME" else (s - k) // st + 1)
               for s, k, st in zip(sizes, kernel, strides, strict=True)]
        if min(out) <= 0:
            raise self.error(f"the {kernel} window does not fit the input {list(x.shape)}")
        shape = (*x.shape[:2], *(out[1:] if len(x.shape) == 3 else out))
        return [self._emit(kind, [x.index], shape, x.axes, self.node.output[0], padding=mode,
                           stride_h=strides[0], stride_w=strides[1], filter_h=kernel[0],
                           filter_w=kernel[1])]

    def _op_MaxPool(self, ins: list[Value]) -> list[Value]:
        return self._pool(ins, "MAX_POOL_2D")

    def _op_AveragePool(self, ins: list[Value]) -> list[Value]:
        return self._pool(ins, "AVERAGE_POOL_2D")

    def _reduce(self, x: _Act, axes: Sequence[int], keepdims: bool, kind: str) -> list[Value]:
        rank = len(x.shape)
        axes = sorted({int(a) % rank for a in axes})
        if x.order is not None and 1 not in axes and not keepdims:
            x = self._plain(x)  # dropping the batch axis would orphan the feature order
        order = x.order if (x.order is not None and 1 not in axes) else None
        # unit axes the IR added are reduced too: harmless, and keep_dims=False drops them
        ir_axes = sorted({x.axes.index(a) for a in axes}
                         | {i for i, a in enumerate(x.axes) if a is None})
        if keepdims:
            shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
            new_axes = x.axes
        else:
            shape = tuple(d for i, d in enumerate(x.shape) if i not in axes)
            new_axes = tuple(a - sum(r < a for r in axes) for i, a in enumerate(x.axes)
                             if i not in ir_axes and a is not None)
        name = self.node.output[0]
        ai = self._const(f"{name}/axes", np.array(ir_axes), "int32")
        return [self._emit(kind, [x.index, ai], shape, new_axes, name, order,
                           keep_dims=keepdims)]

    def _op_GlobalAveragePool(self, ins: list[Value]) -> list[Value]:
        x = self._act(ins)
        return self._reduce(x, range(2, len(x.shape)), True, "MEAN")

    def _op_GlobalMaxPool(self, ins: list[Value]) -> list[Value]:
        x = self._act(ins)
        return self._reduce(x, range(2, len(x.shape)), True, "REDUCE_MAX")

    def _reduce_op(self, ins: list[Value], kind: str) -> list[Value]:
        a = self.attrs()
        x = self._act(ins)
        axes = self._axes(ins, len(x.shape))
        if not axes:
            if a.flag("noop_with_empty_axes"):
                return [x]
            axes = list(range(len(x.shape)))
        return self._reduce(x, axes, a.flag("keepdims", 1), kind)

    def _op_ReduceMean(self, ins: list[Value]) -> list[Value]:
        return self._reduce_op(ins, "MEAN")

    def _op_ReduceMax(self, ins: list[Value]) -> list[Value]:
        return self._reduce_op(ins, "REDUCE_MAX")

    # ---- element-wise with constants or two activations -------------------------------
    def _broadcast(self, a: Sequence[int], b: Sequence[int]) -> tuple[int, ...]:
        try:
            return tuple(np.broadcast_shapes(tuple(a), tuple(b)))
        except ValueError:
            raise self.error(f"operands of shapes {list(a)} and {list(b)} do not "
                             "broadcast") from None

    def _binary(self, ins: list[Value], op: str) -> list[Value]:
        if len(ins) != 2 or ins[0] is None or ins[1] is None:
            raise self.error(f"{op} needs two operands")
        a, b = ins[0], ins[1]
        name = self.node.output[0]
        if isinstance(a, _Act) and isinstance(b, _Act):
            if len(a.shape) != len(b.shape):
                raise self.error(f"operands of rank {len(a.shape)} and {len(b.shape)} are not "
                                 "supported (broadcast only between equal ranks)")
            if a.order is not None or b.order is not None:
                same = (a.order is not None and b.order is not None
                        and np.array_equal(a.order, b.order))
                if not same:
                    a, b = self._plain(a), self._plain(b)
            else:
                b = self._relayout(b, a.axes)
            shape = self._broadcast(a.shape, b.shape)
            if op == "Div":
                raise self.error("Div of two activations is not supported")
            if op == "Sub":
                minus = self._const(f"{name}/minus_one", np.full((1,) * len(b.axes), -1.0))
                b = self._emit("MUL", [b.index, minus], b.shape, b.axes, f"{name}/neg", b.order)
            kind = "MUL" if op == "Mul" else "ADD"
            return [self._emit(kind, [a.index, b.index], shape, a.axes, name, a.order)]
        act_first = isinstance(a, _Act)
        x = a if act_first else self._act(ins, 1)
        c = np.asarray(b if act_first else a)
        self._float(c, "the constant operand")
        if c.ndim > len(x.shape):
            raise self.error(f"the constant of shape {list(c.shape)} has a higher rank than "
                             f"the activation {list(x.shape)}")
        shape = self._broadcast(x.shape, c.shape)
        if op == "Sub" and not act_first:  # c - x = (-1) * x + c
            minus = self._const(f"{name}/minus_one", np.full((1,) * len(x.axes), -1.0))
            x = self._emit("MUL", [x.index, minus], x.shape, x.axes, f"{name}/neg", x.order)
            op = "Add"
        elif op == "Div" and not act_first:
            raise self.error("Div of a constant by an activation is not supported")
        if op == "Sub":
            c = -c
        elif op == "Div":
            if np.any(c == 0):
                raise self.error("divides by a constant that holds 0")
            c = self._f32(1.0 / c.astype(np.float64), "reciprocal of the divisor")
        ci = self._const(f"{name}/constant", self._const_for(x, c, "the constant operand"))
        kind = "MUL" if op in ("Mul", "Div") else "ADD"
        return [self._emit(kind, [x.index, ci], shape, x.axes, name, x.order)]

    def _op_Add(self, ins: list[Value]) -> list[Value]:
        return self._binary(ins, "Add")

    def _op_Sub(self, ins: list[Value]) -> list[Value]:
        return self._binary(ins, "Sub")

    def _op_Mul(self, ins: list[Value]) -> list[Value]:
        return self._binary(ins, "Mul")

    def _op_Div(self, ins: list[Value]) -> list[Value]:
        return self._binary(ins, "Div")

    def _op_BatchNormalization(self, ins: list[Value]) -> list[Value]:
        a = self.attrs()
        if a.flag("training_mode") or len([o for o in self.node.output if o]) > 1:
            raise self.error("BatchNormalization in training mode cannot be imported; export "
                             "the model in eval mode")
        if not a.flag("spatial", 1):
            raise self.attr_error("spatial", 0, "only per-channel statistics (spatial=1)")
        x = self._act(ins)
        if len(x.shape) < 2:
            raise self.error(f"the input has shape {list(x.shape)}; [N, C, ...] is needed")
        channels = x.shape[1]
        p = []
        for k, what in ((1, "scale"), (2, "bias"), (3, "mean"), (4, "variance")):
            v = self._weight(ins, k, what)
            assert v is not None
            if v.shape != (channels,):
                raise self.error(f"the {what} has shape {list(v.shape)}; [{channels}] is "
                                 "needed (one per channel)")
            if not np.isfinite(v).all():
                raise self.error(f"the {what} holds NaN or inf")
            p.append(v.astype(np.float64))
        if np.any(p[3] < 0):
            c = int(np.argmax(p[3] < 0))
            raise self.error(f"the variance of channel {c} is {p[3][c]:g}; a variance cannot "
                             "be negative")
        eps = a.float("epsilon", 1e-5, 0.0)
        if np.any(p[3] + eps <= 0):
            raise self.error("variance + epsilon is 0 for a channel (division by zero)")
        scale = p[0] / np.sqrt(p[3] + eps)
        shift = p[1] - p[2] * scale
        bshape = (1, -1) + (1,) * (len(x.shape) - 2)
        name = self.node.output[0]
        # MUL + ADD; the optimizer folds them into a preceding Conv/Gemm when it can
        si = self._const(f"{name}/scale", self._const_for(
            x, self._f32(scale, "folded scale").reshape(bshape), "scale"))
        y = self._emit("MUL", [x.index, si], x.shape, x.axes, f"{name}/scaled", x.order)
        ti = self._const(f"{name}/shift", self._const_for(
            x, self._f32(shift, "folded shift").reshape(bshape), "shift"))
        return [self._emit("ADD", [y.index, ti], x.shape, x.axes, name, x.order)]

    def _op_Scaler(self, ins: list[Value]) -> list[Value]:
        """skl2onnx's StandardScaler: (x - offset) * scale."""
        a = self.attrs()
        x = self._act(ins)
        name = self.node.output[0]
        offset = self._f32(np.asarray(a.floats("offset", [0.0])), "offset")
        scale = self._f32(np.asarray(a.floats("scale", [1.0])), "scale")
        features = x.shape[-1]
        for what, v in (("offset", offset), ("scale", scale)):
            if v.size not in (1, features):
                raise self.attr_error(what, v.tolist(), f"1 or {features} values are needed")
        oi = self._const(f"{name}/offset", self._const_for(x, -offset, "offset"))
        y = self._emit("ADD", [x.index, oi], x.shape, x.axes, f"{name}/centred", x.order)
        si = self._const(f"{name}/scale", self._const_for(x, scale, "scale"))
        return [self._emit("MUL", [y.index, si], x.shape, x.axes, name, x.order)]

    def _op_Softmax(self, ins: list[Value]) -> list[Value]:
        x = self._act(ins)
        rank = len(x.shape)
        axis = self.attrs().axis("axis", -1 if self.opset >= 13 else 1, rank)
        if self.opset < 13 and int(np.prod(x.shape[axis + 1:])) != 1:
            raise self.attr_error("axis", axis, "before opset 13 Softmax flattens the trailing "
                                  "axes; only the last axis is supported")
        if x.axes.index(axis) != len(x.axes) - 1:
            raise _LayoutError(f"Softmax over axis {axis} of {list(x.shape)} is not supported: "
                               "the IR's Softmax runs over its innermost axis, which holds "
                               f"ONNX axis {x.axes[-1]} here", file=self.path,
                               where=self._where())
        return [self._emit("SOFTMAX", [x.index], x.shape, x.axes, self.node.output[0],
                           x.order, beta=1.0)]

    # ---- shape and layout ----------------------------------------------------------------
    def _reshape(self, x: _Act, target: tuple[int, ...]) -> list[Value]:
        name = self.node.output[0]
        if target == x.shape:
            return [x]
        if x.order is None and _data_order(x.shape, x.axes) == _data_order(
                x.shape, _identity(len(x.shape))):
            axes = _identity(len(target))
            return [self._reshape_ir(x, target, target, axes, name)]
        if (x.order is None and len(target) == 2 and x.axes[0] == 0
                and target[0] == x.shape[0]):
            # Flattening a channels-last activation: keep the IR's NHWC order and remember
            # which ONNX feature each IR feature is (the next Gemm/MatMul permutes weights).
            idx = np.arange(int(np.prod(x.shape[1:]))).reshape((1, *x.shape[1:]))
            order = _to_ir_array(idx, x.axes).reshape(-1)
            return [self._reshape_ir(x, target, target, (0, 1), name, order)]
        raise _LayoutError(
            f"reshaping {list(x.shape)} to {list(target)} would need a transpose in the IR "
            "(only a flatten to [batch, features] of a channels-first activation is supported)",
            file=self.path, where=self._where())

    def _op_Reshape(self, ins: list[Value]) -> list[Value]:
        x = self._act(ins)
        target_values = self._int_values(ins, 1, "target shape")
        if target_values is None:
            raise self.error("the target shape is missing")
        try:
            target = _resolve_reshape(x.shape, target_values, self.attrs().flag("allowzero"))
        except ValueError as exc:
            raise self.error(str(exc)) from None
        return self._reshape(x, target)

    def _op_Flatten(self, ins: list[Value]) -> list[Value]:
        x = self._act(ins)
        axis = self.attrs().axis("axis", 1, len(x.shape), inclusive=True)
        target = (math.prod(x.shape[:axis]), math.prod(x.shape[axis:]))
        return self._reshape(x, target)

    def _op_Squeeze(self, ins: list[Value]) -> list[Value]:
        x = self._act(ins)
        if x.order is not None:
            x = self._plain(x)
        rank = len(x.shape)
        axes = self._axes(ins, rank)
        if axes is None:
            axes = [i for i, d in enumerate(x.shape) if d == 1]
        gone = sorted(axes)
        if any(x.shape[a] != 1 for a in gone):
            raise self.error(f"cannot squeeze axes {gone} of shape {list(x.shape)}")
        # the IR tensor stays; the squeezed ONNX axes become unit axes of the IR
        axes_new = tuple(None if a is None or a in gone else a - sum(g < a for g in gone)
                         for a in x.axes)
        shape = tuple(d for i, d in enumerate(x.shape) if i not in gone)
        return [_Act(x.index, shape, axes_new, None, x.origin)]

    def _op_Unsqueeze(self, ins: list[Value]) -> list[Value]:
        x = self._act(ins)
        if x.order is not None:
            x = self._plain(x)
        a = self.attrs()
        n_new = len(a.get("axes")) if "axes" in a and isinstance(a.get("axes"), list) else len(
            self._int_values(ins, 1, "axes") or [])
        rank = len(x.shape) + n_new
        new = self._axes(ins, rank) or []
        kept = [i for i in range(rank) if i not in new]  # old axis k -> new axis kept[k]
        shape = tuple(1 if i in new else x.shape[kept.index(i)] for i in range(rank))
        axes_new = [None if a is None else kept[a] for a in x.axes]
        spare = list(new)
        for i, a in enumerate(axes_new):  # new unit axes take the IR's spare unit axes first
            if a is None and spare:
                axes_new[i] = spare.pop(0)
        if spare:  # else they become trailing unit axes of the IR tensor (same bytes)
            axes_new.extend(spare)
            return [self._reshape_ir(x, _ir_shape(shape, tuple(axes_new)), shape,
                                     tuple(axes_new), self.node.output[0])]
        return [_Act(x.index, shape, tuple(axes_new), None, x.origin)]

    def _op_Transpose(self, ins: list[Value]) -> list[Value]:
        x = self._act(ins)
        rank = len(x.shape)
        perm = self.attrs().ints("perm", list(range(rank))[::-1], rank)
        if sorted(perm) != list(range(rank)):
            raise self.attr_error("perm", perm, f"not a permutation of {rank} axes")
        if perm == list(range(rank)):
            return [x]
        if x.order is not None:
            x = self._plain(x)
        inv = np.argsort(perm)
        # no op: only the bookkeeping of which ONNX axis each IR axis holds changes
        axes = tuple(None if a is None else int(inv[a]) for a in x.axes)
        shape = tuple(x.shape[p] for p in perm)
        return [_Act(x.index, shape, axes, None, self.node.name or self.node.output[0])]

    def _op_Concat(self, ins: list[Value]) -> list[Value]:
        acts = [v for v in ins if isinstance(v, _Act)]
        ref = acts[0]
        rank = len(ref.shape)
        axis = self.attrs().axis("axis", None, rank)
        for v in ins:
            if v is not None and len(np.shape(v) if isinstance(v, np.ndarray) else v.shape) \
                    != rank:
                raise self.error("the operands of Concat differ in rank")
        ordered = any(v.order is not None for v in acts)
        if ordered and not (rank == 2 and axis == 1):
            ref = self._plain(ref)
        parts: list[int] = []
        orders: list[np.ndarray] = []
        offset = 0
        for v in ins:
            if v is None:
                continue
            if isinstance(v, _Act):
                if ordered and rank == 2 and axis == 1:
                    orders.append((v.order if v.order is not None
                                   else np.arange(v.shape[1])) + offset)
                    parts.append(v.index)
                else:
                    parts.append(self._relayout(v, ref.axes).index)
                size = v.shape[axis]
            else:
                c = self._float(np.asarray(v), "a constant operand")
                if c.ndim != rank:
                    raise self.error(f"constant operand of shape {list(c.shape)} has the wrong "
                                     "rank")
                orders.append(np.arange(c.shape[1]) + offset if c.ndim == 2 else np.zeros(0))
                parts.append(self._const(f"{self.node.output[0]}/constant",
                                         _to_ir_array(c, ref.axes)))
                size = c.shape[axis]
            offset += size
        shape = list(ref.shape)
        shape[axis] = offset
        order = np.concatenate(orders).astype(np.int64) if ordered and rank == 2 and axis == 1 \
            else None
        axes = (0, 1) if order is not None else ref.axes
        return [self._emit("CONCATENATION", parts, shape, axes, self.node.output[0], order,
                           axis=axes.index(axis))]

    def _op_Pad(self, ins: list[Value]) -> list[Value]:
        a = self.attrs()
        x = self._act(ins)
        rank = len(x.shape)
        mode = a.get("mode", "constant")
        if mode != "constant":
            raise self.attr_error("mode", mode, "only constant padding")
        if self.opset < 11:
            pads, value = a.ints("pads", None), a.float("value", 0.0)
        else:
            pads = self._int_values(ins, 1, "pads")
            if pads is None:
                raise self.error("the pads are missing")
            value = self._scalar_input(ins, 2, "constant value") or 0.0
            axes = self._int_values(ins, 3, "axes")
            if axes is not None:  # opset 18: pads only for these axes
                if any(not -rank <= ax < rank for ax in axes) or len(
                        {ax % rank for ax in axes}) != len(axes) or len(pads) != 2 * len(axes):
                    raise self.attr_error("axes", axes, f"distinct axes of rank {rank}, "
                                          "two pads each")
                full = [0] * 2 * rank
                for i, ax in enumerate(ax % rank for ax in axes):
                    full[ax], full[rank + ax] = pads[i], pads[len(axes) + i]
                pads = full
        if value != 0.0:
            raise self.attr_error("constant_value", value, "TFLite PAD pads with zeros")
        if len(pads) != 2 * rank or any(not 0 <= p <= MAX_TENSOR_ELEMENTS for p in pads):
            raise self.attr_error("pads", pads, "negative, huge or mis-sized padding")
        return [self._pad(x, pads, self.node.output[0])]


# ---- graph-level optimizations -----------------------------------------------------

def _uses(g: Graph) -> dict[int, list[Op]]:
    out: dict[int, list[Op]] = {}
    for op in g.ops:
        for t in op.inputs:
            if t >= 0:
                out.setdefault(t, []).append(op)
    return out


def _sole_use(g: Graph, tensor: int, uses: dict[int, list[Op]]) -> bool:
    return len(uses.get(tensor, [])) == 1 and tensor not in g.outputs


def _fold_affine(g: Graph) -> bool:
    """Fold MUL/ADD by a per-channel constant into the preceding Conv/FC (BatchNorm, biases)."""
    producer = {op.outputs[0]: op for op in g.ops}
    uses = _uses(g)
    for op in g.ops:
        if op.kind not in ("MUL", "ADD"):
            continue
        consts = [i for i in op.inputs if g.tensors[i].is_constant]
        acts = [i for i in op.inputs if not g.tensors[i].is_constant]
        if len(consts) != 1 or len(acts) != 1:
            continue
        p = producer.get(acts[0])
        if (p is None or p.kind not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
                or p.options["fused_activation"] != "NONE" or not _sole_use(g, acts[0], uses)):
            continue
        c = g.tensors[consts[0]].data
        out_shape = g.tensors[acts[0]].shape
        channels = out_shape[-1]
        if (c is None or c.ndim > len(out_shape) or any(d != 1 for d in c.shape[:-1])
                or (c.ndim and c.shape[-1] not in (1, channels))):
            continue
        vec = np.broadcast_to(c.reshape(-1), (channels,)).astype(np.float32)
        w = g.tensors[p.inputs[1]]
        b = g.tensors[p.inputs[2]].data if len(p.inputs) > 2 and p.inputs[2] >= 0 else None
        assert w.data is not None
        if op.kind == "MUL":
            axis = 3 if p.kind == "DEPTHWISE_CONV_2D" else 0
            shape = [1] * w.data.ndim
            shape[axis] = channels
            p.inputs[1] = g.add_tensor(Tensor(w.name, w.shape, "float32",
                                              data=w.data * vec.reshape(shape)))
            if b is not None:
                p.inputs[2] = g.add_tensor(Tensor(g.tensors[p.inputs[2]].name, b.shape,
                                                  "float32", data=b * vec))
        else:
            bias = vec if b is None else (b + vec).astype(np.float32)
            name = f"{w.name.rsplit('/', 1)[0]}/bias"
            bias_t = g.add_tensor(Tensor(name, (channels,), "float32", data=bias))
            p.inputs = [*p.inputs[:2], bias_t]
        p.outputs = list(op.outputs)
        g.ops.remove(op)
        return True
    return False


def _fold_into_next_fc(g: Graph) -> bool:
    """Fold MUL/ADD by a per-feature constant into the FULLY_CONNECTED that alone reads it
    (a BatchNorm1d before a Linear layer): FC(x*s + t) = (W*s) x + (W t + b)."""
    uses = _uses(g)
    for op in g.ops:
        if op.kind not in ("MUL", "ADD") or op.options["fused_activation"] != "NONE":
            continue
        consts = [i for i in op.inputs if g.tensors[i].is_constant]
        acts = [i for i in op.inputs if not g.tensors[i].is_constant]
        out = op.outputs[0]
        if len(consts) != 1 or len(acts) != 1 or not _sole_use(g, out, uses):
            continue
        fc = uses[out][0]
        x_shape = g.tensors[acts[0]].shape
        if (fc.kind != "FULLY_CONNECTED" or fc.inputs[0] != out or len(x_shape) != 2
                or g.tensors[out].shape != x_shape):
            continue
        c = g.tensors[consts[0]].data
        if c is None or c.ndim > 2 or any(d != 1 for d in c.shape[:-1]):
            continue
        w = g.tensors[fc.inputs[1]]
        assert w.data is not None
        vec = np.broadcast_to(c.reshape(-1), (x_shape[1],)).astype(np.float64)
        if op.kind == "MUL":
            fc.inputs[1] = g.add_tensor(Tensor(w.name, w.shape, "float32",
                                               data=w.data * vec.astype(np.float32)))
        else:
            has_bias = len(fc.inputs) > 2 and fc.inputs[2] >= 0
            b = g.tensors[fc.inputs[2]].data if has_bias else None
            shift = w.data.astype(np.float64) @ vec + (0.0 if b is None else b)
            name = f"{w.name.rsplit('/', 1)[0]}/bias"
            fc.inputs = [*fc.inputs[:2], g.add_tensor(Tensor(name, shift.shape, "float32",
                                                             data=shift))]
        fc.inputs[0] = acts[0]
        g.ops.remove(op)
        return True
    return False


def _fuse_activations(g: Graph) -> bool:
    producer = {op.outputs[0]: op for op in g.ops}
    uses = _uses(g)
    for op in g.ops:
        if op.kind not in _ACTIVATION_OPS:
            continue
        p = producer.get(op.inputs[0])
        if (p is None or p.kind not in _FUSE_INTO or p.options["fused_activation"] != "NONE"
                or not _sole_use(g, op.inputs[0], uses)):
            continue
        p.options["fused_activation"] = _ACTIVATION_OPS[op.kind]
        p.outputs = list(op.outputs)
        g.ops.remove(op)
        return True
    return False


def _merge_reshapes(g: Graph) -> bool:
    """MEAN(keep_dims) -> RESHAPE becomes MEAN without keep_dims; RESHAPE chains collapse."""
    producer = {op.outputs[0]: op for op in g.ops}
    uses = _uses(g)
    for op in g.ops:
        if op.kind != "RESHAPE":
            continue
        p = producer.get(op.inputs[0])
        if p is None or not _sole_use(g, op.inputs[0], uses):
            continue
        out_shape = g.tensors[op.outputs[0]].shape
        if p.kind in ("MEAN", "REDUCE_MAX") and p.options["keep_dims"]:
            axes = {int(a) for a in np.atleast_1d(g.tensors[p.inputs[1]].data)}
            dropped = tuple(d for i, d in enumerate(g.tensors[p.outputs[0]].shape)
                            if i not in axes)
            if dropped != out_shape:
                continue
            p.options["keep_dims"] = False
        elif p.kind == "RESHAPE":
            shape = np.array(out_shape, np.int32)
            p.inputs = [p.inputs[0], g.add_tensor(Tensor(f"{g.tensors[op.outputs[0]].name}"
                                                         "/shape", shape.shape, "int32",
                                                         data=shape))]
        else:
            continue
        p.outputs = list(op.outputs)
        g.ops.remove(op)
        return True
    return False


def _optimize(g: Graph) -> None:
    for rewrite in (_fold_affine, _fold_into_next_fc, _fuse_activations, _merge_reshapes):
        while rewrite(g):
            pass


# ---- entry point -------------------------------------------------------------------

def read_onnx(path: str | Path) -> Graph:
    """Read a float32 .onnx model as a float32 IR graph (see the module docstring).

    Raises KilomlError (one line, naming the file and the node) for files that
    are not ONNX, quantized or non-float32 models and unsupported operators or
    attributes.
    """
    path = Path(path)
    model = _load(path)
    try:
        return _Importer(model, path, channels_last_inputs=False).run()
    except _LayoutError as first:
        ranks = [len(i.type.tensor_type.shape.dim) for i in model.graph.input]
        if not any(r in (3, 4) for r in ranks):
            raise
        try:
            return _Importer(model, path, channels_last_inputs=True).run()
        except _LayoutError:
            raise first from None


__all__ = ["OnnxLayout", "load_onnx_model", "onnx_input_layout", "onnx_output_layout",
           "read_onnx"]
