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

import numpy as np

from kiloml.errors import KilomlError
from kiloml.nn.flatbuffer import Flatbuffer, FlatbufferError, Table
from kiloml.nn.graph import OPTION_DEFAULTS, SUPPORTED_OPS, Graph, Op, Quantization, Tensor
from kiloml.nn.tflite_fold import FOLDABLE, FoldError, fold_constants
from kiloml.nn.validate import MAX_RANK, MAX_TENSOR_ELEMENTS
from kiloml.optional import needs

with needs("tflite_micro", "reading and writing .tflite models"):
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

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
_OPTION_NAMES = {v: k for k, v in vars(schema.BuiltinOptions).items() if not k.startswith("_")}
_ACTIVATIONS = ("NONE", "RELU", "RELU_N1_TO_1", "RELU6")
_PADDINGS = ("SAME", "VALID")
_WEIGHTED = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D")
_BOUNDARY = ("QUANTIZE", "DEQUANTIZE")

# Builtin options: IR kind -> (options table, [(IR key, table field, conversion, vtable slot,
# struct format)]). Conversions: "int", "pos" (int >= 1), "bool", "float", "act", "pad",
# "dims", "dtype". The slot and format are the field's place in the flatbuffer (the
# schema's field id * 2 + 4) for the checked reader; the writer goes through the object API.
# The fold-only ops are listed so folding sees their options and tests can write them.
_Field = tuple[str, str, str, int, str]
_POOL: list[_Field] = [
    ("padding", "padding", "pad", 4, "b"), ("stride_w", "strideW", "pos", 6, "i"),
    ("stride_h", "strideH", "pos", 8, "i"), ("filter_w", "filterWidth", "pos", 10, "i"),
    ("filter_h", "filterHeight", "pos", 12, "i"),
    ("fused_activation", "fusedActivationFunction", "act", 14, "b"),
]
_CONV: list[_Field] = [
    ("padding", "padding", "pad", 4, "b"), ("stride_w", "strideW", "pos", 6, "i"),
    ("stride_h", "strideH", "pos", 8, "i"),
    ("fused_activation", "fusedActivationFunction", "act", 10, "b"),
    ("dilation_w", "dilationWFactor", "pos", 12, "i"),
    ("dilation_h", "dilationHFactor", "pos", 14, "i"),
]
_DEPTHWISE: list[_Field] = [
    ("padding", "padding", "pad", 4, "b"), ("stride_w", "strideW", "pos", 6, "i"),
    ("stride_h", "strideH", "pos", 8, "i"), ("depth_multiplier", "depthMultiplier", "pos", 10, "i"),
    ("fused_activation", "fusedActivationFunction", "act", 12, "b"),
    ("dilation_w", "dilationWFactor", "pos", 14, "i"),
    ("dilation_h", "dilationHFactor", "pos", 16, "i"),
]
_ACT_ONLY: list[_Field] = [("fused_activation", "fusedActivationFunction", "act", 4, "b")]
_OPTIONS: dict[str, tuple[str, list[_Field]]] = {
    "FULLY_CONNECTED": ("FullyConnectedOptions", [
        *_ACT_ONLY, ("keep_num_dims", "keepNumDims", "bool", 8, "?")]),
    "CONV_2D": ("Conv2DOptions", _CONV),
    "DEPTHWISE_CONV_2D": ("DepthwiseConv2DOptions", _DEPTHWISE),
    "AVERAGE_POOL_2D": ("Pool2DOptions", _POOL),
    "MAX_POOL_2D": ("Pool2DOptions", _POOL),
    "MEAN": ("ReducerOptions", [("keep_dims", "keepDims", "bool", 4, "?")]),
    "REDUCE_MAX": ("ReducerOptions", [("keep_dims", "keepDims", "bool", 4, "?")]),
    "ADD": ("AddOptions", _ACT_ONLY),
    "SUB": ("SubOptions", _ACT_ONLY),
    "MUL": ("MulOptions", _ACT_ONLY),
    "CONCATENATION": ("ConcatenationOptions", [
        ("axis", "axis", "int", 4, "i"),
        ("fused_activation", "fusedActivationFunction", "act", 6, "b")]),
    "PAD": ("PadOptions", []),
    "PADV2": ("PadV2Options", []),
    "RESHAPE": ("ReshapeOptions", []),  # newShape: written from the shape, ignored on read
    "SQUEEZE": ("SqueezeOptions", [("squeeze_dims", "squeezeDims", "dims", 4, "i")]),
    "EXPAND_DIMS": ("ExpandDimsOptions", []),
    "SOFTMAX": ("SoftmaxOptions", [("beta", "beta", "float", 4, "f")]),
    "QUANTIZE": ("QuantizeOptions", []),
    "DEQUANTIZE": ("DequantizeOptions", []),
    "SPLIT": ("SplitOptions", [("num_splits", "numSplits", "int", 4, "i")]),  # TFLM: #outputs
    "UNPACK": ("UnpackOptions", [("num", "num", "pos", 4, "i"), ("axis", "axis", "int", 6, "i")]),
    "SLICE": ("SliceOptions", []),
    "TRANSPOSE": ("TransposeOptions", []),
    # folded at import
    "SHAPE": ("ShapeOptions", [("out_type", "outType", "dtype", 4, "b")]),
    "STRIDED_SLICE": ("StridedSliceOptions", [
        ("begin_mask", "beginMask", "int", 4, "i"), ("end_mask", "endMask", "int", 6, "i"),
        ("ellipsis_mask", "ellipsisMask", "int", 8, "i"),
        ("new_axis_mask", "newAxisMask", "int", 10, "i"),
        ("shrink_axis_mask", "shrinkAxisMask", "int", 12, "i"),
        ("offset", "offset", "bool", 14, "?")]),
    "PACK": ("PackOptions", [("values_count", "valuesCount", "int", 4, "i"),
                             ("axis", "axis", "int", 6, "i")]),
    "GATHER": ("GatherOptions", [("axis", "axis", "int", 4, "i"),
                                 ("batch_dims", "batchDims", "int", 6, "i")]),
    "CAST": ("CastOptions", [("in_type", "inDataType", "dtype", 4, "b"),
                             ("out_type", "outDataType", "dtype", 6, "b")]),
}
# Vector fields of option tables kiloml does not use (FullyConnectedOptions.quant_spec,
# ReshapeOptions.new_shape): only checked to lie inside the file.
_UNREAD_OPTION_VECTORS = {"FULLY_CONNECTED": (14,), "RESHAPE": (4,)}
# Fields whose flatbuffer default is not 0 / False.
_FIELD_DEFAULTS = {"dilationWFactor": 1, "dilationHFactor": 1}

