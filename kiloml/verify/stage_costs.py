"""What each stage of the pipeline costs on the target: flash and RAM from the symbols
of the linked budget probe, instructions from a build whose generated code calls a
marker between stages (the QEMU plugin records the count at each call)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np

from kiloml.codegen.library import STAGES_FILE
from kiloml.verify.mcu.toolchain import ArmToolchain


def _symbols(toolchain: ArmToolchain, path: Path) -> list[tuple[str, str, int]]:
    """(name, type letter, size) of every sized symbol."""
    out = subprocess.run([toolchain.nm, "-S", "--defined-only", str(path)], capture_output=True,
                         text=True, check=True).stdout
    table = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4:
            table.append((parts[3].split(".")[0], parts[2], int(parts[1], 16)))
    return table


def stage_table(firmware: Path) -> list[dict]:
    path = firmware / STAGES_FILE
    return json.loads(path.read_text()) if path.exists() else []


def breakdown(toolchain: ArmToolchain, firmware: Path, probe_elf: Path,
              library_objects: list[Path], stage_marks: list[list[int]],
              totals: np.ndarray) -> list[dict]:
    """Rows: stage, flash_bytes, ram_bytes, instructions (mean over the profiled windows)."""
    stages = stage_table(firmware)
    # the library prefix: the model stage's symbols are <prefix>_m_...
    lib = next((s["prefix"][:-len("_m_")] for s in stages if s["kind"] == "model"), "kml")
    # runtime function -> module, from the library's own objects
    module_of: dict[str, str] = {}
    for obj in library_objects:
        for name, kind, _ in _symbols(toolchain, obj):
            if kind in "tT":
                module_of[name] = obj.stem
    owners: dict[str, list[str]] = {}
    for s in stages:
        for module in s["runtime"]:
            owners.setdefault(module, []).append(s["title"])
    rows = {s["title"]: {"stage": s["title"], "flash_bytes": 0, "ram_bytes": 0,
                         "instructions": None} for s in stages}
    extra = {"shared runtime": {"stage": "shared runtime (used by several stages)",
                                "flash_bytes": 0, "ram_bytes": 0, "instructions": None},
             "scratch": {"stage": "scratch buffer shared by the feature stages",
                         "flash_bytes": 0, "ram_bytes": 0, "instructions": None},
             "framework": {"stage": "window ring, feature buffer, API", "flash_bytes": 0,
                           "ram_bytes": 0, "instructions": None}}
    for name, kind, size in _symbols(toolchain, probe_elf):
        flash = size if kind in "tTrRdD" else 0
        ram = size if kind in "bBdD" else 0
        owner = next((s["title"] for s in stages if name.startswith(s["prefix"])), None)
        if owner is None and name in module_of:
            users = owners.get(module_of[name], [])
            owner = users[0] if len(users) == 1 else "shared runtime" if users else None
        if owner is None and name == f"{lib}_scratch":
            owner = "scratch"
        if owner is None and (name.startswith(f"{lib}_") or name.startswith("kml_")):
            owner = "framework"
        if owner is None:
            continue  # start-up code or a libgcc/newlib helper
        row = rows.get(owner) or extra[owner]
        row["flash_bytes"] += flash
        row["ram_bytes"] += ram
    feature_stages = [s for s in stages if s["kind"] in ("window", "vector")]
    usable = [m for m in stage_marks if len(m) == len(feature_stages) + 1]
    if usable:
        marks = np.array(usable, dtype=np.float64)
        tot = np.asarray(totals[:len(usable)], dtype=np.float64)
        for i, s in enumerate(feature_stages):
            rows[s["title"]]["instructions"] = float(np.mean(marks[:, i + 1] - marks[:, i]))
        model = next(s for s in stages if s["kind"] == "model")
        rows[model["title"]]["instructions"] = float(np.mean(tot - marks[:, -1]))
        extra["framework"]["instructions"] = float(np.mean(marks[:, 0]))
    out = list(rows.values()) + [r for r in extra.values() if r["flash_bytes"] or r["ram_bytes"]]
    return out
