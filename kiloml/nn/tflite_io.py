"""Read and write TFLite flatbuffers (.tflite) as kiloml graphs.

``read_tflite`` parses with the schema shipped in the tflite-micro wheel, folds
the shape arithmetic converters emit around Flatten / Conv1D (see
``tflite_fold``), and rejects what kiloml cannot run with a one-line
``KilomlError``: control flow, custom or unsupported operators, and the
quantization schemes other than int8 / float32 (float16, dynamic-range hybrid,
16x8, legacy uint8).

``write_tflite`` produces a model the TFLM interpreter loads: schema version 3,
"TFL3" identifier, buffer 0 empty, constant data 16-byte aligned.

The reader walks the flatbuffer through the generated table accessors rather
than unpacking the whole object tree: flatbuffers does no bounds checking, so
every vector length is checked against the file size and the total number of
elements read is capped (overlapping tables in a corrupt file could otherwise
make the walk quadratic).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import flatbuffers
import numpy as np
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

from kiloml.errors import KilomlError
from kiloml.nn.graph import OPTION_DEFAULTS, SUPPORTED_OPS, Graph, Op, Quantization, Tensor
from kiloml.nn.tflite_fold import FoldError, fold_constants

__all__ = ["parse_tflite", "read_tflite", "write_tflite"]

_TFL = schema.TensorType
_DTYPE_OF = {
    _TFL.FLOAT32: "float32", _TFL.INT8: "int8", _TFL.UINT8: "uint8", _TFL.INT16: "int16",
    _TFL.INT32: "int32", _TFL.INT64: "int64", _TFL.BOOL: "bool",
}
_TYPE_OF = {v: k for k, v in _DTYPE_OF.items()}
_TYPE_NAMES = {v: k for k, v in vars(_TFL).items() if not k.startswith("_")}
_OP_CODES = {k: v for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
_OP_NAMES = {v: k for k, v in _OP_CODES.items()}
_ACTIVATIONS = ("NONE", "RELU", "RELU_N1_TO_1", "RELU6")
_PADDINGS = ("SAME", "VALID")
_WEIGHTED = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D")
_BOUNDARY = ("QUANTIZE", "DEQUANTIZE")

# Builtin options: IR kind -> (options table, [(IR key, table field, conversion)]).
# Conversions: "int", "pos" (int >= 1), "bool", "float", "act", "pad", "dims", "dtype".
# The fold-only ops are listed so folding sees their options and tests can write them.
_Field = tuple[str, str, str]
_POOL: list[_Field] = [
    ("padding", "padding", "pad"), ("stride_h", "strideH", "pos"),
    ("stride_w", "strideW", "pos"), ("filter_h", "filterHeight", "pos"),
    ("filter_w", "filterWidth", "pos"), ("fused_activation", "fusedActivationFunction", "act"),
]
_CONV: list[_Field] = [
    ("padding", "padding", "pad"), ("stride_h", "strideH", "pos"), ("stride_w", "strideW", "pos"),
    ("dilation_h", "dilationHFactor", "pos"), ("dilation_w", "dilationWFactor", "pos"),
    ("fused_activation", "fusedActivationFunction", "act"),
]
_ACT_ONLY: list[_Field] = [("fused_activation", "fusedActivationFunction", "act")]
_OPTIONS: dict[str, tuple[str, list[_Field]]] = {
    "FULLY_CONNECTED": ("FullyConnectedOptions", [
        *_ACT_ONLY, ("keep_num_dims", "keepNumDims", "bool")]),
    "CONV_2D": ("Conv2DOptions", _CONV),
    "DEPTHWISE_CONV_2D": ("DepthwiseConv2DOptions", [
        *_CONV, ("depth_multiplier", "depthMultiplier", "pos")]),
    "AVERAGE_POOL_2D": ("Pool2DOptions", _POOL),
    "MAX_POOL_2D": ("Pool2DOptions", _POOL),
    "MEAN": ("ReducerOptions", [("keep_dims", "keepDims", "bool")]),
    "REDUCE_MAX": ("ReducerOptions", [("keep_dims", "keepDims", "bool")]),
    "ADD": ("AddOptions", _ACT_ONLY),
    "MUL": ("MulOptions", _ACT_ONLY),
    "CONCATENATION": ("ConcatenationOptions", [("axis", "axis", "int"), *_ACT_ONLY]),
    "PAD": ("PadOptions", []),
    "PADV2": ("PadV2Options", []),
    "RESHAPE": ("ReshapeOptions", []),  # newShape: written from the shape, ignored on read
    "SQUEEZE": ("SqueezeOptions", [("squeeze_dims", "squeezeDims", "dims")]),
    "EXPAND_DIMS": ("ExpandDimsOptions", []),
    "SOFTMAX": ("SoftmaxOptions", [("beta", "beta", "float")]),
    "QUANTIZE": ("QuantizeOptions", []),
    "DEQUANTIZE": ("DequantizeOptions", []),
    "SPLIT": ("SplitOptions", [("num_splits", "numSplits", "pos")]),
    "UNPACK": ("UnpackOptions", [("num", "num", "pos"), ("axis", "axis", "int")]),
    "SLICE": ("SliceOptions", []),
    "TRANSPOSE": ("TransposeOptions", []),
    # folded at import
    "SHAPE": ("ShapeOptions", [("out_type", "outType", "dtype")]),
    "STRIDED_SLICE": ("StridedSliceOptions", [
        ("begin_mask", "beginMask", "int"), ("end_mask", "endMask", "int"),
        ("ellipsis_mask", "ellipsisMask", "int"), ("new_axis_mask", "newAxisMask", "int"),
        ("shrink_axis_mask", "shrinkAxisMask", "int"), ("offset", "offset", "bool")]),
    "PACK": ("PackOptions", [("values_count", "valuesCount", "int"), ("axis", "axis", "int")]),
    "GATHER": ("GatherOptions", [("axis", "axis", "int"), ("batch_dims", "batchDims", "int")]),
    "CAST": ("CastOptions", [("in_type", "inDataType", "dtype"),
                             ("out_type", "outDataType", "dtype")]),
}

# (min inputs, max inputs, min outputs, max outputs; None = any) for supported ops,
# so later stages can index inputs without re-checking a user's file.
_ARITY: dict[str, tuple[int, int | None, int, int | None]] = {
    "FULLY_CONNECTED": (2, 3, 1, 1), "CONV_2D": (2, 3, 1, 1), "DEPTHWISE_CONV_2D": (2, 3, 1, 1),
    "MEAN": (2, 2, 1, 1), "REDUCE_MAX": (2, 2, 1, 1), "ADD": (2, 2, 1, 1), "MUL": (2, 2, 1, 1),
    "CONCATENATION": (1, None, 1, 1), "PAD": (2, 3, 1, 1), "RESHAPE": (1, 2, 1, 1),
    "EXPAND_DIMS": (2, 2, 1, 1), "SPLIT": (2, 2, 1, None), "UNPACK": (1, 1, 1, None),
    "STRIDED_SLICE": (4, 4, 1, 1), "SLICE": (3, 3, 1, 1), "TRANSPOSE": (2, 2, 1, 1),
}

_MAX_DIM = 1 << 31


class _Corrupt(Exception):
    """Structural damage found while walking the flatbuffer."""


# ---------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------

def read_tflite(path: str | Path) -> Graph:
    """Import a .tflite file as a kiloml graph (folded, validated)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KilomlError(f"cannot read the model: {exc.strerror or exc}", file=path) from None
    return parse_tflite(data, file=path, name=path.stem)


