"""The monitor's flag bits (kml_monitor_flags(), a uint16 bitfield): the table of
names shared by the telemetry codec, the fleet database and its report. The C twin's
KML_MON_<name> macros and kiloml.monitor.flags carry the same bits and names
(docs/telemetry_format.md; tests/test_telemetry.py checks they agree)."""

from __future__ import annotations

__all__ = ["FLAGS", "RESERVED_MASK", "flag_names", "flags_from_names"]

# bit -> name; bits 7..15 are reserved (0 in every v1 record).
FLAGS: dict[int, str] = {
    0: "INPUT_DRIFT",  # EWMA z of a monitored feature beyond its limit / change detector
    1: "OUT_OF_RANGE",  # out-of-range rate above its limit
    2: "STUCK_CHANNEL",  # a raw channel's window variance below the floor for N windows
    3: "LOW_CONFIDENCE",  # running top score / margin / entropy beyond its limit
    4: "UNCERTAIN_RATE",  # uncertain rate above its limit
    5: "OOD",  # out-of-distribution score above its limit
    6: "CHANGE",  # a Page-Hinkley change detector fired (any signal)
}
RESERVED_MASK = 0xFFFF & ~sum(1 << bit for bit in FLAGS)
RESERVED_PREFIX = "BIT"
_BY_NAME = {name: bit for bit, name in FLAGS.items()}


def flag_names(flags: int) -> list[str]:
    """The names of the bits set in ``flags``, lowest bit first; a reserved bit set (a
    newer monitor) shows as BIT<n> so nothing is hidden."""
    return [FLAGS.get(bit, f"{RESERVED_PREFIX}{bit}") for bit in range(16) if flags >> bit & 1]


def flags_from_names(names: list[str]) -> int:
    """The bitfield of ``names`` (as flag_names writes them); KeyError for an unknown name."""
    value = 0
    for name in names:
        if name.startswith(RESERVED_PREFIX) and name[len(RESERVED_PREFIX):].isdigit():
            value |= 1 << int(name[len(RESERVED_PREFIX):])
        else:
            value |= 1 << _BY_NAME[name]
    return value