# (min inputs, max inputs, min outputs, max outputs; None = any) for supported ops,
# so later stages can index inputs without re-checking a user's file.
_ARITY: dict[str, tuple[int, int | None, int, int | None]] = {
    "FULLY_CONNECTED": (2, 3, 1, 1), "CONV_2D": (2, 3, 1, 1), "DEPTHWISE_CONV_2D": (2, 3, 1, 1),
    "MEAN": (2, 2, 1, 1), "REDUCE_MAX": (2, 2, 1, 1), "ADD": (2, 2, 1, 1), "MUL": (2, 2, 1, 1),
    "SUB": (2, 2, 1, 1), "PACK": (1, None, 1, 1),
    "CONCATENATION": (1, None, 1, 1), "PAD": (2, 3, 1, 1), "RESHAPE": (1, 2, 1, 1),
    "EXPAND_DIMS": (2, 2, 1, 1), "SPLIT": (2, 2, 1, None), "UNPACK": (1, 1, 1, None),
    "STRIDED_SLICE": (4, 4, 1, 1), "SLICE": (3, 3, 1, 1), "TRANSPOSE": (2, 2, 1, 1),
}

# Operand counts of the ops folded at import (checked before folding: TFLM runs them).
_FOLD_ARITY: dict[str, tuple[int, int | None, int, int | None]] = {
    "SHAPE": (1, 1, 1, 1), "STRIDED_SLICE": (4, 4, 1, 1), "PACK": (1, None, 1, 1),
    "GATHER": (2, 2, 1, 1), "CAST": (1, 1, 1, 1), "FILL": (2, 2, 1, 1), "SQUEEZE": (1, 1, 1, 1),
}

# vtable slots (field id * 2 + 4) of the schema tables the reader walks.
_MODEL_VERSION, _MODEL_CODES, _MODEL_SUBGRAPHS, _MODEL_DESCRIPTION, _MODEL_BUFFERS = (
    4, 6, 8, 10, 12)
