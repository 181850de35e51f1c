"""Semantic mutations of models: well-formed files with out-of-range contents.

Byte-level mutants of a model mostly break its structure; these edit one field
through the format's own object model and write a well-formed file again, so
the mutant reaches validation, shape inference and the interpreter: quantization
scales, zero points and dimensions; tensor shapes, types and buffers; operator
inputs, codes and every numeric option; weights set to NaN / inf / huge values;
ONNX attributes, initializer dims and raw data (and external data), opsets,
input shapes and element types.
"""

from __future__ import annotations

import random

import numpy as np
from mutate import FLOAT_VALUES, INT_VALUES

DIMS = (0, 1, 2, 3, -1, -2, 7, 64, 65536, 1 << 20, 0x7FFFFFFF)


def _int(rng: random.Random, old: int = 0) -> int:
    return rng.choice((*INT_VALUES, old + 1, old - 1, -old, old * 2, old * 1000))


# ---- .tflite -----------------------------------------------------------------------------

def tflite_semantic(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    sub = model.subgraphs[0]
    what = rng.choice(("quant", "quant", "quant", "shape", "type", "buffer", "op input",
                       "op code", "options", "options", "options", "weights", "weights",
                       "graph io", "signature", "order"))
    desc = what
    tensors = sub.tensors
    if what == "quant":
        t = rng.choice([t for t in tensors if t.quantization is not None] or tensors)
        q = t.quantization or schema.QuantizationParametersT()
        t.quantization = q
        field = rng.choice(("scale", "zero point", "dimension", "count", "drop"))
        scale = np.array(q.scale if q.scale is not None else [0.1], np.float32)
        zp = np.array(q.zeroPoint if q.zeroPoint is not None else [0], np.int64)
        if field == "scale":
            i = rng.randrange(len(scale))
            scale[i] = rng.choice(FLOAT_VALUES) if rng.random() < 0.7 else scale[i] * rng.choice(
                (1e-12, 1e-6, 1e6, 1e12, -1.0))
        elif field == "zero point":
            zp[rng.randrange(len(zp))] = rng.choice((*INT_VALUES, 127, 128, -129, 255, 256))
        elif field == "dimension":
            q.quantizedDimension = rng.choice((-1, 0, 1, 2, 3, 4, 7, 99, 0x7FFFFFFF))
        elif field == "count":
            n = rng.choice((0, 1, 2, len(scale) + 1, max(0, len(scale) - 1)))
            scale = np.resize(scale, n).astype(np.float32)
            zp = np.resize(zp, rng.choice((n, len(zp)))).astype(np.int64)
        else:
            t.quantization = None
        q.scale, q.zeroPoint = scale, zp
        desc = f"quant {field} of tensor '{t.name!r}'"
    elif what == "shape":
        t = rng.choice(tensors)
        shape = list(t.shape) if t.shape is not None else []
        op = rng.choice(("dim", "drop", "add"))
        if op == "dim" and shape:
            shape[rng.randrange(len(shape))] = rng.choice(DIMS)
        elif op == "drop" and shape:
            shape.pop(rng.randrange(len(shape)))
        else:
            shape.insert(rng.randrange(len(shape) + 1), rng.choice((1, 2)))
        t.shape = np.array(shape, np.int32)
        desc = f"shape {shape} for tensor {t.name!r}"
    elif what == "type":
        t = rng.choice(tensors)
        t.type = rng.choice([v for k, v in vars(schema.TensorType).items()
                             if not k.startswith("_")])
        desc = f"type {t.type} for tensor {t.name!r}"
    elif what == "buffer":
        t = rng.choice(tensors)
        t.buffer = rng.choice((0, 1, len(model.buffers) - 1, len(model.buffers),
                               rng.randrange(len(model.buffers))))
        desc = f"buffer {t.buffer} for tensor {t.name!r}"
    elif what == "op input":
        op = rng.choice(sub.operators)
        field = rng.choice(("inputs", "outputs"))
        values = list(getattr(op, field) if getattr(op, field) is not None else [])
        choice = rng.choice(("set", "drop", "add", "swap"))
        n = len(tensors)
        if choice == "set" and values:
            values[rng.randrange(len(values))] = rng.choice((-1, 0, n - 1, n, rng.randrange(n)))
        elif choice == "drop" and values:
            values.pop(rng.randrange(len(values)))
        elif choice == "swap" and len(values) > 1:
            i, j = rng.sample(range(len(values)), 2)
            values[i], values[j] = values[j], values[i]
        else:
            values.append(rng.choice((-1, rng.randrange(n))))
        setattr(op, field, np.array(values, np.int32))
        desc = f"operator {field} {values}"
    elif what == "op code":
        if rng.random() < 0.5:
            oc = rng.choice(model.operatorCodes)
            code = rng.choice([v for k, v in vars(schema.BuiltinOperator).items()
                               if not k.startswith("_")])
            oc.builtinCode, oc.deprecatedBuiltinCode = code, min(code, 127)
            desc = f"operator code {code}"
        else:
            op = rng.choice(sub.operators)
            op.opcodeIndex = rng.choice((0, len(model.operatorCodes) - 1,
                                         len(model.operatorCodes), 0x7FFFFFFF,
                                         rng.randrange(len(model.operatorCodes))))
            desc = f"opcode index {op.opcodeIndex}"
    elif what == "options":
        ops = [o for o in sub.operators if o.builtinOptions is not None]
        if not ops:
            return tflite_semantic(data, rng)
        op = rng.choice(ops)
        opts = op.builtinOptions
        names = [k for k, v in vars(opts).items()
                 if isinstance(v, (int, float, bool, np.ndarray))]
        if not names or rng.random() < 0.1:
            op.builtinOptionsType = rng.randrange(0, 130)
            desc = f"options type {op.builtinOptionsType}"
        else:
            name = rng.choice(names)
            old = getattr(opts, name)
            if isinstance(old, float):
                new = rng.choice((*FLOAT_VALUES, old * 1e30, -old))
            elif isinstance(old, np.ndarray):
                new = np.array([_int(rng) for _ in range(rng.choice((0, 1, len(old))))],
                               np.int32)
            else:
                new = rng.choice((0, 1, 2, 3, 4, 5, 6, 7, 8, -1, -2, 99, 127, -128,
                                  0x7FFFFFFF, -0x80000000, int(old) + 1))
                if isinstance(old, bool):
                    new = bool(new % 2)
                elif name in ("padding", "fusedActivationFunction",
                                                     "weightsFormat", "inDataType",
                                                     "outDataType", "outType"):
                    new = max(-128, min(127, new))  # a byte field
            setattr(opts, name, new)
            desc = f"option {type(opts).__name__}.{name} = {new!r}"
    elif what == "weights":
        bufs = [(i, b) for i, b in enumerate(model.buffers) if b.data is not None
                and len(b.data)]
        if not bufs:
            return tflite_semantic(data, rng)
        i, b = rng.choice(bufs)
        raw = bytearray(bytes(b.data))
        edit = rng.choice(("float", "float", "int32", "int8", "truncate", "extend"))
        if edit == "float" and len(raw) >= 4:
            k = rng.randrange(len(raw) // 4)
            raw[4 * k:4 * k + 4] = np.float32(rng.choice(FLOAT_VALUES)).tobytes()
        elif edit == "int32" and len(raw) >= 4:
            k = rng.randrange(len(raw) // 4)
            raw[4 * k:4 * k + 4] = np.int64(_int(rng)).astype(np.int32).tobytes()
        elif edit == "int8":
            value = rng.choice((-128, 127, 0))
            raw[:] = bytes([value & 0xFF]) * len(raw)
        elif edit == "truncate":
            raw = raw[: rng.randrange(len(raw))]
        else:
            raw += bytes(rng.choice((1, 4, 16)))
        b.data = np.frombuffer(bytes(raw), np.uint8)
        desc = f"buffer {i} {edit}"
    elif what == "graph io":
        field = rng.choice(("inputs", "outputs"))
        n = len(tensors)
        setattr(sub, field, np.array(rng.choice(([], [0], [n - 1], [n], [0, 1],
                                                 [rng.randrange(n)])), np.int32))
        desc = f"subgraph {field} {getattr(sub, field).tolist()}"
    elif what == "signature":
        t = rng.choice(tensors)
        shape = list(t.shape) if t.shape is not None else []
        sig = [rng.choice((-1, d, 0, -2)) for d in shape]
        t.shapeSignature = np.array(sig, np.int32)
        desc = f"shape signature {sig} of {t.name!r}"
    else:
        ops = sub.operators
        if len(ops) > 1:
            i = rng.randrange(len(ops) - 1)
            ops[i], ops[i + 1] = ops[i + 1], ops[i]
        desc = "operators swapped"
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output()), f"semantic: {desc}"


# ---- .onnx -------------------------------------------------------------------------------

def onnx_semantic(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    import onnx

    model = onnx.ModelProto()
    model.ParseFromString(data)
    g = model.graph
    what = rng.choice(("attribute", "attribute", "attribute", "initializer", "initializer",
                       "opset", "input", "node", "external"))
    desc = what
    if what == "attribute":
        nodes = [n for n in g.node if len(n.attribute)]
        node = rng.choice(nodes)
        a = rng.choice(node.attribute)
        if a.type == onnx.AttributeProto.INT:
            a.i = _int(rng, a.i)
            desc = f"{node.op_type}.{a.name} = {a.i}"
        elif a.type == onnx.AttributeProto.FLOAT:
            a.f = rng.choice((*FLOAT_VALUES, -a.f, a.f * 1e30))
            desc = f"{node.op_type}.{a.name} = {a.f}"
        elif a.type == onnx.AttributeProto.INTS and len(a.ints):
            values = list(a.ints)
            choice = rng.choice(("set", "drop", "add"))
            if choice == "set":
                values[rng.randrange(len(values))] = _int(rng)
            elif choice == "drop":
                values.pop()
            else:
                values.append(rng.choice((0, 1, -1)))
            del a.ints[:]
            a.ints.extend(values)
            desc = f"{node.op_type}.{a.name} = {values}"
        elif a.type == onnx.AttributeProto.STRING:
            a.s = rng.choice((b"", b"SAME_LOWER", b"SAME_UPPER", b"VALID", b"NOTSET",
                              b"reflect", b"\xff"))
            desc = f"{node.op_type}.{a.name} = {a.s!r}"
        elif a.type == onnx.AttributeProto.TENSOR:
            t = a.t
            t.dims[:] = [rng.choice(DIMS[:8])]
            desc = f"{node.op_type}.{a.name} tensor dims {list(t.dims)}"
        else:
            node.attribute.remove(a)
            desc = f"{node.op_type}: attribute {a.name} removed"
    elif what == "initializer" and len(g.initializer):
        t = rng.choice(g.initializer)
        edit = rng.choice(("dims", "values", "values", "raw", "type"))
        if edit == "dims" and len(t.dims):
            dims = list(t.dims)
            dims[rng.randrange(len(dims))] = rng.choice((*DIMS, 1 << 40))
            del t.dims[:]
            t.dims.extend(dims)
            desc = f"initializer {t.name} dims {dims}"
        elif edit == "values":
            arr = onnx.numpy_helper.to_array(t).copy()
            if arr.size:
                flat = arr.reshape(-1)
                k = rng.randrange(flat.size)
                if arr.dtype.kind == "f":
                    flat[k] = rng.choice(FLOAT_VALUES)
                else:
                    info = np.iinfo(arr.dtype)
                    flat[k] = max(info.min, min(info.max, _int(rng, int(flat[k]))))
                t.CopyFrom(onnx.numpy_helper.from_array(arr, t.name))
            desc = f"initializer {t.name} value changed"
        elif edit == "raw" and t.raw_data:
            t.raw_data = t.raw_data[: rng.randrange(len(t.raw_data))]
            desc = f"initializer {t.name} raw data cut"
        else:
            t.data_type = rng.choice((0, 2, 3, 6, 7, 9, 10, 11, 16, 99))
            desc = f"initializer {t.name} data type {t.data_type}"
    elif what == "opset":
        imp = rng.choice(model.opset_import)
        imp.version = rng.choice((0, 1, 5, 6, 7, 9, 11, 12, 17, 19, 21, 22, 25, 99, 1 << 40))
        desc = f"opset {imp.domain or 'ai.onnx'} {imp.version}"
        if rng.random() < 0.2:
            model.ir_version = rng.choice((0, 1, 3, 99))
            desc += f", ir_version {model.ir_version}"
    elif what == "input":
        inp = rng.choice(g.input)
        tt = inp.type.tensor_type
        if rng.random() < 0.2:
            tt.elem_type = rng.choice((0, 2, 6, 7, 10, 11, 16))
            desc = f"input {inp.name} elem type {tt.elem_type}"
        elif len(tt.shape.dim):
            d = rng.choice(tt.shape.dim)
            if rng.random() < 0.3:
                d.dim_param = "n"
            else:
                d.dim_value = rng.choice((*DIMS, 1 << 40))
            desc = f"input {inp.name} shape {tt.shape}"
    elif what == "node":
        node = rng.choice(g.node)
        edit = rng.choice(("op_type", "input", "remove", "duplicate"))
        if edit == "op_type":
            node.op_type = rng.choice(("Relu", "Conv", "Gemm", "Add", "Softmax", "MaxPool",
                                       "Reshape", "Transpose", "Concat", "Identity", "Loop",
                                       "Foo", "Flatten", "BatchNormalization", "Clip"))
        elif edit == "input" and len(node.input):
            names = [v for n in g.node for v in n.output] + [i.name for i in g.initializer]
            node.input[rng.randrange(len(node.input))] = rng.choice((*names, "", "missing"))
        elif edit == "remove" and len(g.node) > 1:
            g.node.remove(node)
        else:
            g.node.append(node)
        desc = f"node {node.name or node.op_type} {edit}"
    else:  # external data pointing elsewhere
        if len(g.initializer):
            t = rng.choice(g.initializer)
            t.ClearField("raw_data")
            t.data_location = onnx.TensorProto.EXTERNAL
            entry = t.external_data.add()
            entry.key, entry.value = "location", rng.choice(("weights.bin", "/etc/passwd",
                                                             "../../x", "/dev/zero"))
            desc = f"initializer {t.name} external data {entry.value}"
    return model.SerializeToString(), f"semantic: {desc}"
