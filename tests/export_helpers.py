"""Shared by the export and replay tests: a finished toy run (host and QEMU parity in its
metrics.json), Python's streamed decisions from its reference, QEMU runs of firmware."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from conftest import run_cli, write_toy_project

from kiloml.board import MPS2_AN386_MACHINE
from kiloml.verify.mcu.toolchain import find_toolchain
from kiloml.verify.reference import REFERENCE_FILE, Reference

DECISION_RE = re.compile(r"^decision (\d+) (\d+) (-?\d+) (\S+)$")


def make_run(root: Path) -> Path:
    """`kiloml run` of the toy project (with the emulator): its run folder."""
    toml = write_toy_project(root)
    result = run_cli("run", str(toml))
    assert result.exit_code == 0, result.stderr
    return root / "out"


def python_decisions(run_dir: Path) -> list[tuple[int, int, int]]:
    """(recording, sample that completed the window, label) of every streamed held-out
    window, as the Python reference decided."""
    ref = Reference.load(run_dir / "verify" / REFERENCE_FILE)
    return [(int(r), int(s), int(lab)) for r, s, lab in
            zip(ref.stream_recording, ref.stream_last_sample, ref.stream_labels, strict=True)]


def printed_decisions(text: str) -> list[tuple[int, int, int]]:
    out = []
    for line in text.splitlines():
        m = DECISION_RE.match(line.strip())
        if m:
            out.append((int(m[1]), int(m[2]), int(m[3])))
    return out


def qemu_run(elf: Path, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    """The firmware on mps2-an386 with UART0 on stdout; it ends by semihosting."""
    return subprocess.run([find_toolchain().qemu, "-M", MPS2_AN386_MACHINE, "-nographic",
                           "-monitor", "none", "-serial", "stdio", "-semihosting-config",
                           "enable=on,target=native", "-kernel", str(elf)],
                          capture_output=True, text=True, timeout=timeout_s,
                          stdin=subprocess.DEVNULL)


def sh(*cmd: str | Path, cwd: Path | None = None) -> str:
    result = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=cwd)
    assert result.returncode == 0, (cmd, result.stdout[-2000:], result.stderr[-2000:])
    return result.stdout