def parse_tflite(data: bytes, *, file: str | Path = "<bytes>", name: str = "model") -> Graph:
    """Import .tflite bytes; ``file`` and ``name`` are used in errors and as a fallback name."""
    data = bytes(data)
    if not data:
        raise KilomlError("not a valid .tflite file: the file is empty", file=file)
    if len(data) < 8:
        raise KilomlError(f"not a valid .tflite file: only {len(data)} bytes", file=file)
    if data[4:8] != b"TFL3":
        raise KilomlError(f"not a valid .tflite file: file identifier {data[4:8]!r}, "
                          "expected b'TFL3'", file=file)
    try:
        graph, custom = _Reader(data, file).read(name)
    except KilomlError:
        raise
    except _Corrupt as exc:
        raise KilomlError(f"not a valid .tflite file: {exc}", file=file) from None
    except Exception as exc:  # flatbuffers does no bounds checks: anything may surface
        reason = str(exc).split("\n")[0][:80] or type(exc).__name__
        raise KilomlError("not a valid .tflite file: corrupt or truncated flatbuffer "
                          f"({type(exc).__name__}: {reason})", file=file) from None
    try:
        kept = fold_constants(graph)  # positions in the file of the ops that remain
    except FoldError as exc:
        raise KilomlError(exc.message, file=file, where=f"operator {exc.op_index} {exc.kind} "
                          f"(output '{exc.output}')") from None

    def where(pos: int) -> str:
        op, index = graph.ops[pos], kept[pos]
        out = graph.tensors[op.outputs[0]].name if op.outputs else "?"
        kind = f"CUSTOM '{custom[index]}'" if index in custom else op.kind
        return f"operator {index} {kind} (output '{out}')"

    _check_quantization(graph, where, file)
    _check_ops(graph, where, custom, kept, file)
    for i, op in enumerate(graph.ops):  # named as Graph.add_op names them
        op.name = f"{op.kind.lower()}_{i}"
    return graph.prune()


