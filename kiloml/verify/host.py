"""Level 1 verification: build the library with the host gcc, run it, compare with Python."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kiloml.codegen.library import STRICT_CFLAGS, FirmwareLibrary
from kiloml.errors import ToolchainError

HARNESS_DIR = Path(__file__).resolve().parent / "harness"
SANITIZE_FLAGS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g"]


def require_tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ToolchainError(f"'{name}' is not installed; install the Debian package "
                             f"'{package}' (make setup does it as root)")
    return path


def build_host(library: FirmwareLibrary, build_dir: Path, *, sanitize: bool = False,
               optimize: str = "-O2", harness: str = "host_main.c") -> Path:
    """Compile library + host harness (a file of verify/harness, written against the kml_
    API) with the strict flags; returns the executable."""
    cc = require_tool("gcc", "gcc")
    build_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(harness).stem
    exe = build_dir / (f"{stem}_sanitized" if sanitize else stem)
    cmd = [cc, *STRICT_CFLAGS, optimize,
           *[f"-I{d}" for d in library.harness_includes(build_dir)],
           *(SANITIZE_FLAGS if sanitize else []),
           *[str(s) for s in library.sources], str(HARNESS_DIR / harness),
           "-lm", "-o", str(exe)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or ["(no output)"]
        first = next((ln for ln in lines if "error" in ln), lines[0])
        raise ToolchainError(f"host build of the generated library failed: {first.strip()}")
    return exe


@dataclass
class WindowOutputs:
    labels: np.ndarray  # int32 [N]
    scores: np.ndarray  # float32 [N, K]
    features: np.ndarray  # float32 [N, F]


@dataclass
class StreamEvents:
    recording: np.ndarray  # int32 [M]
    last_sample: np.ndarray  # int32 [M]
    labels: np.ndarray  # int32 [M]
    scores: np.ndarray  # float32 [M, K]
    decision: np.ndarray  # int32 [M]: the decision layer's output (kml_decide_latest)
    changed: np.ndarray  # int32 [M]
    candidate: np.ndarray  # int32 [M]
    smoothed: np.ndarray  # float32 [M, K]
    # with a monitor: kml_monitor_flags() after each window, and the telemetry record
    # written at that window (zeros where none is)
    monitor_flags: np.ndarray | None = None  # int32 [M]
    monitor_records: np.ndarray | None = None  # uint8 [M, 48]

    @classmethod
    def parse(cls, raw: bytes, n_classes: int, *, monitor: bool = False) -> StreamEvents:
        """The harnesses' stream records (host_main.c and qemu_main.c write the same)."""
        fields = [("recording", "<i4"), ("sample", "<i4"), ("label", "<i4"),
                  ("scores", "<f4", (n_classes,)), ("decision", "<i4"),
                  ("changed", "<i4"), ("candidate", "<i4"),
                  ("smoothed", "<f4", (n_classes,))]
        if monitor:
            fields += [("monitor_flags", "<i4"), ("monitor_records", "u1", (48,))]
        record = np.dtype(fields)
        if len(raw) % record.itemsize:
            raise ToolchainError(f"the harness wrote {len(raw)} bytes of stream records of "
                                 f"{record.itemsize}")
        out = np.frombuffer(raw, dtype=record)
        return cls(*(out[name].copy() for name in record.names))


@dataclass
class RecordingOutputs:
    """kml_classify_recording per recording (host_main.c and qemu_main.c write the same,
    the MCU harness a stack depth after each)."""

    returned: np.ndarray  # int32 [P]: the function's return value
    labels: np.ndarray  # int32 [P]: out->label
    scores: np.ndarray  # float32 [P, K]
    stack: np.ndarray | None = None  # uint32 [P] (MCU)

    @classmethod
    def parse(cls, raw: bytes, n_classes: int, n: int, *, stack: bool = False
              ) -> RecordingOutputs:
        fields = [("returned", "<i4"), ("label", "<i4"), ("scores", "<f4", (n_classes,))]
        record = np.dtype(fields + ([("stack", "<u4")] if stack else []))
        if len(raw) != n * record.itemsize:
            raise ToolchainError(f"the harness wrote {len(raw)} bytes for {n} recordings of "
                                 f"{record.itemsize}")
        out = np.frombuffer(raw, dtype=record)
        return cls(out["returned"].copy(), out["label"].copy(), out["scores"].copy(),
                   out["stack"].copy() if stack else None)


def recording_payload(recordings: list[np.ndarray]) -> bytes:
    """int32 count, then per recording int32 n_samples and its float32 samples."""
    parts = [np.int32(len(recordings)).astype("<i4").tobytes()]
    for samples in recordings:
        parts.append(np.int32(len(samples)).astype("<i4").tobytes())
        parts.append(np.ascontiguousarray(samples, dtype="<f4").tobytes())
    return b"".join(parts)


def _run(exe: Path, mode: str, payload: bytes, work: Path) -> bytes:
    work.mkdir(parents=True, exist_ok=True)
    src, dst = work / f"{mode}.in", work / f"{mode}.out"
    src.write_bytes(payload)
    result = subprocess.run([str(exe), mode, str(src), str(dst)], capture_output=True,
                            text=True)
    if result.returncode != 0:
        raise ToolchainError(f"{exe.name} {mode} failed (exit {result.returncode}): "
                             f"{result.stderr.strip()[:300]}")
    data = dst.read_bytes()
    src.unlink()
    dst.unlink()
    return data


def run_windows(exe: Path, windows: np.ndarray, n_classes: int, n_features: int,
                work: Path) -> WindowOutputs:
    x = np.ascontiguousarray(windows, dtype="<f4")
    payload = np.int32(len(x)).astype("<i4").tobytes() + x.tobytes()
    raw = _run(exe, "windows", payload, work)
    record = np.dtype([("label", "<i4"), ("scores", "<f4", (n_classes,)),
                       ("features", "<f4", (n_features,))])
    out = np.frombuffer(raw, dtype=record)
    if len(out) != len(x):
        raise ToolchainError(f"harness returned {len(out)} results for {len(x)} windows")
    return WindowOutputs(out["label"].copy(), out["scores"].copy(), out["features"].copy())


def run_stream(exe: Path, recordings: list[np.ndarray], n_classes: int,
               work: Path, *, monitor: bool = False) -> StreamEvents:
    raw = _run(exe, "stream", recording_payload(recordings), work)
    return StreamEvents.parse(raw, n_classes, monitor=monitor)


def run_recordings(exe: Path, recordings: list[np.ndarray], n_classes: int,
                   work: Path) -> RecordingOutputs:
    raw = _run(exe, "recording", recording_payload(recordings), work)
    return RecordingOutputs.parse(raw, n_classes, len(recordings))
