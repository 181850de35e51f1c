"""kml_shadow_v1: the 48-byte record the shadow glue writes (docs/shadow.md). Packed,
little-endian, CRC-16/CCITT-FALSE over bytes 0..45, the same framing as kml_telemetry_v1
(another magic, so a stream of records can carry both)."""

from __future__ import annotations

import struct

from kiloml.crc16 import crc16_ccitt_false

RECORD_BYTES = 48
MAGIC = 0x534B  # the bytes 'K', 'S'
FORMAT_VERSION = 1
# magic, version, classes, production id, candidate id, uptime, windows compared,
# decisions that differ, arg-max labels that differ (all three since boot), then since the
# previous record: windows, decisions that differ, production decided / candidate
# uncertain, production uncertain / candidate decided, reserved
LAYOUT = struct.Struct("<HBB8s8sIIIIHHHHH")
FIELDS = ("magic", "format_version", "n_classes", "production_id", "candidate_id",
          "uptime_s", "windows", "disagreements", "label_disagreements",
          "record_windows", "record_disagreements", "candidate_uncertain",
          "production_uncertain", "reserved")
assert LAYOUT.size == RECORD_BYTES - 2


class ShadowRecordError(ValueError):
    """A record that is not a valid kml_shadow_v1 record (the reason in the message)."""


def decode(record: bytes) -> dict:
    if len(record) != RECORD_BYTES:
        raise ShadowRecordError(f"a kml_shadow_v1 record is {RECORD_BYTES} bytes, not "
                                f"{len(record)}")
    crc = int.from_bytes(record[46:48], "little")
    if crc16_ccitt_false(record[:46]) != crc:
        raise ShadowRecordError("CRC-16 does not match")
    out = dict(zip(FIELDS, LAYOUT.unpack(record[:46]), strict=True))
    if out["magic"] != MAGIC:
        raise ShadowRecordError(f"magic 0x{out['magic']:04x} is not 'KS'")
    if out["format_version"] != FORMAT_VERSION:
        raise ShadowRecordError(f"format version {out['format_version']} is not 1")
    out["production_id"] = out["production_id"].hex()
    out["candidate_id"] = out["candidate_id"].hex()
    return out


def encode(fields: dict) -> bytes:
    values = dict(fields, magic=MAGIC, format_version=FORMAT_VERSION)
    values["production_id"] = bytes.fromhex(values["production_id"])
    values["candidate_id"] = bytes.fromhex(values["candidate_id"])
    body = LAYOUT.pack(*(values.get(k, 0) for k in FIELDS))
    return body + crc16_ccitt_false(body).to_bytes(2, "little")
