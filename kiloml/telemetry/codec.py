"""kml_telemetry_v1: the 48-byte record a device sends (one BLE notification), bytes <-> dict.

The dict holds the physical values (scores and rates in [0, 1], z and OOD in their own
units); encode quantizes them the way the device does (toward zero, saturating), so
decode(encode(decode(b))) == decode(b) and encode(decode(b)) == b for every valid record.
docs/telemetry_format.md is the spec; kiloml/runtime's kml_monitor writes the same bytes.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator, Mapping
from typing import Any

from kiloml.crc16 import crc16_ccitt_false
from kiloml.errors import KilomlError
from kiloml.telemetry.flags import flag_names

__all__ = ["FIELDS", "FORMAT_VERSION", "MAGIC", "RECORD_SIZE", "TelemetryError", "crc16",
           "decode", "encode", "iter_records"]

MAGIC = 0x544B  # bytes 'K', 'T' little-endian
MAGIC_BYTES = struct.pack("<H", MAGIC)
FORMAT_VERSION = 1
DECISION_SLOTS = 6  # class c >= 5 folds into slot 5
# magic, version, n_classes, model_id, uptime_s, windows, decisions[6], uncertain,
# top p10/p50/p90, out-of-range rate, drift z, OOD, entropy, flags; then the CRC.
_BODY = struct.Struct("<HBB8sII6HHBBBBhHHH")
_CRC = struct.Struct("<H")
RECORD_SIZE = _BODY.size + _CRC.size
assert RECORD_SIZE == 48  # the layout is fixed by the C twin and the spec

U8, U16, U32 = 0xFF, 0xFFFF, 0xFFFFFFFF
I16_MIN, I16_MAX = -0x8000, 0x7FFF
# field -> (scale, lowest code, highest code) for the quantized values
SCALED: dict[str, tuple[float, int, int]] = {
    "top_score_p10": (255.0, 0, U8),
    "top_score_p50": (255.0, 0, U8),
    "top_score_p90": (255.0, 0, U8),
    "out_of_range_rate": (255.0, 0, U8),
    "drift_z": (256.0, I16_MIN, I16_MAX),  # Q8.8 signed
    "ood_score": (256.0, 0, U16),  # Q8.8 unsigned
    "entropy": (65535.0, 0, U16),
}
# The dict's keys in record order (docs/telemetry_format.md's table).
FIELDS = ("format_version", "n_classes", "model_id", "uptime_s", "windows", "decisions",
          "uncertain", "top_score_p10", "top_score_p50", "top_score_p90",
          "out_of_range_rate", "drift_z", "ood_score", "entropy", "flags")


class TelemetryError(KilomlError):
    """A record that is not a valid kml_telemetry_v1: ``kind`` is "truncated", "magic",
    "version", "crc" (bytes) or "field" (a dict or JSON object that cannot be encoded),
    "json" (a line that is no JSON object); ``offset`` the byte where it starts."""

    def __init__(self, kind: str, message: str, *, offset: int | None = None,
                 size: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.offset = offset
        self.size = size


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE of a record's bytes (kiloml.crc16)."""
    return crc16_ccitt_false(data)


def quantize(value: float, scale: float, low: int, high: int) -> int:
    """value * scale truncated toward zero (the floor for values >= 0) and clamped to
    [low, high]: the device's rounding (kml_monitor_snapshot). The code whose decoded
    value equals ``value`` is chosen when there is one (k / 255 * 255 can land just
    below k in binary floating point)."""
    if math.isnan(value):
        raise ValueError("NaN")
    if value == math.inf or value * scale >= high:
        return high
    if value == -math.inf or value * scale <= low:
        return low
    if value < 0:
        return -quantize(-value, scale, 0, -low)
    code = math.floor(value * scale)
    if code + 1 <= high and (code + 1) / scale <= value:
        code += 1
    return code


def _int(record: Mapping[str, Any], key: str, high: int, saturate: bool) -> int:
    value = record[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{key} must be an integer, not {value!r}")
    if value < 0:
        raise ValueError(f"{key} must be >= 0, not {value}")
    if value > high:
        if not saturate:
            raise ValueError(f"{key} = {value} does not fit ({high} at most)")
        return high
    return value


def _model_id(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray) and len(value) == 8:
        return bytes(value)
    if isinstance(value, str) and len(value) == 16:
        try:
            return bytes.fromhex(value)
        except ValueError:
            pass
    raise ValueError(f"model_id must be 16 hex digits (8 bytes), not {value!r}")


def _fold(counts: Any) -> list[int]:
    """Decision counts per class folded into the record's 6 slots (class >= 5 -> slot 5),
    each saturating at 65535 like the device's counters."""
    if not isinstance(counts, list | tuple):
        raise TypeError(f"decisions must be a list of counts, not {counts!r}")
    slots = [0] * DECISION_SLOTS
    for c, n in enumerate(counts):
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"decisions[{c}] must be a count >= 0, not {n!r}")
        slots[min(c, DECISION_SLOTS - 1)] += n
    return [min(n, U16) for n in slots]


