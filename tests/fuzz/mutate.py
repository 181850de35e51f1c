"""The mutation engine: deterministic mutants of a seed file (pure stdlib).

``mutant(seed, fields, key)`` returns the same bytes for the same key on every
machine and run (``random.Random`` seeded with a string is stable): the mutant
index is its reproducer. Operators:

- bit flips and random bytes anywhere;
- truncation (keep a prefix), deletion of a block, insertion of a block (random,
  zeros, 0xff, or a copy of another part of the file), duplication of a block;
- boundary values written into the structure's fields (``structure.Field``): 0, 1,
  -1, 0x7f, 0x80, 0x7fff, 0x7fffffff, 0x80000000, 0xffffffff, the file size, huge
  lengths; NaN, inf, denormals, 1e30 and negatives for floats; re-encoded
  protobuf varints (0, -1 as ten bytes, 2^31, 2^63...); for text tokens,
  replacement strings by role (numbers -> nan, 1e309, -1, 99999999999999999999, "";
  strings -> empty, quotes, escapes, long);
- text-line operations for text formats (delete, duplicate or swap lines, NUL,
  CR, BOM, invalid UTF-8);
- one to three of these stacked;
- for models, semantic edits through the format's object model (``semantic.py``).
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Sequence

from structure import Field

Semantic = Callable[[bytes, random.Random], tuple[bytes, str]]

INT_VALUES = (0, 1, 2, 3, 4, 7, 8, 16, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF,
              0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, -1, -2, -128, -0x8000,
              -0x80000000)
FLOAT_VALUES = (0.0, -0.0, -1.0, 1.0, 1e-45, 1e-40, 1.17549435e-38, 1e-30, 1e-10, 1e10,
                1e30, 3.4028235e38, float("inf"), float("-inf"), float("nan"), 256.0,
                1.0 / 256, 1.0 / 128)
VARINT_VALUES = (0, 1, 2, 7, 127, 128, 255, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0x80000000,
                 0xFFFFFFFF, 1 << 40, (1 << 63) - 1, (1 << 64) - 1)
TEXT_VALUES: dict[str, tuple[bytes, ...]] = {
    "number": (b"0", b"-1", b"-0", b"1", b"nan", b"NaN", b"inf", b"-inf", b"1e309", b"-1e309",
               b"1e-320", b"2147483647", b"2147483648", b"9223372036854775808",
               b"99999999999999999999999999", b"0.5", b"1,5", b"0x10", b"1_000", b"", b"true",
               b'"1"', b"[1]", b"9" * 400, b"\xd9\xa1"),
    "string": (b'""', b"''", b'"\\"', b'"\\u0000"', b'"\x00"', b'"' + b"a" * 300 + b'"',
               b'"(?P<group>"', b'"[[[["', b'"\\d"', b'"../../.."', b"1", b"true", b"[]",
               b'"\xff\xfe"', b'"nan"'),
    "name": (b"", b"x", b"nan", b"inf", b"true", b"t" * 200, b"\xc3", b"[data]", b"=",
             b"0", b"-", b"label", b"group"),
    "punct": (b"", b",", b";", b"\t", b"=", b"[", b"]", b"[[", b"\n", b" "),
    "descr": (b"|O", b"<f8", b">f4", b"<i8", b"|u1", b"|b1", b"<U8", b"|S4", b"|V8",
              b"<c16", b"<M8[s]", b"<f2", b"", b"<f16", b"zz", b"<i4"),
    "order": (b"True", b"False", b"None", b"1"),
    "shape": (b"0", b"1", b"2", b"3", b"-1", b"100000000000", b"2147483648", b"", b"1, 1",
              b"1,", b"99999999999999999999"),
    "chunk id": (b"data", b"fmt ", b"LIST", b"RIFF", b"\x00\x00\x00\x00", b"fact"),
}
TEXT_LINE_NOISE = (b"\x00", b"\r", b"\xef\xbb\xbf", b"\xff\xfe", b"\xc3\x28", b'"', b"'",
                   b"\\", b"#", b"\t", b"nan")


def _le(value: int, size: int) -> bytes:
    return (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")


def _encode_varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


class Mutator:
    """Mutants of one seed; ``text`` enables the line operations of text formats."""

    def __init__(self, seed: bytes, fields: Sequence[Field], text: bool = False,
                 semantic: Semantic | None = None) -> None:
        self.seed = seed
        self.fields = list(fields)
        self.text = text
        self.semantic = semantic

    def mutant(self, key: str) -> tuple[bytes, str]:
        """(mutant bytes, a short description of what was done) for ``key``."""
        rng = random.Random(key)
        data = bytearray(self.seed)
        steps = []
        if self.semantic is not None and rng.random() < 0.5:
            for _ in range(rng.choice((1, 1, 2))):
                for _attempt in range(5):  # an edit the writer cannot encode: another one
                    try:
                        mutated, what = self.semantic(bytes(data), rng)
                    except Exception:
                        continue
                    data = bytearray(mutated)
                    steps.append(what)
                    break
            if steps and rng.random() > 0.15:
                return bytes(data), "; ".join(steps)
        for _ in range(rng.choice((1, 1, 1, 1, 2, 2, 3))):
            data, what = self._one(rng, data)
            steps.append(what)
        return bytes(data), "; ".join(steps)

    # ---- operators -------------------------------------------------------------------
    def _one(self, rng: random.Random, data: bytearray) -> tuple[bytearray, str]:
        ops = [(self._field, 5 if self.fields else 0), (self._flip, 2), (self._bytes, 1),
               (self._truncate, 1), (self._delete, 1), (self._insert, 1),
               (self._duplicate, 1), (self._aligned, 1), (self._lines, 3 if self.text else 0)]
        total = sum(w for _, w in ops)
        pick = rng.uniform(0, total)
        for op, weight in ops:
            if pick < weight:
                return op(rng, data)
            pick -= weight
        return self._flip(rng, data)

    def _flip(self, rng: random.Random, data: bytearray) -> tuple[bytearray, str]:
        if not data:
            return data, "flip (empty)"
        at = []
        for _ in range(rng.choice((1, 1, 2, 4, 8))):
            pos = rng.randrange(len(data))
            data[pos] ^= 1 << rng.randrange(8)
            at.append(pos)
        return data, f"flip bits at {at}"

    def _bytes(self, rng: random.Random, data: bytearray) -> tuple[bytearray, str]:
        if not data:
            return data, "bytes (empty)"
        pos = rng.randrange(len(data))
        n = min(rng.choice((1, 2, 4, 8)), len(data) - pos)
        data[pos:pos + n] = bytes(rng.randrange(256) for _ in range(n))
        return data, f"random {n} bytes at {pos}"

    def _truncate(self, rng: random.Random, data: bytearray) -> tuple[bytearray, str]:
        keep = rng.randrange(len(data) + 1) if rng.random() < 0.5 else int(
            len(data) * rng.choice((0.0, 0.1, 0.5, 0.9, 0.99)))
        return data[:keep], f"truncate to {keep} bytes"

    def _block(self, rng: random.Random, data: bytearray) -> tuple[int, int]:
        start = rng.randrange(len(data) + 1)
        n = rng.choice((1, 2, 4, 8, 16, 64, 256, max(1, len(data) // 8)))
        return start, min(n, len(data) - start)

    def _delete(self, rng: random.Random, data: bytearray) -> tuple[bytearray, str]:
        start, n = self._block(rng, data)
        del data[start:start + n]
        return data, f"delete {n} bytes at {start}"

    def _insert(self, rng: random.Random, data: bytearray) -> tuple[bytearray, str]:
        pos = rng.randrange(len(data) + 1)
        n = rng.choice((1, 4, 16, 64, 512))
        fill = rng.choice(("random", "zeros", "ff", "copy"))
        if fill == "random":
            block = bytes(rng.randrange(256) for _ in range(n))
        elif fill == "zeros":
            block = bytes(n)
        elif fill == "ff":
            block = b"\xff" * n
        else:
            src = rng.randrange(len(data) + 1)
            block = bytes(data[src:src + n])
        data[pos:pos] = block
        return data, f"insert {len(block)} {fill} bytes at {pos}"

    def _duplicate(self, rng: random.Random, data: bytearray) -> tuple[bytearray, str]:
        start, n = self._block(rng, data)
        block = data[start:start + n]
        pos = rng.randrange(len(data) + 1)
        data[pos:pos] = block
        return data, f"duplicate {n} bytes from {start} to {pos}"

    def _aligned(self, rng: random.Random, data: bytearray) -> tuple[bytearray, str]:
        if len(data) < 4:
            return self._flip(rng, data)
        pos = rng.randrange(0, len(data) - 3) & ~3
        value = rng.choice((*INT_VALUES, len(data), len(data) - 4, len(data) + 4))
        data[pos:pos + 4] = _le(value, 4)
        return data, f"int32 {value} at {pos}"

    def _field(self, rng: random.Random, data: bytearray) -> tuple[bytearray, str]:
        f = rng.choice(self.fields)
        if f.pos + max(f.size, 1) > len(data):  # an earlier step moved the bytes
            return self._flip(rng, data)
        where = f"{f.role or f.kind} at {f.pos}"
        if f.kind == "varint":
            value = rng.choice((*VARINT_VALUES, len(data), len(data) + 1,
                                _varint_value(data, f) + rng.choice((-1, 1, 2, 1000))))
            data[f.pos:f.pos + f.size] = _encode_varint(value)
            return data, f"varint {value} for the {where}"
        if f.kind == "text":
            choices = TEXT_VALUES.get(f.role, TEXT_VALUES["number"])
            new = rng.choice(choices)
            data[f.pos:f.pos + f.size] = new
            return data, f"text {new[:20]!r} for the {where}"
        if f.kind == "float" and f.size == 4:
            value = rng.choice(FLOAT_VALUES)
            if rng.random() < 0.3:  # scale the current value instead
                old = struct.unpack_from("<f", data, f.pos)[0]
                value = old * rng.choice((-1.0, 0.5, 2.0, 1e6, 1e-6))
            data[f.pos:f.pos + 4] = struct.pack("<f", value)
            return data, f"float {value} for the {where}"
        values = [*INT_VALUES, len(data), len(data) - f.pos, len(data) * 2]
        if f.kind in ("uoffset", "length"):
            old = int.from_bytes(data[f.pos:f.pos + f.size], "little")
            values += [old + 1, old - 1, old + 4, old - 4, old * 2, 0x3FFFFFFF, len(data) // 4]
        else:
            old = int.from_bytes(data[f.pos:f.pos + f.size], "little", signed=True)
            values += [old + 1, old - 1, -old, old * 1000]
        value = rng.choice(values)
        data[f.pos:f.pos + f.size] = _le(value, f.size)
        return data, f"{f.size}-byte {value} for the {where}"

    def _lines(self, rng: random.Random, data: bytearray) -> tuple[bytearray, str]:
        lines = bytes(data).split(b"\n")
        if len(lines) < 2:
            return self._flip(rng, data)
        i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
        op = rng.choice(("delete", "duplicate", "swap", "noise", "long", "empty", "cut"))
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(j, lines[i])
        elif op == "swap":
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "noise":
            pos = rng.randrange(len(lines[i]) + 1)
            lines[i] = lines[i][:pos] + rng.choice(TEXT_LINE_NOISE) + lines[i][pos:]
        elif op == "long":
            lines.insert(i, lines[i] * rng.choice((2, 50, 2000)))
        elif op == "empty":
            lines[i] = b""
        else:
            lines[i] = lines[i][: rng.randrange(len(lines[i]) + 1)]
        return bytearray(b"\n".join(lines)), f"line {op} {i}"


def _varint_value(data: bytearray, f: Field) -> int:
    value = 0
    for k, b in enumerate(data[f.pos:f.pos + f.size]):
        value |= (b & 0x7F) << (7 * k)
    return value
