"""Scratch bytes the kml_nn DSP fast paths need (mirrors the KML_*_SCRATCH_BYTES macros)."""

from __future__ import annotations


def fc_scratch_bytes(depth: int) -> int:
    return int(depth) * 2


def conv_scratch_bytes(kh: int, kw: int, cin_per_group: int) -> int:
    return 2 * int(kh) * int(kw) * int(cin_per_group) * 2


def dwconv_scratch_bytes(kh: int, kw: int, channels: int) -> int:
    return 0
