"""Where the length, offset and count fields of a seed file are, per format.

The mutator writes boundary values (0, -1, 0x7fffffff, huge lengths...) into these
places: a random byte rarely lands on a vector length, so structure-aware
mutation reaches the checks a random flip does not. Each finder walks a *valid*
seed (the fixtures and generated recordings) and returns ``Field`` records; it
uses its own description of the format, independent of kiloml's readers.
"""

from __future__ import annotations

import contextlib
import re
import struct
from dataclasses import dataclass


@dataclass(frozen=True)
class Field:
    """A place in a seed file: ``pos``, ``size`` bytes, what it holds.

    kinds: "uint"/"int" (little-endian integers of ``size`` bytes), "float" (float32),
    "uoffset"/"length" (flatbuffer offsets and vector lengths, uint32), "varint"
    (protobuf, ``size`` = encoded bytes), "text" (a token of a text file or header),
    with ``role`` saying which token family (number, string, name...).
    """

    pos: int
    size: int
    kind: str
    role: str = ""


# ---- flatbuffers (.tflite) -------------------------------------------------------------

# table -> {vtable slot: type}; types: scalar struct letters, "str", "[i" (vector of int32),
# "[f", "[q", "[B", "T:<table>", "[T:<table>", "U" (a union table of unknown layout).
_TFLITE: dict[str, dict[int, str]] = {
    "Model": {4: "I", 6: "[T:OperatorCode", 8: "[T:SubGraph", 10: "str", 12: "[T:Buffer"},
    "OperatorCode": {4: "b", 6: "str", 8: "i", 10: "i"},
    "SubGraph": {4: "[T:Tensor", 6: "[i", 8: "[i", 10: "[T:Operator", 12: "str"},
    "Tensor": {4: "[i", 6: "b", 8: "I", 10: "str", 12: "T:Quantization", 14: "?",
               16: "T:Sparsity", 18: "[i", 20: "?"},
    "Quantization": {4: "[f", 6: "[f", 8: "[f", 10: "[q", 12: "B", 16: "i"},
    "Sparsity": {},
    "Buffer": {4: "[B", 6: "Q", 8: "Q"},
    "Operator": {4: "I", 6: "[i", 8: "[i", 10: "B", 12: "U", 14: "[B", 16: "b", 20: "[i"},
}
_MAX_ELEMENTS_RECORDED = 48  # per vector: enough variety, bounded field lists


def flatbuffer_fields(data: bytes) -> list[Field]:
    """Every vtable entry, table offset, vector length, scalar and (some) vector elements."""
    out: list[Field] = [Field(0, 4, "uoffset", "root")]
    seen: set[tuple[int, str]] = set()

    def u32(p: int) -> int:
        return struct.unpack_from("<I", data, p)[0]

    def table(pos: int, name: str) -> None:
        if (pos, name) in seen or not 0 <= pos <= len(data) - 4:
            return
        seen.add((pos, name))
        out.append(Field(pos, 4, "int", "soffset"))
        vt = pos - struct.unpack_from("<i", data, pos)[0]
        vt_len, obj_len = struct.unpack_from("<HH", data, vt)
        out.append(Field(vt, 2, "uint", "vtable size"))
        out.append(Field(vt + 2, 2, "uint", "table size"))
        layout = _TFLITE.get(name)
        for slot in range(4, vt_len, 2):
            out.append(Field(vt + slot, 2, "uint", "vtable entry"))
            off = struct.unpack_from("<H", data, vt + slot)[0]
            if not off:
                continue
            at = pos + off
            kind = layout.get(slot) if layout is not None else None
            if kind is None:  # unknown layout (builtin options): an int32 or a byte
                width = 4 if off + 4 <= obj_len else 1
                out.append(Field(at, width, "int", f"{name} field"))
                continue
            if kind in ("b", "B", "?"):
                out.append(Field(at, 1, "int", f"{name} field"))
            elif kind in ("i", "I"):
                out.append(Field(at, 4, "int", f"{name} field"))
            elif kind == "Q":
                out.append(Field(at, 8, "uint", f"{name} field"))
            elif kind == "U":
                out.append(Field(at, 4, "uoffset", "union"))
                table(at + u32(at), "Options")
            elif kind.startswith("T:"):
                out.append(Field(at, 4, "uoffset", kind[2:]))
                table(at + u32(at), kind[2:])
            else:  # a vector or a string
                out.append(Field(at, 4, "uoffset", f"{name} vector"))
                vec = at + u32(at)
                n = u32(vec)
                out.append(Field(vec, 4, "length", f"{name} vector length"))
                if kind.startswith("[T:"):
                    for i in range(n):
                        el = vec + 4 + 4 * i
                        out.append(Field(el, 4, "uoffset", kind[3:]))
                        table(el + u32(el), kind[3:])
                elif kind in ("[i", "[f", "[q"):
                    width = 8 if kind == "[q" else 4
                    for i in range(min(n, _MAX_ELEMENTS_RECORDED)):
                        out.append(Field(vec + 4 + width * i, width,
                                         "float" if kind == "[f" else "int", f"{name} element"))

    table(u32(0), "Model")
    return list(dict.fromkeys(out))  # shared vtables are walked once per table: once here


# ---- protobuf (.onnx) ------------------------------------------------------------------

def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    start = pos
    while True:
        if pos >= len(data) or pos - start > 9:
            raise ValueError("bad varint")
        b = data[pos]
        value |= (b & 0x7F) << shift
        pos += 1
        if not b & 0x80:
            return value, pos
        shift += 7


