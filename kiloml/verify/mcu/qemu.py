"""Run the harness in qemu-system-arm with semihosting and the instruction counter."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kiloml.codegen.library import STRICT_CFLAGS
from kiloml.errors import KilomlError, ToolchainError
from kiloml.verify.mcu.build import MCU_DIR, Symbol, function_at, symbols
from kiloml.verify.mcu.toolchain import ArmToolchain

HANG_INSTRUCTIONS = 500_000_000  # one inference running longer than this is a hang
FAULT_MAGIC = 0x544C4146  # "FALT", written by the harness's fault handler


def build_plugin(toolchain: ArmToolchain, work: Path) -> Path:
    work.mkdir(parents=True, exist_ok=True)
    plugin = work / "kml_icount.so"
    cmd = [toolchain.host_cc, "-std=c99", "-D_POSIX_C_SOURCE=200809L", "-O2", "-shared",
           "-fPIC", "-fvisibility=hidden", *[f for f in STRICT_CFLAGS if f.startswith("-W")],
           str(MCU_DIR / "kml_icount.c"), "-o", str(plugin)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise ToolchainError(f"building the QEMU instruction-counting plugin failed: "
                             f"{result.stderr.strip()[:300]}")
    return plugin


@dataclass
class QemuRun:
    output: bytes
    instructions: np.ndarray  # per measured region (begin..end), in order
    marks: list[list[int]]  # per region: the count at each kml_mark_stage call


def run_harness(toolchain: ArmToolchain, elf: Path, machine: str, payload: bytes, plugin: Path,
                work: Path, *, timeout_s: float, hang_instructions: int = HANG_INSTRUCTIONS
                ) -> QemuRun:
    # absolute: QEMU runs in `work` (semihosting opens kml_in.bin there), and relative
    # paths given by a caller in another folder would name other files
    work, elf, plugin = work.absolute(), elf.absolute(), plugin.absolute()
    work.mkdir(parents=True, exist_ok=True)
    for name in ("kml_in.bin", "kml_out.bin", "kml_fault.bin", "icount.txt"):
        (work / name).unlink(missing_ok=True)
    (work / "kml_in.bin").write_bytes(payload)
    table = symbols(toolchain, elf)
    marks = {s.name: s.address for s in table}
    if "kml_bench_begin" not in marks or "kml_bench_end" not in marks:
        raise ToolchainError(f"{elf.name} has no kml_bench_begin/kml_bench_end markers")
    counts = work / "icount.txt"
    mark = f",mark={marks['kml_mark_stage']:#x}" if "kml_mark_stage" in marks else ""
    cmd = [toolchain.qemu, "-M", machine, "-nographic", "-monitor", "none", "-serial", "none",
           "-semihosting-config", "enable=on,target=native", "-kernel", str(elf),
           "-plugin", f"{plugin},begin={marks['kml_bench_begin']:#x},"
                      f"end={marks['kml_bench_end']:#x},out={counts},"
                      f"limit={hang_instructions}{mark}"]
    try:
        result = subprocess.run(cmd, cwd=work, capture_output=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise KilomlError(f"the firmware hung on {machine}: no exit after {timeout_s:.0f} s "
                          f"(outside the measured inference)") from None
    _check_fault(work, table, machine)
    lines = counts.read_text().split("\n") if counts.exists() else []
    hang = [ln for ln in lines if ln.startswith("hang")]
    if result.returncode == 3 or hang:
        where = function_at(table, int(hang[0].split()[1], 16)) if hang else "unknown"
        raise KilomlError(f"the firmware hung on {machine}: one inference ran more than "
                          f"{hang_instructions:,} instructions, looping in {where}")
    if result.returncode != 0:
        stderr = result.stderr.decode(errors="replace").strip().splitlines()
        detail = stderr[-1] if stderr else "the harness stopped with a failure status"
        raise ToolchainError(f"QEMU ({machine}) exited with status {result.returncode}: "
                             f"{detail}")
    output = (work / "kml_out.bin").read_bytes()
    regions = [[int(v) for v in ln.split()] for ln in lines if ln.strip() and
               not ln.startswith("hang")]
    instructions = np.array([r[0] for r in regions], dtype=np.int64)
    return QemuRun(output, instructions, [r[1:] for r in regions])


def _check_fault(work: Path, table: list[Symbol], machine: str) -> None:
    fault = work / "kml_fault.bin"
    if not fault.exists():
        return
    magic, pc, lr, cfsr = np.frombuffer(fault.read_bytes()[:16], dtype="<u4").tolist()
    if magic != FAULT_MAGIC:
        return
    if pc == 0xFFFFFFFF:
        raise KilomlError(f"the firmware took an unexpected exception on {machine}")
    detail = f", CFSR 0x{cfsr:08x}" if cfsr else ""
    raise KilomlError(f"the firmware crashed with a HardFault on {machine} at "
                      f"{function_at(table, pc)} (PC 0x{pc:08x}, called from "
                      f"{function_at(table, lr)}{detail})")
