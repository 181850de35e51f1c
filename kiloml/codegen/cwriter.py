"""C99 literals that read back as exactly the value Python holds."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np


def c_float(value: float | np.floating) -> str:
    """A float32 literal: the shortest decimal that a C compiler reads back as this float32."""
    v = np.float32(value)
    if np.isnan(v):
        return "NAN"
    if np.isinf(v):
        return "INFINITY" if v > 0 else "-INFINITY"
    if v == 0 or 1e-4 <= abs(v) < 1e16:
        text = np.format_float_positional(v, unique=True, trim="0")
    else:
        text = np.format_float_scientific(v, unique=True, trim="0")
    if text.endswith("."):
        text += "0"
    return text + "f"


def c_double(value: float) -> str:
    v = float(value)
    if math.isnan(v):
        return "NAN"
    if math.isinf(v):
        return "INFINITY" if v > 0 else "-INFINITY"
    return repr(v)


def c_int(value: int) -> str:
    return str(int(value))


def c_string(text: str) -> str:
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif 32 <= ord(ch) < 127:
            out.append(ch)
        else:
            out.extend(f"\\x{b:02x}\"\"" for b in ch.encode("utf-8"))
    return '"' + "".join(out) + '"'


def c_array(ctype: str, name: str, values: Sequence | Iterable, fmt=c_int, per_line: int = 8,
            storage: str = "static const") -> str:
    items = [fmt(v) for v in values]
    if not items:
        items = ["0"]  # C forbids empty arrays; the length macro still says 0
    lines = [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
    body = ",\n    ".join(lines)
    return f"{storage} {ctype} {name}[{len(items)}] = {{\n    {body}\n}};\n"


def c_matrix(ctype: str, name: str, rows: np.ndarray, fmt=c_double,
             storage: str = "static const") -> str:
    body = ",\n    ".join("{" + ", ".join(fmt(v) for v in row) + "}" for row in rows)
    return f"{storage} {ctype} {name}[{rows.shape[0]}][{rows.shape[1]}] = {{\n    {body}\n}};\n"
