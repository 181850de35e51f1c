"""Run an updatable library's kml_blob_check / kml_blob_activate on a sequence of blobs,
with the windows classified and decided after each, on the host (gcc, optionally under
sanitizers) or on QEMU (the instruction counter), through
kiloml/verify/mcu/blob_main.c. ``kiloml blob check``, the tests and bench/blob.py use it."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kiloml.codegen.library import STRICT_CFLAGS
from kiloml.errors import KilomlError, ToolchainError

F32 = np.float32
MCU_DIR = Path(__file__).resolve().parent.parent / "verify" / "mcu"
HARNESS = MCU_DIR / "blob_main.c"


@dataclass
class Ops:
    """The harness's input: the windows, then operations in order."""

    windows: np.ndarray  # float32 [N, T, C]
    parts: list[bytes] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)

    def blob(self, data: bytes, misalign: int = 0) -> Ops:
        pad = (-len(data)) % 4
        self.parts.append(np.array([1, len(data), misalign], "<u4").tobytes() + data
                          + b"\0" * pad)
        self.kinds.append("blob")
        return self

    def allow_downgrade(self, on: bool) -> Ops:
        self.parts.append(np.array([2, int(on)], "<u4").tobytes())
        return self

    def min_counter(self, value: int) -> Ops:
        self.parts.append(np.array([3, value], "<u4").tobytes())
        return self

    def classify(self) -> Ops:
        self.parts.append(np.array([4], "<i4").tobytes())
        self.kinds.append("classify")
        return self

    def snapshot(self) -> Ops:
        self.parts.append(np.array([5], "<i4").tobytes())
        self.kinds.append("snapshot")
        return self

    def pack(self) -> bytes:
        w = np.ascontiguousarray(self.windows, "<f4")
        return np.array([len(w)], "<i4").tobytes() + w.tobytes() + b"".join(self.parts) \
            + np.array([0], "<i4").tobytes()


@dataclass(frozen=True)
class BlobResult:
    check: int
    activate: int
    selftest: int
    min_counter: int
    active_counter: int
    check_stack_bytes: int = 0  # QEMU: the stack each call used (0 on the host)
    activate_stack_bytes: int = 0


@dataclass(frozen=True)
class Decisions:
    labels: np.ndarray     # int [N]
    decisions: np.ndarray  # int [N]
    scores: np.ndarray     # float32 [N, K]


def parse(ops: Ops, out: bytes, n_classes: int) -> list[BlobResult | Decisions | bytes]:
    """One result per blob (BlobResult), classify (Decisions) and snapshot (the record)."""
    results: list[BlobResult | Decisions | bytes] = []
    pos, n = 0, len(ops.windows)
    row = np.dtype([("l", "<i4"), ("d", "<i4"), ("s", "<f4", (n_classes,))])
    for kind in ops.kinds:
        if kind == "blob":
            v = np.frombuffer(out, "<i4", 7, pos).tolist()
            results.append(BlobResult(v[0], v[1], v[2], v[3] & 0xFFFFFFFF, v[4] & 0xFFFFFFFF,
                                      v[5], v[6]))
            pos += 28
        elif kind == "snapshot":
            results.append(out[pos:pos + 48])
            pos += 48
        else:
            rows = np.frombuffer(out, row, n, pos)
            results.append(Decisions(rows["l"].astype(np.int64), rows["d"].astype(np.int64),
                                     rows["s"].astype(F32)))
            pos += row.itemsize * n
    if pos != len(out):
        raise ToolchainError(f"blob harness output: {len(out)} bytes, expected {pos}")
    return results


def library_sources(firmware: Path) -> list[Path]:
    return sorted(firmware.glob("*.c"))


def build_host(firmware: Path, work: Path, cflags: list[str] | None = None) -> Path:
    """The harness with ``firmware``'s library (an updatable one) for the host."""
    work.mkdir(parents=True, exist_ok=True)
    exe = work / "blob_host"
    cmd = ["gcc", *STRICT_CFLAGS, *(cflags or ["-O2"]), "-DKML_BLOB_HOST", f"-I{firmware}",
           *map(str, library_sources(firmware)), str(HARNESS), "-lm", "-o", str(exe)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        lines = [ln for ln in result.stderr.splitlines() if "error" in ln] or [""]
        raise ToolchainError(f"gcc on the blob harness failed: {lines[0].strip()[:300]}")
    return exe


def run_host(exe: Path, ops: Ops, n_classes: int, work: Path, env: dict | None = None
             ) -> list[BlobResult | Decisions | bytes]:
    (work / "blob_in.bin").write_bytes(ops.pack())
    result = subprocess.run([str(exe), str(work / "blob_in.bin"), str(work / "blob_out.bin")],
                            capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise ToolchainError(f"the blob harness failed (status {result.returncode}): "
                             f"{result.stderr.strip()[:2000]}")
    return parse(ops, (work / "blob_out.bin").read_bytes(), n_classes)


@dataclass
class QemuBlob:
    elf: Path
    plugin: Path
    machine: str


def build_qemu(firmware: Path, work: Path, machine: str = "mps2-an386",
               profile_name: str = "cortex-m4f", optimize: str = "-O2") -> QemuBlob:
    from kiloml.targets.profiles import load_profile
    from kiloml.verify.mcu.build import build_standalone_harness
    from kiloml.verify.mcu.qemu import build_plugin
    from kiloml.verify.mcu.toolchain import find_toolchain
    elf = build_standalone_harness(HARNESS, library_sources(firmware), [firmware], work,
                                   name="blob", machine=machine,
                                   profile=load_profile(profile_name), optimize=optimize,
                                   extra=["-DKML_HARNESS_WINDOW_FLOATS=262144u"],
                                   stack_bytes=32768)
    return QemuBlob(elf, build_plugin(find_toolchain(), work / "plugin"), machine)


def run_qemu(q: QemuBlob, ops: Ops, n_classes: int, work: Path, timeout_s: float = 300.0
             ) -> tuple[list[BlobResult | Decisions | bytes], np.ndarray]:
    """The results and the instructions of each kml_blob_check and kml_blob_activate (two
    per blob, in order)."""
    from kiloml.verify.mcu.qemu import run_harness
    from kiloml.verify.mcu.toolchain import find_toolchain
    run = run_harness(find_toolchain(), q.elf, q.machine, ops.pack(), q.plugin, work,
                      timeout_s=timeout_s)
    return parse(ops, run.output, n_classes), np.asarray(run.instructions, np.int64)


def reason_name(code: int) -> str:
    from kiloml.blob.format import REASONS
    return REASONS[code] if 0 <= code < len(REASONS) else f"unknown ({code})"


def require_ok(result: BlobResult, what: str) -> None:
    if result.activate != 0:
        raise KilomlError(f"{what}: refused ({reason_name(result.activate)})")
