"""Fused multiply-adds in a linked ARM image: the disassembly, function by function.

A fused multiply-add rounds a * b + c once where the Python reference rounds twice, so
an image that holds one may not match the reference bit for bit, whatever parity the
held-out data showed. kml_fp.h turns contraction off in every file kiloml writes; this
is the check that it held (clang's -ffp-contract=fast, a file built without the header,
a hand edit), on the image that was actually linked.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from kiloml.errors import ToolchainError

# VFMA/VFMS/VFNMA/VFNMS (VFPv4, FPv4-SP, FPv5; .f16/.f32/.f64, NEON/MVE vectors too),
# with an IT-block condition suffix when there is one; MVE's VFMAS.
_FUSED = re.compile(r"^vf(?:n?m[as]|mas)(?:eq|ne|cs|cc|hs|lo|mi|pl|vs|vc|hi|ls|ge|lt|gt|le|al)?"
                    r"(?:\.[fb]\d+)?$")
_FUNCTION = re.compile(r"^[0-9a-f]+ <(.+)>:$")


def objdump_for(gcc: str) -> str:
    """arm-none-eabi-objdump beside the cross gcc (same binutils)."""
    if gcc.endswith("gcc"):
        beside = Path(gcc[: -len("gcc")] + "objdump")
        if beside.is_file():
            return str(beside)
    found = shutil.which("arm-none-eabi-objdump")
    if found is None:
        raise ToolchainError("'arm-none-eabi-objdump' is not installed; install the Debian "
                             "package binutils-arm-none-eabi (make setup does it as root)")
    return found


def fused_instructions(disassembly: str) -> dict[str, int]:
    """Function name -> how many fused multiply-add instructions it holds (objdump -d)."""
    found: dict[str, int] = {}
    function = "?"
    for line in disassembly.splitlines():
        head = _FUNCTION.match(line)
        if head:
            function = head.group(1)
            continue
        parts = line.split("\t")  # "  addr:", mnemonic, operands (--no-show-raw-insn)
        if len(parts) >= 2 and parts[0].strip().endswith(":") and _FUSED.match(parts[1].strip()):
            found[function] = found.get(function, 0) + 1
    return found


def check_image(gcc: str, elf: Path) -> dict:
    """The metrics entry for one linked image: {"checked", "found", "instructions"};
    ``found`` names every function holding a fused multiply-add (sorted)."""
    result = subprocess.run([objdump_for(gcc), "-d", "--no-show-raw-insn", str(elf)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise ToolchainError(f"arm-none-eabi-objdump -d {elf.name} failed: "
                             f"{result.stderr.strip()[:200]}")
    fused = fused_instructions(result.stdout)
    return {"checked": elf.name, "found": sorted(fused),
            "instructions": sum(fused.values())}


def finding(entry: dict) -> str | None:
    """The one-line verdict on a check_image entry (None: no fused multiply-add)."""
    found = entry.get("found") or []
    if not found:
        return None
    shown = ", ".join(found[:8]) + (f" and {len(found) - 8} more" if len(found) > 8 else "")
    return (f"{entry['instructions']} fused multiply-add instruction(s) in {entry['checked']}, "
            f"in {shown}: they round a*b+c once where the verified Python reference rounds "
            f"twice; build those files with kml_fp.h first and without clang's "
            f"-ffp-contract=fast")
