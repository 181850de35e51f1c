"""What an .onnx file must satisfy before kiloml's importer reads it, and typed attributes.

``onnx.checker`` checks a model against the operator schemas, not the values:
attribute list lengths, ranges (a stride of 0, a negative pad, an axis beyond the
rank), raw_data sizes against dims and external data files are the importer's
business. ``check_model_limits`` refuses, before any tensor is decoded:

- opsets outside ``SUPPORTED_OPSETS`` (ai.onnx 7..28, ai.onnx.ml 1..5);
- graphs of more than ``MAX_NODES`` nodes, subgraphs (If / Loop / Scan), sparse
  initializers;
- tensors whose data does not match their dims and type, or that declare more
  than ``MAX_TENSOR_ELEMENTS``.

External data (``torch.onnx.export``'s default writes the weights to
``model.onnx.data`` beside the model) is read by ``inline_external_data`` before
anything else, under stricter rules than onnx's own loader: the location is a plain
file name in the model's own folder (no path, no ``..``, no link leading elsewhere),
a regular file (never a FIFO or a device), ``offset`` and ``length`` inside it and
``length`` equal to what the dims need, at most ``MAX_EXTERNAL_BYTES`` in all; only
initializers may use it. The bytes become the tensors' raw_data, so nothing later
opens another file.

``Attributes`` wraps a node's attributes with getters that check the type and the
range and raise a one-line KilomlError naming the node and the attribute.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from kiloml.data.files import open_regular
from kiloml.errors import KilomlError
from kiloml.nn.validate import MAX_TENSOR_ELEMENTS
from kiloml.optional import needs

__all__ = ["MAX_NODES", "SUPPORTED_OPSETS", "Attributes", "check_model_limits",
           "inline_external_data"]

SUPPORTED_OPSETS = {"": (7, 28), "ai.onnx": (7, 28), "ai.onnx.ml": (1, 5)}
MAX_NODES = 10_000
MAX_EXTERNAL_BYTES = 256 << 20
_EXTERNAL_KEYS = ("location", "offset", "length", "checksum")
INT32_MAX = (1 << 31) - 1

# TensorProto data types -> (item size in bytes, the typed field holding the values)
_DATA_TYPES: dict[int, tuple[int, str]] = {
    1: (4, "float_data"), 2: (1, "int32_data"), 3: (1, "int32_data"), 4: (2, "int32_data"),
    5: (2, "int32_data"), 6: (4, "int32_data"), 7: (8, "int64_data"), 9: (1, "int32_data"),
    10: (2, "int32_data"), 11: (8, "double_data"), 12: (4, "uint64_data"),
    13: (8, "uint64_data"), 16: (2, "int32_data"),
}


def check_model_limits(model: Any, path: Any) -> None:
    """Raise KilomlError for opsets, sizes and tensors kiloml does not read (see above)."""
    for imp in model.opset_import:
        domain = imp.domain or ""
        if domain in SUPPORTED_OPSETS:
            lo, hi = SUPPORTED_OPSETS[domain]
            if not lo <= imp.version <= hi:
                raise KilomlError(f"opset {imp.version} of {domain or 'ai.onnx'} is not "
                                  f"supported (supported: {lo} to {hi})", file=path)
    g = model.graph
    if len(g.node) > MAX_NODES:
        raise KilomlError(f"the graph has {len(g.node):,} nodes; kiloml supports at most "
                          f"{MAX_NODES:,}", file=path)
    if len(g.sparse_initializer):
        raise KilomlError("sparse initializers are not supported", file=path,
                          where=f"initializer {g.sparse_initializer[0].values.name!r}")
    for t in g.initializer:
        check_tensor(t, path, f"initializer {t.name!r}")
    for node in g.node:
        where = f"node '{node.name or (node.output[0] if node.output else '?')}' ({node.op_type})"
        for a in node.attribute:
            if a.HasField("g") or len(a.graphs):
                raise KilomlError("operators with subgraphs (If, Loop, Scan) are not "
                                  "supported", file=path, where=where)
            if a.HasField("t"):
                check_tensor(a.t, path, f"{where} attribute {a.name}")
            for t in a.tensors:
                check_tensor(t, path, f"{where} attribute {a.name}")


def _is_external(t: Any) -> bool:
    return t.data_location == 1 or len(t.external_data) > 0  # TensorProto.EXTERNAL


def inline_external_data(model: Any, path: Any) -> None:
    """Read the initializers stored as external data into their raw_data (the rules are
    in the module's docstring); any other tensor with external data is refused."""
    folder = Path(path).absolute().parent
    handles: dict[str, BinaryIO] = {}
    total = 0
    try:
        for t in model.graph.initializer:
            if not _is_external(t):
                continue
            where = f"initializer {t.name!r}"
            entries = {e.key: e.value for e in t.external_data}
            unknown = sorted(set(entries) - set(_EXTERNAL_KEYS))
            if unknown:
                raise KilomlError(f"external data key {unknown[0]!r} is not supported",
                                  file=path, where=where)
            location = entries.get("location", "")
            data_file = _external_file(location, folder, path, where)
            offset = _external_int(entries, "offset", 0, path, where)
            need = _tensor_bytes(t, path, where)
            length = _external_int(entries, "length", need, path, where)
            if length != need:
                raise KilomlError(f"external data length {length:,} bytes; dims "
                                  f"{list(t.dims)} of this type need {need:,}", file=path,
                                  where=where)
            total += length
            if total > MAX_EXTERNAL_BYTES:
                raise KilomlError(f"external data of more than {MAX_EXTERNAL_BYTES:,} bytes",
                                  file=path, where=where)
            if location not in handles:
                try:
                    handles[location] = open_regular(data_file, data_file)
                except KilomlError as exc:  # a FIFO, a device, unreadable: the model's fault
                    raise KilomlError(f"external data file '{location}' {exc.message}",
                                      file=path, where=where) from None
            f = handles[location]
            size = os.fstat(f.fileno()).st_size
            if offset + length > size:
                raise KilomlError(f"external data at offset {offset:,}, {length:,} bytes, "
                                  f"lies past the end of '{location}' ({size:,} bytes)",
                                  file=path, where=where)
            f.seek(offset)
            raw = f.read(length)
            if len(raw) != length:
                raise KilomlError(f"'{location}' ended while reading it", file=path,
                                  where=where)
            del t.external_data[:]
            t.data_location = 0  # TensorProto.DEFAULT
            t.raw_data = raw
    finally:
        for f in handles.values():
            f.close()


def _external_file(location: str, folder: Path, path: Any, where: str) -> Path:
    plain = (location and location not in (".", "..") and "/" not in location
             and "\\" not in location and all(c.isprintable() for c in location))
    if not plain:
        raise KilomlError(f"external data location {location!r} is not a file name in the "
                          "model's folder (kiloml reads the data file only from beside the "
                          "model)", file=path, where=where)
    data_file = folder / location
    try:
        inside = data_file.resolve(strict=True).parent == folder.resolve()
    except (OSError, RuntimeError):  # missing, a broken or looping link
        raise KilomlError(f"external data file '{location}' not found beside the model",
                          file=path, where=where) from None
    if not inside:
        raise KilomlError(f"external data file '{location}' is a link out of the model's "
                          "folder", file=path, where=where)
    return data_file


def _external_int(entries: dict[str, str], key: str, default: int, path: Any,
                  where: str) -> int:
    text = entries.get(key)
    if text is None:
        return default
    if not text.isdigit() or len(text) > 18:
        raise KilomlError(f"external data {key} {text!r} is not a byte count", file=path,
                          where=where)
    return int(text)


def _tensor_bytes(t: Any, path: Any, where: str) -> int:
    dims = list(t.dims)
    if any(d < 0 for d in dims):
        raise KilomlError(f"dims {dims} are negative", file=path, where=where)
    count = math.prod(dims)
    if count > MAX_TENSOR_ELEMENTS:
        raise KilomlError(f"dims {dims} declare {count:,} elements; kiloml supports at most "
                          f"{MAX_TENSOR_ELEMENTS:,} per tensor", file=path, where=where)
    spec = _DATA_TYPES.get(t.data_type)
    if spec is None:
        raise KilomlError(f"data type {t.data_type} is not supported", file=path, where=where)
    return count * spec[0]


def check_tensor(t: Any, path: Any, where: str) -> None:
    """A tensor's data is inside the file and matches its dims and type."""
    if _is_external(t):  # only initializers may, and inline_external_data read those
        location = next((e.value for e in t.external_data if e.key == "location"), "?")
        raise KilomlError(f"stored as external data ('{location}'); kiloml reads external "
                          "data for initializers only", file=path, where=where)
    dims = list(t.dims)
    if any(d < 0 for d in dims):
        raise KilomlError(f"dims {dims} are negative", file=path, where=where)
    count = math.prod(dims)
    if count > MAX_TENSOR_ELEMENTS:
        raise KilomlError(f"dims {dims} declare {count:,} elements; kiloml supports at most "
                          f"{MAX_TENSOR_ELEMENTS:,} per tensor", file=path, where=where)
    spec = _DATA_TYPES.get(t.data_type)
    if spec is None:
        if t.data_type == 8:  # STRING: only folded shape code could use it
            return
        raise KilomlError(f"data type {t.data_type} is not supported", file=path, where=where)
    itemsize, typed_field = spec
    if t.raw_data:
        if len(t.raw_data) != count * itemsize:
            raise KilomlError(f"raw_data has {len(t.raw_data):,} bytes, dims {dims} of this "
                              f"type need {count * itemsize:,}", file=path, where=where)
        return
    have = len(getattr(t, typed_field))
    if have != count:
        raise KilomlError(f"holds {have:,} values, dims {dims} need {count:,}", file=path,
                          where=where)


class Attributes:
    """A node's attributes with checked, typed getters."""

    def __init__(self, node: Any, error: Callable[[str], KilomlError]) -> None:
        with needs("onnx", "reading .onnx models"):
            import onnx

        self.node = node
        self.error = error
        self.values: dict[str, Any] = {}
        for a in node.attribute:
            v = onnx.helper.get_attribute_value(a)
            self.values[a.name] = v.decode("utf-8", errors="replace") if isinstance(
                v, bytes) else v

    def __contains__(self, name: str) -> bool:
        return name in self.values

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(name, default)

    def _bad(self, name: str, value: object, why: str) -> KilomlError:
        return self.error(f"attribute {name}={value} is not supported ({why})")

    def int(self, name: str, default: int | None = None, low: int = -INT32_MAX - 1,
            high: int = INT32_MAX) -> int:
        value = self.values.get(name, default)
        if value is None:
            raise self.error(f"attribute {name} is required")
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._bad(name, value, "an integer is needed")
        if not low <= value <= high:
            raise self._bad(name, value, f"it must be in [{low}, {high}]")
        return value

    def flag(self, name: str, default: int = 0) -> bool:
        return bool(self.int(name, default, 0, 1))

    def float(self, name: str, default: float | None = None, low: float = -math.inf,
              high: float = math.inf) -> float:
        value = self.values.get(name, default)
        if value is None:
            raise self.error(f"attribute {name} is required")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self._bad(name, value, "a number is needed")
        value = float(value)
        if not math.isfinite(value) or not low <= value <= high:
            raise self._bad(name, value, f"it must be finite and in [{low:g}, {high:g}]")
        return value

    def ints(self, name: str, default: Sequence[int] | None, n: int | None = None,
             low: int = -INT32_MAX - 1, high: int = INT32_MAX) -> list[int]:
        value = self.values.get(name, default)
        if value is None:
            raise self.error(f"attribute {name} is required")
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise self._bad(name, value, "a list of integers is needed")
        out = list(value)
        if any(isinstance(v, bool) or not isinstance(v, int) for v in out):
            raise self._bad(name, out, "a list of integers is needed")
        if n is not None and len(out) != n:
            raise self._bad(name, out, f"{n} values are needed")
        if any(not low <= v <= high for v in out):
            raise self._bad(name, out, f"each value must be in [{low}, {high}]")
        return out

    def floats(self, name: str, default: Sequence[float]) -> list[float]:
        value = self.values.get(name, default)
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise self._bad(name, value, "a list of numbers is needed")
        out = [float(v) for v in value if isinstance(v, (int, float))]
        if len(out) != len(value) or not all(math.isfinite(v) for v in out):
            raise self._bad(name, list(value), "finite numbers are needed")
        return out

    def string(self, name: str, default: str, choices: Sequence[str]) -> str:
        value = self.values.get(name, default)
        if not isinstance(value, str) or value not in choices:
            raise self._bad(name, value, f"use {', '.join(choices)}")
        return value

    def axis(self, name: str, default: int | None, rank: int, inclusive: bool = False) -> int:
        """An axis attribute in [-rank, rank) (or [-rank, rank] when ``inclusive``), as >= 0."""
        top = rank if inclusive else rank - 1
        value = self.int(name, default)
        if not -rank <= value <= top:
            raise self._bad(name, value, f"axis outside [{-rank}, {top}] for rank {rank}")
        return value + rank if value < 0 else value
