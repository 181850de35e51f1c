"""The kml_telemetry_v1 record as kml_monitor_snapshot writes it (48 bytes, little-endian;
the layout is /work/notes/issue16_design.md's, documented in docs/architecture.md)."""

from __future__ import annotations

import numpy as np

from kiloml.crc16 import crc16_ccitt_false
from kiloml.monitor.signals import clamp

F32 = np.float32
MAGIC = 0x544B
FORMAT_VERSION = 1
RECORD_BYTES = 48
HIST_BINS = 16


def hist_quantile(hist: np.ndarray, q: int) -> int:
    """The bin midpoint (x 255, floor) of the q-th percentile: the first bin whose
    cumulative count reaches ceil(q% of the total)."""
    total = int(hist.sum())
    if total == 0:
        return 0
    need = max((q * total + 99) // 100, 1)
    seen, b = 0, 0
    for b in range(HIST_BINS - 1):
        seen += int(hist[b])
        if seen >= need:
            break
    else:
        b = HIST_BINS - 1
    return (b * 2 + 1) * 255 // (2 * HIST_BINS)


def fixed(v: np.float32, scale: float, lo: float, hi: float) -> int:
    """v * scale in float32, clamped to [lo, hi], truncated toward zero."""
    return int(clamp(F32(F32(v) * F32(scale)), F32(lo), F32(hi)))


def largest_drift(z_mean: np.ndarray) -> np.float32:
    """The first monitored feature's EWMA z of the largest magnitude (signed)."""
    drift = F32(0.0)
    for z in z_mean:
        if abs(z) > abs(drift):
            drift = z
    return drift


def encode(*, n_classes: int, model_id: bytes, uptime_s: int, windows: int,
           counts: np.ndarray, uncertain_count: int, hist: np.ndarray, oor: np.float32,
           z_mean: np.ndarray, ood: np.float32, entropy: np.float32, flags: int) -> bytes:
    if len(model_id) != 8:
        raise ValueError("model_id is 8 bytes")
    head = bytearray()
    head += MAGIC.to_bytes(2, "little") + bytes([FORMAT_VERSION, min(n_classes, 255)])
    head += model_id + (uptime_s & 0xFFFFFFFF).to_bytes(4, "little")
    head += (windows & 0xFFFFFFFF).to_bytes(4, "little")
    for c in counts:
        head += int(c).to_bytes(2, "little")
    head += int(uncertain_count).to_bytes(2, "little")
    head += bytes([hist_quantile(hist, 10), hist_quantile(hist, 50), hist_quantile(hist, 90),
                   fixed(oor, 255.0, 0.0, 255.0)])
    head += fixed(largest_drift(z_mean), 256.0, -32768.0, 32767.0).to_bytes(2, "little",
                                                                             signed=True)
    head += fixed(ood, 256.0, 0.0, 65535.0).to_bytes(2, "little")
    head += fixed(entropy, 65535.0, 0.0, 65535.0).to_bytes(2, "little")
    head += int(flags).to_bytes(2, "little")
    return bytes(head) + crc16_ccitt_false(bytes(head)).to_bytes(2, "little")
