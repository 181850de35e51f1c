"""kml_telemetry_v1 records as JSON lines: one object per line, every field by name,
model_id as 16 hex digits, flags as an int and as names (docs/telemetry_format.md)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from kiloml.atomic import write_text_atomically
from kiloml.telemetry.codec import FIELDS, TelemetryError, decode, encode
from kiloml.telemetry.flags import flags_from_names

__all__ = ["from_json", "iter_jsonl", "to_json", "write_jsonl"]


def to_json(record: Mapping[str, Any], device: str | None = None,
            received_s: float | None = None) -> dict[str, Any]:
    """The JSON object of one record (as decode returns it, or any dict encode takes:
    the values are those the bytes hold)."""
    decoded = decode(encode(record))
    out: dict[str, Any] = {}
    if device is not None:
        out["device"] = device
    if received_s is not None:
        out["received_s"] = received_s
    out.update((k, decoded[k]) for k in FIELDS)
    out["flag_names"] = decoded["flag_names"]
    return out


def from_json(obj: Any) -> tuple[bytes, dict[str, Any]]:
    """The record's 48 bytes and decoded dict from one JSON object. When both flags and
    flag_names are given they must agree (a hand-edited line is caught, not guessed)."""
    if not isinstance(obj, dict):
        raise TelemetryError("json", f"a record is a JSON object, not {type(obj).__name__}")
    if "format_version" in obj and obj["format_version"] != 1:
        raise TelemetryError("version", f"format version {obj['format_version']!r}; this "
                             "kiloml reads version 1")
    record = dict(obj)
    if "flags" not in record and isinstance(record.get("flag_names"), list):
        try:
            record["flags"] = flags_from_names(record["flag_names"])
        except KeyError as exc:
            raise TelemetryError("field", f"unknown flag name {exc.args[0]!r}") from None
    raw = encode(record)
    decoded = decode(raw)
    names = obj.get("flag_names")
    if names is not None and names != decoded["flag_names"]:
        raise TelemetryError("field", f"flags {decoded['flags']} are "
                             f"{decoded['flag_names']}, not {names}")
    return raw, decoded


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any] | TelemetryError,
                                             bytes | None, str | None]]:
    """Every non-blank line of a .jsonl file: (line number, decoded dict or the error,
    the record's bytes or None, the line's device or None)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                yield number, TelemetryError("json", f"not JSON ({exc.msg})"), None, None
                continue
            try:
                raw, decoded = from_json(obj)
            except TelemetryError as exc:
                yield number, exc, None, None
                continue
            device = obj.get("device")
            yield number, decoded, raw, device if isinstance(device, str) else None


def write_jsonl(path: Path, records: Iterable[Mapping[str, Any]],
                device: str | None = None) -> int:
    """Write ``records`` as JSON lines (whole or not at all); returns how many."""
    lines = [json.dumps(to_json(r, device=device)) for r in records]
    write_text_atomically(path, "".join(line + "\n" for line in lines))
    return len(lines)