class _Reader:
    """One pass over the flatbuffer into a raw graph (op kinds not yet checked)."""

    def __init__(self, data: bytes, file: str | Path) -> None:
        self.data = data
        self.file = file
        # Each element of every vector read costs one unit; a sane file never
        # reads anything twice except shared buffers.
        self.budget = 4 * len(data) + 4096

    # ---- bounded accessors ------------------------------------------------
    def _count(self, n: int, width: int) -> int:
        if n < 0 or n * width > len(self.data):
            raise _Corrupt(f"a vector of {n} entries does not fit in {len(self.data)} bytes")
        self.budget -= n + 1
        if self.budget < 0:
            raise _Corrupt("tables overlap (corrupt offsets)")
        return n

    def _ints(self, arr: object) -> list[int]:
        """A numpy view from a generated ``...AsNumpy()`` (0 when absent) as ints."""
        if not isinstance(arr, np.ndarray):
            return []
        self._count(arr.size, arr.itemsize)
        return [int(v) for v in arr]

    @staticmethod
    def _str(raw: bytes | None) -> str:
        return raw.decode("utf-8", errors="replace") if raw else ""

    # ---- model --------------------------------------------------------------
    def read(self, fallback_name: str) -> tuple[Graph, dict[int, str]]:
        """The raw graph and the custom codes of custom operators (by operator index)."""
        data = self.data
        root = int.from_bytes(data[:4], "little")
        if root + 4 > len(data):
            raise _Corrupt(f"root table offset {root} lies outside the file")
        model = schema.Model.GetRootAs(data, 0)
        if model.Version() != 3:
            raise _Corrupt(f"schema version {model.Version()}, expected 3")
        n_sub = self._count(model.SubgraphsLength(), 4)
        if n_sub == 0:
            raise _Corrupt("the model has no subgraph")
        if n_sub > 1:
            raise KilomlError(f"model has {n_sub} subgraphs (control flow such as IF/WHILE); "
                              "kiloml supports single-subgraph models", file=self.file)
        codes = [model.OperatorCodes(i) for i in range(self._count(model.OperatorCodesLength(), 4))]
        self.model = model
        self.n_buffers = self._count(model.BuffersLength(), 4)
        self.buffer_cache: dict[int, bytes] = {}
        sub = model.Subgraphs(0)

        tensors = [self._tensor(sub.Tensors(i), i)
                   for i in range(self._count(sub.TensorsLength(), 4))]
        n = len(tensors)
        inputs, outputs = self._ints(sub.InputsAsNumpy()), self._ints(sub.OutputsAsNumpy())
        for t in inputs + outputs:
            if not 0 <= t < n:
                raise _Corrupt(f"subgraph input/output {t} is not a tensor index (0..{n - 1})")

        ops: list[Op] = []
        custom: dict[int, str] = {}
        for i in range(self._count(sub.OperatorsLength(), 4)):
            ops.append(self._operator(sub.Operators(i), i, codes, tensors, custom))
        graph = Graph(tensors, ops, inputs, outputs,
                      name=self._str(sub.Name()) or fallback_name,
                      description=self._str(model.Description()))
        _check_order(graph, self.file)
        return graph, custom

    def _tensor(self, t: schema.Tensor, index: int) -> Tensor:
        name = self._str(t.Name()) or f"tensor_{index}"
        where = f"tensor {index} '{name}'"
        code = t.Type()
        if code == _TFL.FLOAT16:
            raise KilomlError("float16-quantized model: float16 tensors are not supported; export "
                              "float32 or convert with full-integer int8 quantization",
                              file=self.file, where=where)
        if code not in _DTYPE_OF:
            raise KilomlError(f"tensor type {_TYPE_NAMES.get(code, code)} is not supported "
                              f"(supported: {', '.join(_DTYPE_OF.values())})",
                              file=self.file, where=where)
        if t.Sparsity() is not None:
            raise KilomlError("sparse tensors are not supported", file=self.file, where=where)
        dtype = _DTYPE_OF[code]
        shape = self._ints(t.ShapeAsNumpy())
        # A dynamic batch is recorded as 1 in `shape` (-1 only in shape_signature); an
        # exporter that writes -1 into `shape` itself still means batch 1.
        if shape and shape[0] == -1:
            shape[0] = 1
        if any(not 0 <= d < _MAX_DIM for d in shape):
            raise KilomlError(f"dynamic or invalid shape {shape}; kiloml needs static shapes "
                              "(only the batch dimension may be dynamic)",
                              file=self.file, where=where)
        size = int(np.prod(shape, dtype=object)) if shape else 1
        if size * np.dtype(dtype).itemsize > len(self.data) * 64 + (1 << 26):
            raise _Corrupt(f"{where} claims shape {shape}")

        quant = None
        q = t.Quantization()
        if q is not None:
            scale = q.ScaleAsNumpy()
            if isinstance(scale, np.ndarray) and scale.size:
                self._count(scale.size, 4)
                zps = q.ZeroPointAsNumpy()
                zp = zps if isinstance(zps, np.ndarray) and zps.size else np.zeros(scale.size)
                self._count(zp.size, 8)
                axis = q.QuantizedDimension()
                if zp.size != scale.size or (scale.size > 1 and (
                        not 0 <= axis < len(shape) or shape[axis] != scale.size)):
                    raise KilomlError(f"invalid quantization: {scale.size} scales, {zp.size} "
                                      f"zero points, quantized dimension {axis} of shape {shape}",
                                      file=self.file, where=where)
                quant = Quantization(scale.astype(np.float32), zp.astype(np.int64), axis)

        value = self._constant(t.Buffer(), dtype, shape, size, where)
        return Tensor(name, tuple(shape), dtype, quant, value)

    def _constant(self, index: int, dtype: str, shape: list[int], size: int,
                  where: str) -> np.ndarray | None:
        if not 0 <= index < self.n_buffers:
            raise _Corrupt(f"{where} refers to buffer {index} of {self.n_buffers}")
        if index == 0:
            return None
        raw = self.buffer_cache.get(index)
        if raw is None:
            buf = self.model.Buffers(index)
            off, length = buf.Offset(), buf.Size()
            if off > 1:  # large-model layout: data after the flatbuffer, offset from file start
                if off + length > len(self.data):
                    raise _Corrupt(f"buffer {index} ({length} bytes at {off}) lies outside "
                                   "the file")
                raw = self.data[off:off + length]
            else:
                arr = buf.DataAsNumpy()
                raw = arr.tobytes() if isinstance(arr, np.ndarray) else b""
            self._count(len(raw), 1)
            self.buffer_cache[index] = raw
        if not raw:
            return None
        itemsize = np.dtype(dtype).itemsize
        if len(raw) != size * itemsize:
            raise KilomlError(f"constant data has {len(raw)} bytes, shape {shape} of {dtype} "
                              f"needs {size * itemsize}", file=self.file, where=where)
        little = np.dtype(dtype).newbyteorder("<")
        return np.frombuffer(raw, dtype=little).astype(dtype).reshape(shape)

    def _operator(self, o: schema.Operator, index: int, codes: list[schema.OperatorCode],
                  tensors: list[Tensor], custom: dict[int, str]) -> Op:
        ci = o.OpcodeIndex()
        if not 0 <= ci < len(codes):
            raise _Corrupt(f"operator {index} uses operator code {ci} of {len(codes)}")
        oc = codes[ci]
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        kind = _OP_NAMES.get(code, f"BUILTIN_{code}")
        inputs, outputs = self._ints(o.InputsAsNumpy()), self._ints(o.OutputsAsNumpy())
        n = len(tensors)
        if any(not -1 <= t < n for t in inputs) or any(not 0 <= t < n for t in outputs):
            raise _Corrupt(f"operator {index} ({kind}) refers to a tensor outside 0..{n - 1}")
        if kind == "CUSTOM":
            custom[index] = self._str(oc.CustomCode()) or "?"
        out = f"'{tensors[outputs[0]].name}'" if outputs else "none"
        where = f"operator {index} {kind} (output {out})"
        options = self._options(o, kind, where)
        if kind == "PADV2":  # PAD with constant_values: one IR op, the 3rd input kept
            kind = "PAD"
        return Op(kind, inputs, outputs, options, name=f"{kind.lower()}_{index}")

    def _options(self, o: schema.Operator, kind: str, where: str) -> dict[str, object]:
        spec = _OPTIONS.get(kind)
        if spec is None:
            return {}
        table_name, fields = spec
        kind_code = o.BuiltinOptionsType()
        if kind_code == schema.BuiltinOptions.NONE or o.BuiltinOptions() is None:
            return {}  # TFLite's defaults; the IR's defaults fill in
        if kind_code != getattr(schema.BuiltinOptions, table_name):
            raise _Corrupt(f"{where} carries builtin options of type {kind_code}")
        obj = schema.BuiltinOptionsCreator(kind_code, o.BuiltinOptions())
        if kind == "FULLY_CONNECTED" and obj.weightsFormat != 0:
            raise KilomlError("shuffled fully-connected weights are not supported",
                              file=self.file, where=where)
        opts: dict[str, object] = {}
        for key, attr, conv in fields:
            value = getattr(obj, attr)
            if conv == "dims":
                opts[key] = tuple(self._ints(value))
            else:
                opts[key] = _from_field(value, conv, key, self.file, where)
        return opts


