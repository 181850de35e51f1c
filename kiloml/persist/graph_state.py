"""A network graph (kiloml.nn.graph) saved as JSON with its constants in the archive, and
read back checked as a model file from elsewhere is: here the document's types (indices
inside the graph, dtypes and shapes of constants and quantization arrays, option values
of their default's type, names that cannot close a C comment, each tensor written once),
then ``kiloml.nn.validate.validate_graph``, the check every imported model passes."""

from __future__ import annotations

import math

import numpy as np

from kiloml.nn.graph import (
    DTYPES,
    OPTION_DEFAULTS,
    Graph,
    Op,
    Quantization,
    Tensor,
)
from kiloml.nn.validate import ModelError, validate_graph
from kiloml.persist.archive import ArrayBook, describe
from kiloml.persist.codec import decode, encode
from kiloml.persist.fields import Fields

MAX_TENSORS = 1 << 20
MAX_DIM = 1 << 31
MAX_ELEMENTS = 1 << 31


def save_graph(graph: Graph, book: ArrayBook, key: str) -> dict:
    tensors = []
    for i, t in enumerate(graph.tensors):
        quant = None if t.quant is None else {
            "scale": book.put(f"{key}.t{i}.scale", t.quant.scale),
            "zero_point": book.put(f"{key}.t{i}.zero_point", t.quant.zero_point),
            "axis": int(t.quant.axis)}
        tensors.append({"name": t.name, "shape": [int(d) for d in t.shape], "dtype": t.dtype,
                        "quant": quant,
                        "data": None if t.data is None else book.put(f"{key}.t{i}.data", t.data)})
    ops = [{"kind": op.kind, "inputs": [int(i) for i in op.inputs],
            "outputs": [int(i) for i in op.outputs], "name": op.name,
            "options": encode(op.options, book, f"{key}.op{j}.options")}
           for j, op in enumerate(graph.ops)]
    return {"name": graph.name, "description": graph.description, "tensors": tensors,
            "ops": ops, "inputs": [int(i) for i in graph.inputs],
            "outputs": [int(i) for i in graph.outputs]}


def load_graph(f: Fields) -> Graph:
    tensors = [_tensor(t) for t in f.objects("tensors", MAX_TENSORS)]
    n = len(tensors)
    ops = [_op(o, n) for o in f.objects("ops", MAX_TENSORS)]
    graph = Graph(tensors, ops, f.ints("inputs", 0, n - 1), f.ints("outputs", 0, n - 1),
                  name=f.str("name"), description=f.str("description", max_length=1 << 20))
    f.done()
    written: set[int] = set()
    for j, op in enumerate(ops):
        for t in op.outputs:
            if tensors[t].is_constant or t in graph.inputs or t in written:
                raise f.doc.error(f"{f.path('ops')}[{j}].outputs",
                                  f"writes tensor {t}, a constant, a graph input or written "
                                  "before")
            written.add(t)
    try:
        validate_graph(graph)
    except ModelError as exc:
        where = f.where + (f": {exc.where}" if exc.where else "")
        raise f.doc.error(where, f"not a valid network: {exc.message}"[:400]) from None
    return graph


def _name(f: Fields, key: str) -> str:
    """Tensor and operator names end up in comments of the generated C: a name that
    closes the comment would put its own code into the library."""
    name = f.str(key, max_length=1000)
    if "*/" in name or any(ord(c) < 32 for c in name):
        raise f.error(key, f"{name[:40]!r} has a control character or '*/'")
    return name


def _tensor(f: Fields) -> Tensor:
    name = _name(f, "name")
    dtype = f.str("dtype", choices=DTYPES)
    shape = f.ints("shape", 0, MAX_DIM, max_items=8)
    if np.prod(shape, dtype=np.float64) > MAX_ELEMENTS:
        raise f.error("shape", f"{shape} has more than {MAX_ELEMENTS} elements")
    data = f.optional("data", lambda k: f.array(k, dtype, shape,
                                                finite=dtype == "float32"))
    quant = f.optional("quant", lambda k: _quant(f.object(k), dtype, shape))
    f.done()
    return Tensor(name, tuple(shape), dtype, quant, None if data is None else data.copy())


def _quant(f: Fields, dtype: str, shape: list[int]) -> Quantization:
    scale = f.array("scale", "float32", (None,))
    zero_point = f.array("zero_point", "int64", (len(scale),))
    axis = f.int("axis", 0, max(len(shape) - 1, 0))
    f.done()
    if len(scale) == 0:
        raise f.error("scale", "no scale")
    if len(scale) > 1 and (not shape or len(scale) != shape[axis]):
        raise f.error("scale", f"{len(scale)} per-channel scales for shape {shape} along "
                               f"axis {axis}")
    return Quantization(scale.copy(), zero_point.copy(), axis)


def _op(f: Fields, n_tensors: int) -> Op:
    kind = f.str("kind", choices=list(OPTION_DEFAULTS))
    inputs = f.ints("inputs", -1, n_tensors - 1, max_items=1 << 16)
    outputs = f.ints("outputs", 0, n_tensors - 1, max_items=1 << 16)
    name = _name(f, "name")
    where = f.path("options")
    options = decode(f.raw("options"), f.doc, where)
    f.done()
    if not isinstance(options, dict):
        raise f.doc.error(where, f"expected an object, got {describe(options)}")
    for key, default in OPTION_DEFAULTS[kind].items():
        if key not in options:
            raise f.doc.error(f"{where}.{key}", "missing")
        _check_option(options[key], default, key, f, where)
    for key, value in options.items():
        if key not in OPTION_DEFAULTS[kind] and not _plain_option(value):
            raise f.doc.error(f"{where}.{key}", f"unexpected {describe(value)}")
    return Op(kind, inputs, outputs, options, name)


def _plain_option(value: object) -> bool:
    if isinstance(value, tuple):
        return all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    return isinstance(value, (bool, int, float, str))


def _check_option(value: object, default: object, key: str, f: Fields, where: str) -> None:
    at = f"{where}.{key}"
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and \
            math.isfinite(value)
    elif isinstance(default, str):
        ok = isinstance(value, str)
    else:
        ok = _plain_option(value) and isinstance(value, tuple)
    if not ok:
        raise f.doc.error(at, f"{describe(value)} is not a valid {key}")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_DIM:
        raise f.doc.error(at, f"{value} is beyond any tensor's size")
