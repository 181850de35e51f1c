"""A POST body into telemetry records: binary (48-byte records back to back, the device
named out of band) or JSON (one record object, a list of them, or JSON lines), every bad
record counted by kind as `kiloml fleet ingest` counts a file's."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from kiloml.telemetry.codec import TelemetryError, iter_records
from kiloml.telemetry.jsonl import from_json

__all__ = ["BAD_SHOWN", "DEVICE_MAX", "Intake", "Received", "device_problem", "read_binary",
           "read_json", "read_json_lines"]

BAD_SHOWN = 5  # bad records described in the response (all are counted)
DEVICE_MAX = 200  # the devices table's name column


@dataclass
class Received:
    device: str
    raw: bytes
    decoded: dict[str, Any]
    received_s: float


@dataclass
class Intake:
    records: list[Received] = field(default_factory=list)
    bad: Counter = field(default_factory=Counter)  # kind -> count
    errors: list[str] = field(default_factory=list)  # the first BAD_SHOWN, described

    def add_bad(self, where: str, kind: str, message: str) -> None:
        self.bad[kind] += 1
        if len(self.errors) < BAD_SHOWN:
            self.errors.append(f"{where}: {kind} ({message})")


def device_problem(device: Any) -> str | None:
    """Why ``device`` cannot name a device, or None."""
    if not isinstance(device, str) or not device.strip():
        return "no device named (the device query parameter, the X-Device header or the " \
               "record's \"device\" field)"
    if len(device) > DEVICE_MAX or not device.isprintable():
        return f"a device name is at most {DEVICE_MAX} printable characters"
    return None


def read_binary(data: bytes, device: str, now_s: float) -> Intake:
    """Concatenated records of one device (``device`` already checked)."""
    intake = Intake()
    for offset, raw, rec in iter_records(data):
        if isinstance(rec, TelemetryError):
            intake.add_bad(f"byte {offset}", rec.kind, str(rec))
        else:
            intake.records.append(Received(device, raw, rec, now_s))
    return intake


def _add_object(intake: Intake, where: str, obj: Any, device: str | None,
                now_s: float) -> None:
    try:
        raw, decoded = from_json(obj)
    except TelemetryError as exc:
        intake.add_bad(where, exc.kind, str(exc))
        return
    # the record's own device wins (a gateway posting for several devices)
    name = obj["device"] if obj.get("device") is not None else device
    problem = device_problem(name)
    if problem:
        intake.add_bad(where, "device", problem)
        return
    received = obj.get("received_s")
    ok_time = isinstance(received, int | float) and not isinstance(received, bool)
    intake.records.append(Received(name, raw, decoded, float(received) if ok_time else now_s))


def read_json(data: bytes, device: str | None, now_s: float) -> Intake:
    """One JSON record object or a list of them."""
    intake = Intake()
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        intake.add_bad("body", "json", f"not JSON ({getattr(exc, 'msg', exc)})")
        return intake
    items = body if isinstance(body, list) else [body]
    for index, obj in enumerate(items):
        _add_object(intake, f"record {index}" if isinstance(body, list) else "record", obj,
                    device, now_s)
    return intake


def read_json_lines(data: bytes, device: str | None, now_s: float) -> Intake:
    """JSON lines (application/x-ndjson): the form of a .jsonl telemetry file."""
    intake = Intake()
    text = data.decode("utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            intake.add_bad(f"line {number}", "json", f"not JSON ({getattr(exc, 'msg', exc)})")
            continue
        _add_object(intake, f"line {number}", obj, device, now_s)
    return intake