def _from_field(value: object, conv: str, key: str, file: str | Path, where: str) -> object:
    if conv == "act":
        if not 0 <= int(value) < len(_ACTIVATIONS):
            raise KilomlError(f"fused activation {_act_name(int(value))} is not supported "
                              f"(supported: {', '.join(_ACTIVATIONS)})", file=file, where=where)
        return _ACTIVATIONS[int(value)]
    if conv == "pad":
        if not 0 <= int(value) < len(_PADDINGS):
            raise KilomlError(f"unknown padding {value}", file=file, where=where)
        return _PADDINGS[int(value)]
    if conv == "pos":
        if int(value) < 1:
            raise KilomlError(f"{key} = {value}, must be at least 1", file=file, where=where)
        return int(value)
    if conv == "bool":
        return bool(value)
    if conv == "float":
        return float(value)
    if conv == "dtype":
        return _DTYPE_OF.get(int(value), str(value))
    return int(value)


def _act_name(code: int) -> str:
    names = {v: k for k, v in vars(schema.ActivationFunctionType).items() if not k.startswith("_")}
    return names.get(code, str(code))


# ---------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------

def _check_order(graph: Graph, file: str | Path) -> None:
    """Ops come in execution order, each tensor written once: what the IR assumes."""
    ready = set(graph.inputs) | {i for i, t in enumerate(graph.tensors) if t.is_constant}
    for i, op in enumerate(graph.ops):
        out = graph.tensors[op.outputs[0]].name if op.outputs else "?"
        where = f"operator {i} {op.kind} (output '{out}')"
        for t in op.inputs:
            if t >= 0 and t not in ready:
                raise KilomlError(f"reads tensor '{graph.tensors[t].name}' before any operator "
                                  "writes it", file=file, where=where)
        for t in op.outputs:
            if t in ready:
                raise KilomlError(f"writes tensor '{graph.tensors[t].name}', which is a constant, "
                                  "a graph input or written before", file=file, where=where)
            ready.add(t)


