"""Write a capture as a recording `kiloml run` reads: OUT/LABEL/NAME.csv (a comment line,
the header ``t,<channels>``, one row per sample; label_from_folder = true takes LABEL) and
NAME.capture.json beside it (the figures). Both are written whole or not at all.

The time column ``t`` is in seconds from the first sample: the device's timestamps for
the kml protocol (a dropped frame leaves its gap), the sample index over the rate for the
text protocol (arrival times carry the link's buffering, not the sampling). Values are
written so that reading them back as float32 gives the bits the device sent: the text
protocol's cells as the device wrote them, kml's float32 values as their shortest decimal
that reads back to the same bits (else the exact one).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from kiloml.atomic import write_atomically, write_text_atomically
from kiloml.capture.session import Capture
from kiloml.errors import KilomlError

FLT_MAX = float(np.finfo(np.float32).max)
FOLDER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-+]*")


@dataclass(frozen=True)
class RecordingPaths:
    csv: Path
    json: Path


def check_name(value: str, option: str) -> None:
    if not FOLDER_NAME.fullmatch(value) or value.endswith("."):
        raise KilomlError(f"{option} '{value}': use letters, digits and _ . - + (no path "
                          f"separators, not starting with '.' or '-')")


def plan_paths(out: Path, label: str, name: str | None) -> RecordingPaths:
    """Where the recording goes; checked before the capture starts, so a capture is never
    lost to a name that is taken or a folder that cannot be written."""
    check_name(label, "--label")
    if name is not None:
        check_name(name, "--name")
    folder = out / label
    if folder.exists() and not folder.is_dir():
        raise KilomlError("is not a folder", file=folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise KilomlError(f"cannot create the folder: {exc.strerror or exc}",
                          file=folder) from None
    if name is None:
        base = f"{label}_{datetime.now().strftime('%Y%m%d-%H%M%S')}"
        name, n = base, 1
        while (folder / f"{name}.csv").exists() or (folder / f"{name}.capture.json").exists():
            n += 1
            name = f"{base}-{n}"
    paths = RecordingPaths(folder / f"{name}.csv", folder / f"{name}.capture.json")
    for path in (paths.csv, paths.json):
        if path.exists():
            raise KilomlError("already exists; kiloml capture does not overwrite recordings "
                              "(choose another --name)", file=path)
    return paths


def float32_text(bits: np.ndarray) -> list[str]:
    """Decimal text for float32 values that reads back (float64, then float32, as
    `kiloml run` does) to the same bits."""
    out = []
    for v in bits:
        text = str(v)  # numpy: the shortest repr that identifies the float32
        back = float(text)
        # (the shortest text of the largest float32s reads as a float64 just above
        # FLT_MAX, which a reader may refuse as out of float32's range)
        if not np.isfinite(v) or abs(back) > FLT_MAX or \
                np.float32(back).tobytes() != v.tobytes():
            text = repr(float(v))  # the exact value as a float64: reads back exactly
        out.append(text)
    return out


def rows(cap: Capture, rate_hz: float) -> tuple[list[str], list[list[str]]]:
    """The time column and the value rows of the recording."""
    if cap.settings.protocol == "kml":
        t0 = cap.t_us[0]
        times = [f"{(t - t0) // 1_000_000}.{(t - t0) % 1_000_000:06d}" for t in cap.t_us]
        flat = np.frombuffer(b"".join(cap.values), dtype="<f4")
        cells = float32_text(flat)
        n = len(cap.channels)
        return times, [cells[i:i + n] for i in range(0, len(cells), n)]
    return [repr(i / rate_hz) for i in range(cap.n_samples)], cap.rows


def write_recording(paths: RecordingPaths, cap: Capture, rate_hz: float, label: str,
                    figs: dict) -> None:
    times, values = rows(cap, rate_hz)
    units = ""
    if cap.units:
        units = "; units " + ", ".join(f"{c} {u or '-'}" for c, u in
                                       zip(cap.channels, cap.units, strict=True))
    comment = (f"# kiloml capture: label {label}, {cap.settings.protocol} protocol from "
               f"{cap.settings.port}, {len(times)} samples, t in s{units}")
    lines = [comment, ",".join(["t", *cap.channels])]
    lines += [",".join([t, *row]) for t, row in zip(times, values, strict=True)]
    text = "\n".join(lines) + "\n"
    document = {"recording": paths.csv.name, "label": label, **figs,
                "recording_rate_hz": rate_hz}
    try:
        write_atomically(paths.csv, lambda f: f.write(text.encode("utf-8")))
        write_text_atomically(paths.json, json.dumps(document, indent=2) + "\n")
    except OSError as exc:
        paths.csv.unlink(missing_ok=True)
        raise KilomlError(f"cannot write: {exc.strerror or exc}",
                          file=exc.filename or paths.csv) from None
