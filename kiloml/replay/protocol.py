"""The replay framing (host side); the device side is examples/replay/main.c of the CMake
export. Host -> device: 'H' hello, 'Z' reset, 'S' + channels x float32 little-endian one
sample. The device answers every frame with one line: the hello line, "Z", "-" (no
window completed) or "<label> <score bits as 8 hex digits>..." (a window's decision)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

HELLO = b"H"
RESET = b"Z"
SAMPLE = b"S"
HELLO_TAG = "KMLREPLAY"
VERSION = 1


@dataclass(frozen=True)
class DeviceInterface:
    channels: int
    classes: int
    window: int
    stride: int


def parse_hello(line: str) -> DeviceInterface | None:
    parts = line.split()
    if len(parts) != 6 or parts[0] != HELLO_TAG or parts[1] != str(VERSION):
        return None
    try:
        return DeviceInterface(*(int(v) for v in parts[2:]))
    except ValueError:
        return None


def sample_frame(sample: np.ndarray) -> bytes:
    return SAMPLE + np.ascontiguousarray(sample, dtype="<f4").tobytes()


@dataclass(frozen=True)
class Decision:
    label: int
    scores: np.ndarray  # float32 [K], bit for bit what the device computed


def parse_answer(line: str, classes: int) -> Decision | str | None:
    """None: no window; a Decision; or the line itself when it is neither."""
    if line == "-":
        return None
    parts = line.split()
    try:
        label = int(parts[0])
        if len(parts) != 1 + classes:
            return line
        bits = [int(p, 16) for p in parts[1:]]
    except (ValueError, IndexError):
        return line
    if any(len(p) != 8 for p in parts[1:]):
        return line
    scores = np.frombuffer(struct.pack(f"<{classes}I", *bits), dtype="<f4").astype(np.float32)
    return Decision(label, scores)
