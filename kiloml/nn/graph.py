"""Graph IR for neural-network inference.

The IR mirrors TFLite's model of the world so that import and export are
one-to-one and the reference kernels can follow TFLM's arithmetic exactly:

- operator kinds are TFLite builtin names (``"CONV_2D"``, ``"FULLY_CONNECTED"``...);
- activations are NHWC (a 1-D convolution is ``CONV_2D`` on ``[N, 1, W, C]``);
- weights keep TFLite layouts: fully-connected ``[out, in]``, convolution
  ``[out_c, kh, kw, in_c]`` (OHWI), depthwise ``[1, kh, kw, out_c]``;
- quantization is affine ``real = scale * (q - zero_point)`` per tensor, or per
  channel along ``quant.axis`` (weights only);
- operator inputs are tensor indices, ``-1`` for an absent optional input
  (a fully-connected layer without bias).

Options are plain dicts with snake-case keys (see ``OPTION_DEFAULTS``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# dtype names used in the IR (numpy dtype names).
DTYPES = ("float32", "int8", "uint8", "int16", "int32", "int64", "bool")

FUSED_ACTIVATIONS = ("NONE", "RELU", "RELU_N1_TO_1", "RELU6")

# Every operator the IR supports, with its option defaults. Inputs that TFLite
# passes as constant tensors (MEAN's axes, PAD's paddings, RESHAPE's shape,
# SPLIT's axis, EXPAND_DIMS's axis) stay tensors in the IR.
OPTION_DEFAULTS: dict[str, dict[str, object]] = {
    "FULLY_CONNECTED": {"fused_activation": "NONE", "keep_num_dims": False},
    "CONV_2D": {
        "padding": "VALID", "stride_h": 1, "stride_w": 1,
        "dilation_h": 1, "dilation_w": 1, "fused_activation": "NONE",
    },
    "DEPTHWISE_CONV_2D": {
        "padding": "VALID", "stride_h": 1, "stride_w": 1, "depth_multiplier": 1,
        "dilation_h": 1, "dilation_w": 1, "fused_activation": "NONE",
    },
    "AVERAGE_POOL_2D": {
        "padding": "VALID", "stride_h": 1, "stride_w": 1,
        "filter_h": 1, "filter_w": 1, "fused_activation": "NONE",
    },
    "MAX_POOL_2D": {
        "padding": "VALID", "stride_h": 1, "stride_w": 1,
        "filter_h": 1, "filter_w": 1, "fused_activation": "NONE",
    },
    "MEAN": {"keep_dims": False},
    "REDUCE_MAX": {"keep_dims": False},
    "ADD": {"fused_activation": "NONE"},
    "SUB": {"fused_activation": "NONE"},
    "MUL": {"fused_activation": "NONE"},
    "CONCATENATION": {"axis": 0, "fused_activation": "NONE"},
    "PAD": {},
    "RESHAPE": {},
    "SQUEEZE": {"squeeze_dims": ()},
    "EXPAND_DIMS": {},
    "SOFTMAX": {"beta": 1.0},
    "LOGISTIC": {},
    "TANH": {},
    "RELU": {},
    "RELU6": {},
    "QUANTIZE": {},
    "DEQUANTIZE": {},
    "SPLIT": {"num_splits": 1},
    # Slicing and transposition of activations ([x, begin, end, strides] / [x, begin, size] /
    # [x, perm], constant parameters): what converters emit for x[..., :k] and NCHW layouts.
    "STRIDED_SLICE": {"begin_mask": 0, "end_mask": 0, "ellipsis_mask": 0, "new_axis_mask": 0,
                      "shrink_axis_mask": 0, "offset": False},
    "SLICE": {},
    "TRANSPOSE": {},
    "UNPACK": {"num": 1, "axis": 0},
    # Stacks equal-shaped inputs along a new axis (an unrolled RNN's return_sequences).
    "PACK": {"values_count": 1, "axis": 0},
}

SUPPORTED_OPS = tuple(OPTION_DEFAULTS)


@dataclass
class Quantization:
    """Affine quantization: ``real = scale * (q - zero_point)``.

    One element for per-tensor, one per slice along ``axis`` for per-channel.
    Scales are float32 as TFLite stores them; the kernels widen to double
    exactly where TFLM does.
    """

    scale: np.ndarray
    zero_point: np.ndarray
    axis: int = 0

    def __post_init__(self) -> None:
        self.scale = np.atleast_1d(np.asarray(self.scale, dtype=np.float32))
        self.zero_point = np.atleast_1d(np.asarray(self.zero_point, dtype=np.int64))
        if self.scale.shape != self.zero_point.shape:
            raise ValueError("scale and zero_point differ in length")

    @property
    def per_channel(self) -> bool:
        return self.scale.size > 1

    @property
    def s(self) -> float:
        """The per-tensor scale (float32 value as a Python float)."""
        return float(self.scale[0])

    @property
    def zp(self) -> int:
        return int(self.zero_point[0])

    @classmethod
    def per_tensor(cls, scale: float, zero_point: int) -> Quantization:
        return cls(np.array([scale], np.float32), np.array([zero_point], np.int64))


@dataclass
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: str
    quant: Quantization | None = None
    data: np.ndarray | None = None  # set for constants (weights, biases, shapes)

    def __post_init__(self) -> None:
        self.shape = tuple(int(d) for d in self.shape)
        if self.dtype not in DTYPES:
            raise ValueError(f"tensor {self.name!r}: unsupported dtype {self.dtype}")
        if self.data is not None:
            self.data = np.asarray(self.data, dtype=self.dtype).reshape(self.shape)

    @property
    def is_constant(self) -> bool:
        return self.data is not None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * np.dtype(self.dtype).itemsize


@dataclass
class Op:
    kind: str
    inputs: list[int]
    outputs: list[int]
    options: dict[str, object] = field(default_factory=dict)
    name: str = ""

    def __post_init__(self) -> None:
        if self.kind in OPTION_DEFAULTS:
            merged = dict(OPTION_DEFAULTS[self.kind])
            merged.update(self.options)
            self.options = merged


@dataclass
class Graph:
    """One subgraph: tensors, operators in execution order, graph inputs and outputs."""

    tensors: list[Tensor]
    ops: list[Op]
    inputs: list[int]
    outputs: list[int]
    name: str = "model"
    description: str = ""

    # ---- construction helpers -------------------------------------------
    def add_tensor(self, tensor: Tensor) -> int:
        self.tensors.append(tensor)
        return len(self.tensors) - 1

    def add_op(self, kind: str, inputs: list[int], outputs: list[int], name: str = "",
               **options: object) -> Op:
        name = name or f"{kind.lower()}_{len(self.ops)}"
        op = Op(kind, list(inputs), list(outputs), dict(options), name)
        self.ops.append(op)
        return op

    # ---- queries -----------------------------------------------------------
    def tensor(self, index: int) -> Tensor:
        return self.tensors[index]

    def producers(self) -> dict[int, int]:
        """Tensor index -> index of the op that writes it."""
        return {t: i for i, op in enumerate(self.ops) for t in op.outputs}

    def consumers(self) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {}
        for i, op in enumerate(self.ops):
            for t in op.inputs:
                if t >= 0:
                    out.setdefault(t, []).append(i)
        return out

    @property
    def input_tensors(self) -> list[Tensor]:
        return [self.tensors[i] for i in self.inputs]

    @property
    def output_tensors(self) -> list[Tensor]:
        return [self.tensors[i] for i in self.outputs]

    @property
    def is_quantized(self) -> bool:
        """True when every activation the ops compute on is int8."""
        return all(
            self.tensors[t].dtype == "int8"
            for op in self.ops if op.kind not in ("QUANTIZE", "DEQUANTIZE")
            for t in op.outputs
        )

    def weight_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors if t.is_constant)

    def prune(self) -> Graph:
        """Drop tensors nothing refers to; renumber indices. Returns self."""
        used = set(self.inputs) | set(self.outputs)
        for op in self.ops:
            used.update(t for t in op.inputs if t >= 0)
            used.update(op.outputs)
        order = sorted(used)
        remap = {old: new for new, old in enumerate(order)}
        self.tensors = [self.tensors[i] for i in order]
        for op in self.ops:
            op.inputs = [remap[t] if t >= 0 else -1 for t in op.inputs]
            op.outputs = [remap[t] for t in op.outputs]
        self.inputs = [remap[t] for t in self.inputs]
        self.outputs = [remap[t] for t in self.outputs]
        return self