_MODEL_METADATA_BUFFER, _MODEL_METADATA, _MODEL_SIGNATURES = 14, 16, 18
_METADATA_NAME, _METADATA_BUFFER = 4, 6
_SIGNATURE_INPUTS, _SIGNATURE_OUTPUTS, _SIGNATURE_KEY, _SIGNATURE_SUBGRAPH = 4, 6, 8, 12
_TENSOR_MAP_NAME, _TENSOR_MAP_INDEX = 4, 6
_CODE_DEPRECATED, _CODE_CUSTOM, _CODE_BUILTIN = 4, 6, 10
_SUB_TENSORS, _SUB_INPUTS, _SUB_OUTPUTS, _SUB_OPERATORS, _SUB_NAME = 4, 6, 8, 10, 12
_TENSOR_SHAPE, _TENSOR_TYPE, _TENSOR_BUFFER, _TENSOR_NAME, _TENSOR_QUANT = 4, 6, 8, 10, 12
_TENSOR_SPARSITY, _TENSOR_SIGNATURE = 16, 18
_QUANT_MIN, _QUANT_MAX, _QUANT_SCALE, _QUANT_ZERO_POINT = 4, 6, 8, 10
_QUANT_DETAILS_TYPE, _QUANT_DIMENSION = 12, 16
_BUFFER_DATA, _BUFFER_OFFSET, _BUFFER_SIZE = 4, 6, 8
_OP_CODE_INDEX, _OP_INPUTS, _OP_OUTPUTS, _OP_OPTIONS_TYPE, _OP_OPTIONS = 4, 6, 8, 10, 12
_OP_CUSTOM_OPTIONS, _OP_MUTATING_INPUTS, _OP_INTERMEDIATES = 14, 18, 20
_OP_LARGE_CUSTOM_OFFSET, _OP_LARGE_CUSTOM_SIZE, _OP_OPTIONS_2_TYPE = 22, 24, 26
_TENSOR_VARIANTS = 22
_FC_WEIGHTS_FORMAT = 6
# quantized_bias_type: FullyConnectedOptions field 4, Conv2DOptions field 6 (TensorType)
_BIAS_TYPE_SLOT = {"FULLY_CONNECTED": 12, "CONV_2D": 16}


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
    except FlatbufferError as exc:
        raise KilomlError(f"not a valid .tflite file: {exc}", file=file) from None
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

    _check_ops(graph, where, custom, kept, file)  # first: an unknown op is the real news
    _check_quantization(graph, where, file)
    for i, op in enumerate(graph.ops):  # named as Graph.add_op names them
        op.name = f"{op.kind.lower()}_{i}"
    return graph.prune()


def _error(path: str, message: str) -> FlatbufferError:
    return FlatbufferError(f"{path}: {message}")