def encode(record: Mapping[str, Any]) -> bytes:
    """The 48 bytes of ``record`` (a dict as decode returns, device and received_s
    ignored). Counts and quantized values saturate like the device's; uptime_s, windows,
    n_classes and flags must fit their fields. TelemetryError(kind="field") otherwise."""
    try:
        version = record.get("format_version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise ValueError(f"format_version {version!r} is not {FORMAT_VERSION}")
        scaled = [quantize(float(record[k]), *SCALED[k]) for k in
                  ("top_score_p10", "top_score_p50", "top_score_p90", "out_of_range_rate",
                   "drift_z", "ood_score", "entropy")]
        body = _BODY.pack(MAGIC, FORMAT_VERSION, _int(record, "n_classes", U8, False),
                          _model_id(record["model_id"]), _int(record, "uptime_s", U32, False),
                          _int(record, "windows", U32, False), *_fold(record["decisions"]),
                          _int(record, "uncertain", U16, True), *scaled,
                          _int(record, "flags", U16, False))
    except KeyError as exc:
        raise TelemetryError("field", f"the record has no {exc.args[0]!r}") from None
    except (TypeError, ValueError, struct.error) as exc:
        raise TelemetryError("field", str(exc)) from None
    return body + _CRC.pack(crc16(body))


def decode(data: bytes, offset: int = 0) -> dict[str, Any]:
    """The record at ``data[offset:offset + 48]`` as a dict (FIELDS, plus flag_names).
    TelemetryError: "truncated" (fewer than 48 bytes), "magic", "version" (checked before
    the CRC: another version's layout may differ), "crc"."""
    chunk = bytes(data[offset:offset + RECORD_SIZE])
    if len(chunk) < RECORD_SIZE:
        raise TelemetryError("truncated", f"{len(chunk)} bytes at byte {offset}, a record "
                             f"is {RECORD_SIZE}", offset=offset, size=len(chunk))
    if chunk[:2] != MAGIC_BYTES:
        raise TelemetryError("magic", f"no record magic 'KT' at byte {offset} (found "
                             f"{chunk[:2].hex()})", offset=offset, size=RECORD_SIZE)
    if chunk[2] != FORMAT_VERSION:
        raise TelemetryError("version", f"format version {chunk[2]} at byte {offset}; this "
                             f"kiloml reads version {FORMAT_VERSION}", offset=offset,
                             size=RECORD_SIZE)
    (stored,) = _CRC.unpack_from(chunk, _BODY.size)
    computed = crc16(chunk[:_BODY.size])
    if stored != computed:
        raise TelemetryError("crc", f"CRC 0x{stored:04X} at byte {offset}, the bytes give "
                             f"0x{computed:04X}", offset=offset, size=RECORD_SIZE)
    v = _BODY.unpack(chunk[:_BODY.size])
    out: dict[str, Any] = {"format_version": v[1], "n_classes": v[2], "model_id": v[3].hex(),
                           "uptime_s": v[4], "windows": v[5], "decisions": list(v[6:12]),
                           "uncertain": v[12]}
    for key, code in zip(("top_score_p10", "top_score_p50", "top_score_p90",
                          "out_of_range_rate", "drift_z", "ood_score", "entropy"), v[13:20],
                         strict=True):
        out[key] = code / SCALED[key][0]
    out["flags"] = v[20]
    out["flag_names"] = flag_names(v[20])
    return out


def iter_records(data: bytes) -> Iterator[tuple[int, bytes, dict[str, Any] | TelemetryError]]:
    """Every record of concatenated bytes (a .bin file): (offset, raw bytes, dict or the
    error). A record with the magic but a bad version or CRC is skipped whole (48 bytes);
    bytes without the magic (lost or inserted bytes) are skipped up to the next valid
    record and reported as one "magic" error; a short tail is "truncated"."""
    pos = 0
    while pos < len(data):
        raw = bytes(data[pos:pos + RECORD_SIZE])
        try:
            yield pos, raw, decode(data, pos)
            pos += RECORD_SIZE
            continue
        except TelemetryError as exc:
            error = exc
        if error.kind != "magic":
            yield pos, raw, error
            pos += RECORD_SIZE
            continue
        start, nxt = pos, _next_valid(data, pos + 1)
        size = nxt - start
        if size < RECORD_SIZE and nxt == len(data):
            error = TelemetryError("truncated", f"{size} bytes at byte {start}, a record is "
                                   f"{RECORD_SIZE}", offset=start, size=size)
        elif size != RECORD_SIZE:
            error = TelemetryError("magic", f"{size} bytes without a valid record at byte "
                                   f"{start}", offset=start, size=size)
        yield start, bytes(data[start:nxt]), error
        pos = nxt


def _next_valid(data: bytes, start: int) -> int:
    """The offset of the next record that decodes, or len(data)."""
    pos = data.find(MAGIC_BYTES, start)
    while pos != -1 and pos + RECORD_SIZE <= len(data):
        try:
            decode(data, pos)
            return pos
        except TelemetryError:
            pos = data.find(MAGIC_BYTES, pos + 1)
    return len(data)