def _check_quantization(graph: Graph, where: Callable[[int], str], file: str | Path) -> None:
    t = graph.tensors
    for pos, op in enumerate(graph.ops):
        acts = [t[i] for i in [*op.inputs, *op.outputs] if i >= 0 and not t[i].is_constant]
        if op.kind in _WEIGHTED and len(op.inputs) >= 2:
            x, w = t[op.inputs[0]], t[op.inputs[1]]
            if x.dtype == "float32" and w.is_constant and w.dtype in ("int8", "uint8"):
                raise KilomlError("dynamic-range (hybrid) quantization is not supported: int8 "
                                  "weights with float32 activations; convert with full-integer "
                                  "int8 quantization (representative dataset) or export float32",
                                  file=file, where=where(pos))
        if op.kind in _BOUNDARY:
            continue  # int16 / uint8 <-> int8 / float conversions at the model's edge are fine
        if any(a.dtype == "int16" for a in acts):
            raise KilomlError("16x8 quantization (int16 activations) is not supported; convert "
                              "with int8 activations", file=file, where=where(pos))
        if any(a.dtype == "uint8" for a in acts):
            raise KilomlError("uint8 (legacy) quantized activations are not supported; convert "
                              "with int8 quantization", file=file, where=where(pos))


def _check_ops(graph: Graph, where: Callable[[int], str], custom: dict[int, str],
               kept: list[int], file: str | Path) -> None:
    supported = ", ".join(SUPPORTED_OPS)
    for pos, op in enumerate(graph.ops):
        if kept[pos] in custom:
            raise KilomlError(f"unsupported operator: custom operator '{custom[kept[pos]]}' "
                              f"(supported: {supported})", file=file, where=where(pos))
        if op.kind not in SUPPORTED_OPS:
            raise KilomlError(f"unsupported operator {op.kind} (supported: {supported})",
                              file=file, where=where(pos))
        lo_in, hi_in, lo_out, hi_out = _ARITY.get(op.kind, (1, 1, 1, 1))
        n_in = len(op.inputs)
        if not lo_in <= n_in <= (hi_in or n_in) or not lo_out <= len(op.outputs) <= (
                hi_out or len(op.outputs)):
            raise KilomlError(f"{n_in} inputs and {len(op.outputs)} outputs: not a valid "
                              f"{op.kind}", file=file, where=where(pos))
        if any(t < 0 for t in op.inputs[:2 if op.kind in _WEIGHTED else n_in]):
            raise KilomlError("a required input is missing (-1)", file=file, where=where(pos))


