"""Flash and static RAM of the library's own object files (harness excluded).

flash = text + rodata + data (initial values live in flash), RAM = data + bss.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from kiloml.codegen.library import STRICT_CFLAGS, FirmwareLibrary
from kiloml.errors import ToolchainError
from kiloml.verify.host import require_tool

# No unwind tables: they are a host artefact, not part of firmware.
SIZE_CFLAGS = ["-Os", "-ffunction-sections", "-fdata-sections", "-fno-asynchronous-unwind-tables",
               "-fno-unwind-tables"]


@dataclass(frozen=True)
class SectionSizes:
    text: int
    rodata: int
    data: int
    bss: int

    @property
    def flash_bytes(self) -> int:
        return self.text + self.rodata + self.data

    @property
    def ram_bytes(self) -> int:
        return self.data + self.bss


def parse_size_a(output: str) -> SectionSizes:
    """Sum the sections printed by ``size -A -d`` into text / rodata / data / bss."""
    text = rodata = data = bss = 0
    for line in output.splitlines():
        parts = line.split()
        if len(parts) < 2 or not parts[0].startswith(".") or not parts[1].isdigit():
            continue
        name, size = parts[0], int(parts[1])
        if name.startswith(".text"):
            text += size
        elif name.startswith((".rodata", ".srodata")):
            rodata += size
        elif name.startswith((".data", ".sdata")):
            data += size
        elif name.startswith((".bss", ".sbss")):
            bss += size
    return SectionSizes(text, rodata, data, bss)


def measure_library(library: FirmwareLibrary, build_dir: Path, *, cc: str = "gcc",
                    size_tool: str = "size", cflags: list[str] | None = None,
                    package: str = "gcc") -> SectionSizes:
    cc_path = require_tool(cc, package)
    size_path = require_tool(size_tool, "binutils")
    build_dir.mkdir(parents=True, exist_ok=True)
    total = SectionSizes(0, 0, 0, 0)
    for source in library.sources:
        obj = build_dir / (source.stem + ".o")
        cmd = [cc_path, *STRICT_CFLAGS, *SIZE_CFLAGS, *(cflags or []),
               f"-I{library.directory}", "-c", str(source), "-o", str(obj)]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            first = (result.stderr.strip().splitlines() or ["(no output)"])[0]
            raise ToolchainError(f"{cc} could not compile {source.name}: {first}")
        out = subprocess.run([size_path, "-A", "-d", str(obj)], capture_output=True, text=True,
                             check=True).stdout
        s = parse_size_a(out)
        total = SectionSizes(total.text + s.text, total.rodata + s.rodata, total.data + s.data,
                             total.bss + s.bss)
    return total
