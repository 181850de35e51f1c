"""The monitor's flag bits (kml_monitor_flags(); the telemetry record's flags field)."""

from __future__ import annotations

FLAGS = {
    "INPUT_DRIFT": 1 << 0,     # EWMA z (or variance ratio) of a monitored feature off limits
    "OUT_OF_RANGE": 1 << 1,    # out-of-range rate above its limit
    "STUCK_CHANNEL": 1 << 2,   # a raw channel flat for stuck_windows consecutive windows
    "LOW_CONFIDENCE": 1 << 3,  # running top score / margin / entropy off limits
    "UNCERTAIN_RATE": 1 << 4,  # running uncertain rate above its limit
    "OOD": 1 << 5,             # running out-of-distribution score above its limit
    "CHANGE": 1 << 6,          # a Page-Hinkley detector fired at this window
}
C_NAMES = {name: f"KML_MON_{name}" for name in FLAGS}


def flag_names(bits: int) -> list[str]:
    """The names of the bits set, in bit order (reserved bits are ignored)."""
    return [name for name, bit in FLAGS.items() if bits & bit]