# ---------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------

class _AlignedBufferT(schema.BufferT):
    """A buffer whose data starts on a 16-byte boundary, as the converter writes it
    (``force_align: 16`` in the schema, which the Python object API ignores)."""

    def Pack(self, builder: flatbuffers.Builder) -> int:  # the flatbuffers object API's name
        vec = None
        if self.data:
            payload = bytes(self.data)
            builder.StartVector(1, len(payload), 16)
            builder.head = builder.head - len(payload)
            builder.Bytes[builder.head:builder.head + len(payload)] = payload
            builder.vectorNumElems = len(payload)
            vec = builder.EndVector()
        schema.BufferStart(builder)
        if vec is not None:
            schema.BufferAddData(builder, vec)
        return schema.BufferEnd(builder)


def write_tflite(graph: Graph, path: str | Path | None = None) -> bytes:
    """Serialize ``graph`` as a .tflite flatbuffer; also write it to ``path`` if given.

    A one-input RESHAPE gets a constant int32 shape tensor (so it reads back with two
    inputs), a three-input PAD is written as PADV2, and an empty description becomes
    "kiloml". Raises ValueError for a graph no TFLite model can express.
    """
    buffers: list[schema.BufferT] = [_AlignedBufferT()]
    tensors: list[schema.TensorT] = []

    def add_tensor(t: Tensor) -> int:
        tt = schema.TensorT()
        tt.name = t.name
        tt.shape = np.array(t.shape, dtype=np.int32)
        tt.shapeSignature = np.array(t.shape, dtype=np.int32)
        tt.hasRank = True
        if t.dtype not in _TYPE_OF:
            raise ValueError(f"tensor {t.name!r}: dtype {t.dtype} cannot be written")
        tt.type = _TYPE_OF[t.dtype]
        if t.quant is not None:
            q = schema.QuantizationParametersT()
            q.scale = np.asarray(t.quant.scale, dtype=np.float32)
            q.zeroPoint = np.asarray(t.quant.zero_point, dtype=np.int64)
            q.quantizedDimension = int(t.quant.axis)
            tt.quantization = q
        if t.is_constant:
            little = np.dtype(t.dtype).newbyteorder("<")
            buf = _AlignedBufferT()
            buf.data = np.ascontiguousarray(t.data, dtype=little).tobytes()
            tt.buffer = len(buffers)
            buffers.append(buf)
        tensors.append(tt)
        return len(tensors) - 1

    for t in graph.tensors:
        add_tensor(t)

    codes: dict[int, int] = {}
    op_codes: list[schema.OperatorCodeT] = []
    operators: list[schema.OperatorT] = []
    for op in graph.ops:
        kind, inputs = op.kind, list(op.inputs)
        if kind == "PAD" and len(inputs) == 3:
            kind = "PADV2"
        if kind == "RESHAPE":
            new_shape = _reshape_target(graph, op)
            if len(inputs) == 1:  # TFLM reads the target shape from a tensor
                out = graph.tensors[op.outputs[0]]
                inputs.append(add_tensor(Tensor(f"{out.name}/shape", (len(new_shape),), "int32",
                                                data=np.array(new_shape, np.int32))))
        if kind not in _OP_CODES:
            raise ValueError(f"op {op.name!r}: {kind} is not a TFLite builtin operator")
        code = _OP_CODES[kind]
        if code not in codes:
            oc = schema.OperatorCodeT()
            oc.builtinCode = code
            oc.deprecatedBuiltinCode = min(code, 127)
            oc.version = 1
            codes[code] = len(op_codes)
            op_codes.append(oc)
        ot = schema.OperatorT()
        ot.opcodeIndex = codes[code]
        ot.inputs = np.array(inputs, dtype=np.int32)
        ot.outputs = np.array(op.outputs, dtype=np.int32)
        if kind in _OPTIONS:
            table_name, fields = _OPTIONS[kind]
            obj = getattr(schema, table_name + "T")()
            options = {**OPTION_DEFAULTS.get(op.kind, {}), **op.options}
            for key, attr, conv in fields:
                if key in options:
                    try:
                        setattr(obj, attr, _to_field(options[key], conv))
                    except (ValueError, KeyError, TypeError):
                        raise ValueError(f"op {op.name!r}: option {key}={options[key]!r} cannot "
                                         "be written") from None
            if kind == "RESHAPE":
                obj.newShape = np.array(new_shape, dtype=np.int32)
            ot.builtinOptionsType = getattr(schema.BuiltinOptions, table_name)
            ot.builtinOptions = obj
        operators.append(ot)

    sub = schema.SubGraphT()
    sub.tensors = tensors
    sub.inputs = np.array(graph.inputs, dtype=np.int32)
    sub.outputs = np.array(graph.outputs, dtype=np.int32)
    sub.operators = operators
    sub.name = graph.name
    model = schema.ModelT()
    model.version = 3
    model.operatorCodes = op_codes
    model.subgraphs = [sub]
    model.description = graph.description or "kiloml"
    model.buffers = buffers
    builder = flatbuffers.Builder(1024 + sum(len(b.data or b"") for b in buffers))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    data = bytes(builder.Output())
    if path is not None:
        Path(path).write_bytes(data)
    return data


def _reshape_target(graph: Graph, op: Op) -> list[int]:
    if len(op.inputs) > 1 and op.inputs[1] >= 0 and graph.tensors[op.inputs[1]].is_constant:
        return [int(v) for v in np.ravel(graph.tensors[op.inputs[1]].data)]
    return list(graph.tensors[op.outputs[0]].shape)


def _to_field(value: object, conv: str) -> object:
    if conv == "act":
        return _ACTIVATIONS.index(str(value))
    if conv == "pad":
        return _PADDINGS.index(str(value))
    if conv == "dims":
        return np.array(list(value), dtype=np.int32)  # type: ignore[call-overload]
    if conv == "bool":
        return bool(value)
    if conv == "float":
        return float(value)  # type: ignore[arg-type]
    if conv == "dtype":
        return _TYPE_OF[str(value)]
    return int(value)  # type: ignore[call-overload]
