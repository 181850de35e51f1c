"""Release versions: MAJOR.MINOR.PATCH, non-negative whole numbers without leading zeros,
ordered numerically (docs/registry.md)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from kiloml.errors import KilomlError

FORM = "MAJOR.MINOR.PATCH (whole numbers, no leading zeros, e.g. 1.0.0)"
MAX_LENGTH = 64
_VERSION = re.compile(r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)", re.ASCII)


def is_version(text: str) -> bool:
    return len(text) <= MAX_LENGTH and _VERSION.fullmatch(text) is not None


def parse_version(text: str, where: str = "--version") -> tuple[int, int, int]:
    """The three numbers of a version; a KilomlError saying the form otherwise."""
    m = _VERSION.fullmatch(text) if len(text) <= MAX_LENGTH else None
    if m is None:
        shown = text if len(text) <= MAX_LENGTH else text[:MAX_LENGTH] + "..."
        raise KilomlError(f"{shown!r} is not a version: the form is {FORM}", where=where)
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def sorted_versions(versions: Iterable[str]) -> list[str]:
    """Ascending, numerically (1.10.0 after 1.9.0)."""
    return sorted(versions, key=lambda v: parse_version(v))
