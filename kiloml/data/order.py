"""The order class names and group names are listed in everywhere (windows, splits,
metrics, the report, the C class-name table): natural order, so "2" comes before "10".
"""

from __future__ import annotations

import re

# A whole label that is a number (ASCII digits only: str.isdigit accepts "²", int does not).
_NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?", re.ASCII)
_DIGIT_RUNS = re.compile(r"([0-9]+)", re.ASCII)


def natural_key(text: str) -> tuple:
    """Sort key: numbers by value ("-1" < "2" < "10" < "10.5"), text with numbers in it
    part by part ("s2" < "s10"), numbers before text. Ties ("01" and "1") fall back to the
    text itself, so the order is total and does not depend on the input order."""
    text = str(text)
    if _NUMBER.fullmatch(text):
        return (0, float(text), (), text)
    parts = []
    for part in _DIGIT_RUNS.split(text):
        if not part:
            continue
        if part[0].isascii() and part[0].isdigit():
            digits = part.lstrip("0") or "0"
            parts.append((0, len(digits), digits))  # by length, then digits: by value
        else:
            parts.append((1, 0, part))
    return (1, 0.0, tuple(parts), text)


def natural_sorted(names) -> list[str]:
    """The distinct names in natural order."""
    return sorted(set(names), key=natural_key)
