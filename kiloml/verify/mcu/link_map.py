"""What each object file keeps in a linked image, read from GNU ld's map file.

Object sizes overstate a library's share of a --gc-sections link (unused functions are
dropped), so "flash of the library's objects" is measured on the link itself: the sizes
of the input sections ld kept, by the object they came from.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# Output sections whose bytes live in flash (.data is copied from flash at start-up) and
# in RAM, as kiloml's linker scripts name them.
FLASH_SECTIONS = {".text", ".rodata", ".ARM.exidx", ".ARM.extab", ".kml_model_info",
                  ".init_array", ".data"}
RAM_SECTIONS = {".data", ".bss"}
_OUTPUT = re.compile(r"^(\.[\w.]+)(\s|$)")
_SIZED = re.compile(r"^\s+0x[0-9a-fA-F]+\s+0x([0-9a-fA-F]+)\s+(\S.*)$")
_INPUT = re.compile(r"^ (\.[\w.$]+|COMMON)(?:\s+0x[0-9a-fA-F]+\s+0x([0-9a-fA-F]+)\s+(\S.*))?$")


@dataclass(frozen=True)
class KeptBytes:
    flash_bytes: int
    ram_bytes: int


def kept_by_objects(map_file: Path, objects: Iterable[Path | str]) -> KeptBytes:
    """Flash and RAM bytes of the input sections ld kept from ``objects`` (paths as they
    were given to the linker)."""
    wanted = {str(o) for o in objects}
    flash = ram = 0
    output = None
    pending = False  # an input section name alone on its line: its sizes are on the next
    started = False
    for line in map_file.read_text(errors="replace").splitlines():
        if not started:
            started = line.startswith("Linker script and memory map")
            continue
        out = _OUTPUT.match(line)
        if out:
            output, pending = out.group(1), False
            continue
        sized = None
        if pending:
            m = _SIZED.match(line)
            pending = False
            if m:
                sized = (int(m.group(1), 16), m.group(2).strip())
        else:
            m = _INPUT.match(line)
            if m and m.group(2) is None:
                pending = True
            elif m:
                sized = (int(m.group(2), 16), m.group(3).strip())
        if sized is None or output is None:
            continue
        size, origin = sized
        if origin in wanted:
            flash += size if output in FLASH_SECTIONS else 0
            ram += size if output in RAM_SECTIONS else 0
    return KeptBytes(flash, ram)