def _message(data: bytes, start: int, end: int, out: list[Field], depth: int) -> bool:
    """Parse [start, end) as a protobuf message; record fields; False if it is not one."""
    pos = start
    found: list[Field] = []
    nested: list[tuple[int, int]] = []
    while pos < end:
        tag, after = _varint(data, pos)
        wire, number = tag & 7, tag >> 3
        if number == 0:
            return False
        found.append(Field(pos, after - pos, "varint", "tag"))
        pos = after
        if wire == 0:
            _, after = _varint(data, pos)
            found.append(Field(pos, after - pos, "varint", "value"))
            pos = after
        elif wire == 1:
            found.append(Field(pos, 8, "int", "fixed64"))
            pos += 8
        elif wire == 5:
            found.append(Field(pos, 4, "float", "fixed32"))
            pos += 4
        elif wire == 2:
            length, after = _varint(data, pos)
            found.append(Field(pos, after - pos, "varint", "length"))
            pos = after + length
            nested.append((after, pos))
        else:
            return False
        if pos > end:
            return False
    out.extend(found)
    if depth < 12:
        for a, b in nested:
            if b - a >= 2:
                with contextlib.suppress(ValueError):
                    _message(data, a, b, out, depth + 1)
    return True


def protobuf_fields(data: bytes) -> list[Field]:
    """Tags, varint values and length prefixes of every (nested) message."""
    out: list[Field] = []
    _message(data, 0, len(data), out, 0)
    return out


# ---- RIFF (.wav) -----------------------------------------------------------------------

def wav_fields(data: bytes) -> list[Field]:
    out = [Field(4, 4, "uint", "RIFF size")]
    pos = 12
    while pos + 8 <= len(data):
        size = struct.unpack_from("<I", data, pos + 4)[0]
        out.append(Field(pos, 4, "text", "chunk id"))
        out.append(Field(pos + 4, 4, "uint", "chunk size"))
        if data[pos:pos + 4] == b"fmt ":
            for off, width, what in ((8, 2, "format tag"), (10, 2, "channels"),
                                     (12, 4, "sample rate"), (16, 4, "byte rate"),
                                     (20, 2, "block align"), (22, 2, "bits per sample")):
                out.append(Field(pos + off, width, "uint", what))
        pos += 8 + size + (size & 1)
    return out


# ---- NPY / NPZ -------------------------------------------------------------------------

_NPY_TOKENS = re.compile(rb"'descr':\s*'([^']*)'|'fortran_order':\s*(True|False)|(\d+)")


def npy_fields(data: bytes, base: int = 0) -> list[Field]:
    """The version bytes, header length and the header's descr / order / shape tokens."""
    out = [Field(base + 6, 1, "uint", "major version"), Field(base + 7, 1, "uint", "minor"),
           Field(base + 8, 2, "uint", "header length")]
    header_len = struct.unpack_from("<H", data, base + 8)[0]
    header = data[base + 10:base + 10 + header_len]
    for m in _NPY_TOKENS.finditer(header):
        for group, role in ((1, "descr"), (2, "order"), (3, "shape")):
            if m.group(group) is not None:
                out.append(Field(base + 10 + m.start(group), len(m.group(group)), "text", role))
    return out


def npz_fields(data: bytes) -> list[Field]:
    """Zip local headers, central directory, end record, and each member's NPY header."""
    out: list[Field] = []
    pos = 0
    while data[pos:pos + 4] == b"PK\x03\x04":
        out += [Field(pos + 8, 2, "uint", "method"), Field(pos + 14, 4, "uint", "crc"),
                Field(pos + 18, 4, "uint", "compressed size"),
                Field(pos + 22, 4, "uint", "size"), Field(pos + 26, 2, "uint", "name length"),
                Field(pos + 28, 2, "uint", "extra length")]
        size, name_len, extra_len = struct.unpack_from("<IHH", data, pos + 18)
        member = pos + 30 + name_len + extra_len
        if data[member:member + 6] == b"\x93NUMPY":
            out += npy_fields(data, member)
        pos = member + size
    cd = data.find(b"PK\x01\x02")
    while cd >= 0:
        out += [Field(cd + 20, 4, "uint", "cd compressed size"), Field(cd + 24, 4, "uint",
                                                                          "cd size"),
                Field(cd + 28, 2, "uint", "cd name length"), Field(cd + 42, 4, "uint",
                                                                     "local header offset")]
        cd = data.find(b"PK\x01\x02", cd + 4)
    end = data.rfind(b"PK\x05\x06")
    if end >= 0:
        out += [Field(end + 8, 2, "uint", "entries on disk"), Field(end + 10, 2, "uint",
                                                                       "entries"),
                Field(end + 12, 4, "uint", "cd size"), Field(end + 16, 4, "uint", "cd offset")]
    return out


# ---- text (CSV, TOML) --------------------------------------------------------------------

_TEXT_TOKENS = re.compile(rb'"[^"\n]*"|\'[^\'\n]*\'|[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|'
                          rb'[A-Za-z_][A-Za-z0-9_.-]*|[\[\]=,;]')


def text_fields(data: bytes) -> list[Field]:
    out = []
    for m in _TEXT_TOKENS.finditer(data):
        tok = m.group(0)
        if tok[:1] in (b'"', b"'"):
            role = "string"
        elif tok[:1].isdigit() or tok[:1] in (b"-", b"+"):
            role = "number"
        elif tok in (b"[", b"]", b"=", b",", b";"):
            role = "punct"
        else:
            role = "name"
        out.append(Field(m.start(), len(tok), "text", role))
    return out