class _Reader:
    """One checked pass over the flatbuffer into a raw graph (op kinds not yet checked)."""

    def __init__(self, data: bytes, file: str | Path) -> None:
        self.fb = Flatbuffer(data)
        self.file = file

    def read(self, fallback_name: str) -> tuple[Graph, dict[int, str]]:
        """The raw graph and the custom codes of custom operators (by operator index)."""
        model = self.fb.root("model")
        version = model.scalar(_MODEL_VERSION, "I", 0, "version")
        if version != 3:
            raise _error("model", f"schema version {version}, expected 3")
        subgraphs = model.tables(_MODEL_SUBGRAPHS, "subgraphs", "subgraph {i}")
        if len(subgraphs) == 0:
            raise _error("model", "the model has no subgraph")
        if len(subgraphs) > 1:
            raise KilomlError(f"model has {len(subgraphs)} subgraphs (control flow such as "
                              "IF/WHILE); kiloml supports single-subgraph models", file=self.file)
        codes = model.tables(_MODEL_CODES, "operator_codes", "operator code {i}")
        self.kinds = [self._op_code(codes[i]) for i in range(len(codes))]
        self.buffers = model.tables(_MODEL_BUFFERS, "buffers", "buffer {i}")
        self.buffer_cache: dict[int, bytes] = {}
        sub = subgraphs[0]

        tables = sub.tables(_SUB_TENSORS, "tensors", "subgraph 0 tensor {i}")
        tensors = [self._tensor(tables[i], i) for i in range(len(tables))]
        n = len(tensors)
        inputs = self._indices(sub, _SUB_INPUTS, "inputs", "subgraph 0")
        outputs = self._indices(sub, _SUB_OUTPUTS, "outputs", "subgraph 0")
        for what, indices in (("input", inputs), ("output", outputs)):
            for k, t in enumerate(indices):
                if not 0 <= t < n:
                    raise _error("subgraph 0", f"{what} {k} is tensor {t}, the subgraph has {n} "
                                 "tensors")

        ops: list[Op] = []
        custom: dict[int, str] = {}
        op_tables = sub.tables(_SUB_OPERATORS, "operators", "subgraph 0 operator {i}")
        for i in range(len(op_tables)):
            ops.append(self._operator(op_tables[i], i, tensors, custom))
        graph = Graph(tensors, ops, inputs, outputs,
                      name=sub.string(_SUB_NAME, "name") or fallback_name,
                      description=model.string(_MODEL_DESCRIPTION, "description"))
        self._check_unread(model, n)
        _check_order(graph, self.file)
        return graph, custom

    def _check_unread(self, model: Table, n_tensors: int) -> None:
        """The parts kiloml does not use but TFLM reads (metadata such as offline memory
        plans, signatures): in bounds, and their indices valid."""
        n_buffers = len(self.buffers)
        for i in range(n_buffers):  # the ones no tensor uses too: TFLM walks them all
            self._buffer_bytes(i)
        for i, b in enumerate(model.numbers(_MODEL_METADATA_BUFFER, "int32", "metadata_buffer")):
            if not 0 <= int(b) < n_buffers:
                raise _error("model", f"metadata_buffer {i} is buffer {int(b)}, the model has "
                             f"{n_buffers}")
        metadata = model.tables(_MODEL_METADATA, "metadata", "metadata {i}")
        for i in range(len(metadata)):
            m = metadata[i]
            m.string(_METADATA_NAME, "name")
            b = int(m.scalar(_METADATA_BUFFER, "I", 0, "buffer"))
            if not 0 <= b < n_buffers:
                raise _error(f"metadata {i}", f"buffer {b}, the model has {n_buffers}")
        signatures = model.tables(_MODEL_SIGNATURES, "signature_defs", "signature {i}")
        for i in range(len(signatures)):
            sig = signatures[i]
            sig.string(_SIGNATURE_KEY, "signature_key")
            if sig.scalar(_SIGNATURE_SUBGRAPH, "I", 0, "subgraph_index") != 0:
                raise _error(f"signature {i}", "subgraph_index is not 0 (the model has one "
                             "subgraph)")
            for slot, what in ((_SIGNATURE_INPUTS, "inputs"), (_SIGNATURE_OUTPUTS, "outputs")):
                maps = sig.tables(slot, what, f"signature {i} {what[:-1]} {{i}}")
                for k in range(len(maps)):
                    maps[k].string(_TENSOR_MAP_NAME, "name")
                    t = int(maps[k].scalar(_TENSOR_MAP_INDEX, "I", 0, "tensor_index"))
                    if not 0 <= t < n_tensors:
                        raise _error(f"signature {i} {what[:-1]} {k}", f"tensor {t}, the "
                                     f"subgraph has {n_tensors} tensors")

    @staticmethod
    def _indices(table: Table, slot: int, field: str, path: str) -> list[int]:
        del path  # the table carries its path
        return [int(v) for v in table.numbers(slot, "int32", field)]

    def _op_code(self, oc: Table) -> tuple[str, str]:
        """(operator kind, custom code) of one operator code."""
        deprecated = int(oc.scalar(_CODE_DEPRECATED, "b", 0, "deprecated_builtin_code"))
        builtin = int(oc.scalar(_CODE_BUILTIN, "i", 0, "builtin_code"))
        code = max(builtin, deprecated)
        kind = _OP_NAMES.get(code, f"BUILTIN_{code}")
        custom_code = oc.string(_CODE_CUSTOM, "custom_code")  # checked even when unused
        return kind, (custom_code if kind == "CUSTOM" else "")

    def _tensor(self, t: Table, index: int) -> Tensor:
        name = t.string(_TENSOR_NAME, "name") or f"tensor_{index}"
        where = f"tensor {index} '{name}'"
        code = int(t.scalar(_TENSOR_TYPE, "b", 0, "type"))
        if code == _TFL.FLOAT16:
            raise KilomlError("float16-quantized model: float16 tensors are not supported; export "
                              "float32 or convert with full-integer int8 quantization",
                              file=self.file, where=where)
        if code not in _DTYPE_OF:
            raise KilomlError(f"tensor type {_TYPE_NAMES.get(code, code)} is not supported "
                              f"(supported: {', '.join(_DTYPE_OF.values())})",
                              file=self.file, where=where)
        if t.has(_TENSOR_SPARSITY):
            raise KilomlError("sparse tensors are not supported", file=self.file, where=where)
        if t.length(_TENSOR_VARIANTS, 4, "variant_tensors"):
            raise KilomlError("variant tensors are not supported", file=self.file, where=where)
        dtype = _DTYPE_OF[code]
        shape = [int(d) for d in t.numbers(_TENSOR_SHAPE, "int32", "shape")]
        signature = [int(d) for d in t.numbers(_TENSOR_SIGNATURE, "int32", "shape_signature")]
        shape = self._static_shape(shape, signature, where)
        size = 1
        for d in shape:
            size *= d
        value = self._constant(int(t.scalar(_TENSOR_BUFFER, "I", 0, "buffer")), dtype, shape,
                               size, where)
        if value is None and size > MAX_TENSOR_ELEMENTS:
            raise KilomlError(f"shape {shape} has {size:,} elements; kiloml supports at most "
                              f"{MAX_TENSOR_ELEMENTS:,} per tensor", file=self.file, where=where)
        quant = None
        q = t.table(_TENSOR_QUANT, "quantization", f"subgraph 0 {where} quantization")
        if q is not None:
            quant = self._quantization(q, shape, where)
        return Tensor(name, tuple(shape), dtype, quant, value)

    def _static_shape(self, shape: list[int], signature: list[int], where: str) -> list[int]:
        """The shape with a dynamic batch (-1 in shape_signature, or in shape) read as 1."""
        if len(shape) > MAX_RANK:
            raise KilomlError(f"shape {shape} has rank {len(shape)}; kiloml supports at most "
                              f"{MAX_RANK}", file=self.file, where=where)
        # A dynamic batch is recorded as 1 in `shape` and -1 in shape_signature; a -1 in
        # `shape` itself is a dynamic tensor, which TFLM refuses to allocate.
        if any(d < 0 for d in shape):
            hint = (" (a dynamic batch is written as 1 in shape and -1 in shape_signature)"
                    if shape[0] == -1 and all(d >= 0 for d in shape[1:]) else "")
            raise KilomlError(f"dynamic or invalid shape {shape}; kiloml needs static shapes "
                              f"(only the batch dimension may be dynamic){hint}",
                              file=self.file, where=where)
        if signature:
            if len(signature) != len(shape):
                raise KilomlError(f"shape_signature {signature} and shape {shape} differ in "
                                  "rank", file=self.file, where=where)
            for axis, (s, d) in enumerate(zip(signature, shape, strict=True)):
                if s == -1 and (axis == 0 or d == 1):
                    continue  # the batch; a time-major RNN tensor carries it on axis 1
                if s == -1:
                    raise KilomlError(f"dimension {axis} is dynamic (shape_signature "
                                      f"{signature}); kiloml needs static shapes (only the batch "
                                      "dimension may be dynamic)", file=self.file, where=where)
                if s != d:
                    raise KilomlError(f"shape_signature {signature} disagrees with shape "
                                      f"{shape}", file=self.file, where=where)
        return shape

    def _quantization(self, q: Table, shape: list[int], where: str) -> Quantization | None:
        scale = q.numbers(_QUANT_SCALE, "float32", "scale")
        q.numbers(_QUANT_MIN, "float32", "min")  # unused, but inside the file
        q.numbers(_QUANT_MAX, "float32", "max")
        zp = q.numbers(_QUANT_ZERO_POINT, "int64", "zero_point")
        if not scale.size:
            return None  # min/max only (or nothing): not quantized
        if q.scalar(_QUANT_DETAILS_TYPE, "B", 0, "details_type") != 0:
            raise KilomlError("custom quantization details are not supported", file=self.file,
                              where=where)
        # TFLM reads one zero point per scale: a missing or short vector is read past its end
        axis = int(q.scalar(_QUANT_DIMENSION, "i", 0, "quantized_dimension"))
        if zp.size != scale.size:
            raise KilomlError(f"invalid quantization: {scale.size} scales and {zp.size} zero "
                              "points", file=self.file, where=where)
        if scale.size > 1 and (not 0 <= axis < len(shape) or shape[axis] != scale.size):
            dim = (f"dimension {axis} of shape {shape}" if 0 <= axis < len(shape)
                   else f"quantized_dimension {axis}, outside the rank {len(shape)} of shape "
                        f"{shape}")
            raise KilomlError(f"invalid quantization: {scale.size} scales, {zp.size} zero "
                              f"points for {dim}", file=self.file, where=where)
        if not 0 <= axis < max(len(shape), 1):
            raise KilomlError(f"invalid quantization: quantized_dimension {axis} is outside the "
                              f"rank {len(shape)} of shape {shape}", file=self.file, where=where)
        return Quantization(scale.astype(np.float32), zp.astype(np.int64), axis)

    def _constant(self, index: int, dtype: str, shape: list[int], size: int,
                  where: str) -> np.ndarray | None:
        n = len(self.buffers)
        if not 0 <= index < n:
            raise KilomlError(f"refers to buffer {index}, the model has {n} buffers",
                              file=self.file, where=where)
        if index == 0:
            return None
        raw = self._buffer_bytes(index)
        if not raw:
            return None
        itemsize = np.dtype(dtype).itemsize
        if len(raw) != size * itemsize:
            raise KilomlError(f"constant data has {len(raw)} bytes, shape {shape} of {dtype} "
                              f"needs {size * itemsize}", file=self.file, where=where)
        little = np.dtype(dtype).newbyteorder("<")
        return np.frombuffer(raw, dtype=little).astype(dtype).reshape(shape)

    def _buffer_bytes(self, index: int) -> bytes:
        """The bytes of buffer ``index`` (its data vector, or the large-model layout's
        offset and size from the start of the file), read once."""
        raw = self.buffer_cache.get(index)
        if raw is None:
            buf = self.buffers[index]
            off = int(buf.scalar(_BUFFER_OFFSET, "Q", 0, "offset"))
            length = int(buf.scalar(_BUFFER_SIZE, "Q", 0, "size"))
            if off > 1:  # large-model layout: data after the flatbuffer, offset from file start
                if off + length > self.fb.size:
                    raise _error(f"buffer {index}", f"{length} bytes at byte {off} lie outside "
                                 f"the file ({self.fb.size} bytes)")
                self.fb.charge(length, f"buffer {index}")
                raw = self.fb.data[off:off + length]
            else:
                raw = buf.raw(_BUFFER_DATA, "data")
            self.buffer_cache[index] = raw
        return raw

    def _operator(self, o: Table, index: int, tensors: list[Tensor],
                  custom: dict[int, str]) -> Op:
        path = f"subgraph 0 operator {index}"
        ci = int(o.scalar(_OP_CODE_INDEX, "I", 0, "opcode_index"))
        if not 0 <= ci < len(self.kinds):
            raise _error(path, f"operator code {ci}, the model has {len(self.kinds)}")
        kind, custom_code = self.kinds[ci]
        inputs = self._indices(o, _OP_INPUTS, "inputs", path)
        outputs = self._indices(o, _OP_OUTPUTS, "outputs", path)
        intermediates = self._indices(o, _OP_INTERMEDIATES, "intermediates", path)
        o.raw(_OP_CUSTOM_OPTIONS, "custom_options")
        o.raw(_OP_MUTATING_INPUTS, "mutating_variable_inputs")
        if o.scalar(_OP_OPTIONS_2_TYPE, "B", 0, "builtin_options_2_type") != 0:
            raise _error(f"{path} ({kind})", "builtin_options_2 are not supported")
        large = (int(o.scalar(_OP_LARGE_CUSTOM_OFFSET, "Q", 0, "large_custom_options_offset")),
                 int(o.scalar(_OP_LARGE_CUSTOM_SIZE, "Q", 0, "large_custom_options_size")))
        if large[0] and large[0] + large[1] > self.fb.size:
            raise _error(f"{path} ({kind})", f"large custom options ({large[1]} bytes at byte "
                         f"{large[0]}) lie outside the file")
        n = len(tensors)
        for what, indices, low in (("input", inputs, -1), ("output", outputs, 0),
                                   ("intermediate", intermediates, 0)):
            for k, t in enumerate(indices):
                if not low <= t < n:
                    raise _error(f"{path} ({kind})", f"{what} {k} is tensor {t}, the subgraph "
                                 f"has {n} tensors")
        if kind == "CUSTOM":
            custom[index] = custom_code or "?"
        out = f"'{tensors[outputs[0]].name}'" if outputs else "none"
        where = f"operator {index} {kind} (output {out})"
        arity = _ARITY.get("PAD" if kind == "PADV2" else kind) or _FOLD_ARITY.get(kind)
        if arity is not None:
            lo_in, hi_in, lo_out, hi_out = arity
            if not (lo_in <= len(inputs) <= (hi_in or len(inputs))
                    and lo_out <= len(outputs) <= (hi_out or len(outputs))):
                raise KilomlError(f"{len(inputs)} inputs and {len(outputs)} outputs: not a "
                                  f"valid {kind}", file=self.file, where=where)
        bias = tensors[inputs[2]].dtype if len(inputs) > 2 and inputs[2] >= 0 else None
        options = self._options(o, kind, where, bias)
        if kind == "PADV2":  # PAD with constant_values: one IR op, the 3rd input kept
            kind = "PAD"
        return Op(kind, inputs, outputs, options, name=f"{kind.lower()}_{index}")

    def _options(self, o: Table, kind: str, where: str,
                 bias_dtype: str | None = None) -> dict[str, object]:
        spec = _OPTIONS.get(kind)
        if spec is None:
            return {}
        table_name, fields = spec
        kind_code = int(o.scalar(_OP_OPTIONS_TYPE, "B", 0, "builtin_options_type"))
        if kind_code == schema.BuiltinOptions.NONE:
            # TFLM then uses zeroed parameters (a stride of 0, a softmax beta of 0): the
            # fields' flatbuffer defaults, checked like written ones.
            return self._option_values(None, kind, fields, f"{where} (no {table_name})")
        if kind_code != getattr(schema.BuiltinOptions, table_name):
            got = _OPTION_NAMES.get(kind_code, kind_code)
            raise KilomlError(f"carries builtin options of type {got}, expected {table_name}",
                              file=self.file, where=where)
        table = o.table(_OP_OPTIONS, "builtin_options", f"subgraph 0 {where} {table_name}")
        if table is None:
            return self._option_values(None, kind, fields, f"{where} (no {table_name})")
        if kind == "FULLY_CONNECTED" and table.scalar(_FC_WEIGHTS_FORMAT, "b", 0,
                                                      "weights_format") != 0:
            raise KilomlError("shuffled fully-connected weights are not supported",
                              file=self.file, where=where)
        if kind in _BIAS_TYPE_SLOT:
            bias_type = int(table.scalar(_BIAS_TYPE_SLOT[kind], "b", 0, "quantized_bias_type"))
            # FLOAT32 (0) means "not set"; else TFLM wants the bias tensor's own type
            expected = _TYPE_OF.get(bias_dtype) if bias_dtype is not None else None
            if bias_type != _TFL.FLOAT32 and bias_type != expected:
                name = _TYPE_NAMES.get(bias_type, bias_type)
                raise KilomlError(f"quantized_bias_type {name} does not match the bias "
                                  f"({bias_dtype or 'none'})", file=self.file, where=where)
        for slot in _UNREAD_OPTION_VECTORS.get(kind, ()):  # TFLM reads them; kiloml does not
            table.numbers(slot, "int32" if kind == "RESHAPE" else "uint8", "vector field")
        return self._option_values(table, kind, fields, where)

    def _option_values(self, table: Table | None, kind: str, fields: list[_Field],
                       where: str) -> dict[str, object]:
        """The IR options from an options table (None: every field at its default)."""
        opts: dict[str, object] = {}
        for key, attr, conv, slot, fmt in fields:
            if conv == "dims":
                values = table.numbers(slot, "int32", attr) if table is not None else ()
                opts[key] = tuple(int(v) for v in values)
            else:
                default = _FIELD_DEFAULTS.get(attr, 0)
                value = table.scalar(slot, fmt, default, attr) if table is not None else default
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
        if int(value) not in _DTYPE_OF:
            raise KilomlError(f"{key} is type code {value}, not a supported tensor type "
                              f"({', '.join(_DTYPE_OF.values())})", file=file, where=where)
        return _DTYPE_OF[int(value)]
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
            # An operator kiloml lacks is named later (_check_ops); its inputs may be state
            # variables no operator writes (UNIDIRECTIONAL_SEQUENCE_LSTM's h and c).
            if t >= 0 and t not in ready and (op.kind in SUPPORTED_OPS or op.kind in FOLDABLE):
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
            for key, attr, conv, _slot, _fmt in fields:
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
