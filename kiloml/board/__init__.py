"""Board support shipped with kiloml: bare-metal start-up, linker scripts and drivers that
export packages copy and that firmware tests (export, replay, capture) link."""

from __future__ import annotations

from pathlib import Path

BOARD_DIR = Path(__file__).resolve().parent
MPS2_DIR = BOARD_DIR / "mps2"
# QEMU's mps2-an386 (Cortex-M4F): the machine name and the flags of its FPU
MPS2_AN386_MACHINE = "mps2-an386"
MPS2_AN386_CFLAGS = ("-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard")


def mps2_files() -> list[Path]:
    """Every file of the mps2 board support (sources, headers, linker script, README)."""
    return sorted(p for p in MPS2_DIR.iterdir() if p.is_file() and p.suffix in
                  {".c", ".h", ".ld", ".md"})
