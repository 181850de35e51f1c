"""CRC-16/CCITT-FALSE, the check kiloml's wire formats carry (the capture protocol's frames,
kml_telemetry_v1 records): poly 0x1021, init 0xFFFF, not reflected, no final XOR
(crc16_ccitt_false(b"123456789") == 0x29B1). The C senders compute it bit by bit; this
is a byte at a time from a table (ingest checks millions of records)."""

from __future__ import annotations


def _table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = (crc << 1 ^ 0x1021) if crc & 0x8000 else crc << 1
        table.append(crc & 0xFFFF)
    return table


_TABLE = _table()


def crc16_ccitt_false(data: bytes, crc: int = 0xFFFF) -> int:
    """The CRC of ``data``, continuing from ``crc`` (the initial value by default)."""
    for byte in data:
        crc = (crc << 8 & 0xFFFF) ^ _TABLE[(crc >> 8) ^ byte]
    return crc
