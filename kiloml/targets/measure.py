"""Measure a pipeline or an int8 graph on an emulated target, for the estimator's calibration
and its benchmark: flash and static RAM from the budget probe, instructions per inference
and stack from QEMU (max over the windows given), instructions per stage from a
stage-marked build, and the linked probe's symbols (per-function code sizes, call graph)."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kiloml.codegen.library import FirmwareLibrary, write_library
from kiloml.pipeline import Pipeline
from kiloml.targets.profiles import TargetProfile

OPTIMIZE = "-O2"  # what verify_target builds with


@dataclass
class _Windows:
    windows: np.ndarray


def probe_functions(elf: Path) -> tuple[dict[str, int], dict[str, list[str]]]:
    """Every function of a linked ELF: size in bytes, and the functions it branches to
    (bl / b.w / blx to a symbol, from the disassembly)."""
    from kiloml.verify.mcu.toolchain import find_toolchain

    tc = find_toolchain()
    sizes: dict[str, int] = {}
    out = subprocess.run([tc.nm, "-S", "--defined-only", str(elf)], capture_output=True,
                         text=True, check=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2] in "tTwW":
            name = parts[3].split(".")[0]
            sizes[name] = sizes.get(name, 0) + int(parts[1], 16)
    objdump = tc.nm[:-2] + "objdump" if tc.nm.endswith("-nm") else "arm-none-eabi-objdump"
    dis = subprocess.run([objdump, "-d", "--no-show-raw-insn", str(elf)], capture_output=True,
                         text=True, check=True).stdout
    calls: dict[str, set[str]] = {}
    current = None
    head = re.compile(r"^[0-9a-f]+ <([^>]+)>:$")
    branch = re.compile(r"\s(?:bl|blx|b\.w|b|bx|b\w\w\.w|b\w\w)\s+[0-9a-f]+ <([^>+]+)>")
    for line in dis.splitlines():
        m = head.match(line)
        if m:
            current = m.group(1).split(".")[0]
            calls.setdefault(current, set())
            continue
        if current is None:
            continue
        b = branch.search(line)
        if b:
            target = b.group(1).split(".")[0]
            if target != current:
                calls[current].add(target)
    return sizes, {k: sorted(v) for k, v in calls.items()}


def measure_pipeline(pipeline: Pipeline, profile: TargetProfile, windows: np.ndarray,
                     work: Path, *, stages: bool = True) -> dict:
    """Build the pipeline's library for the profile, link the budget probe, run ``windows``
    [N, T, C] in QEMU. Returns flash_bytes, ram_bytes, stack_bytes,
    instructions_per_inference (max), instructions_mean, per-stage instruction means
    (``stage_instructions``: one per feature stage, then the model) and the probe's
    functions and calls."""
    from kiloml.verify.mcu import build, qemu
    from kiloml.verify.mcu.toolchain import find_toolchain
    from kiloml.verify.target import run_target_windows

    tc = find_toolchain()
    library = write_library(pipeline, work / "firmware")
    objects = build.compile_objects(tc, library.sources, [library.directory], profile,
                                    OPTIMIZE, work / "library")
    probe = build.budget_probe(tc, library, objects, profile, OPTIMIZE, work / "probe")
    machine = profile.qemu_machine
    assert machine is not None
    elf = build.build_harness(tc, library, objects, profile, machine, OPTIMIZE, work)
    plugin = qemu.build_plugin(tc, work / "plugin")
    ref = _Windows(np.ascontiguousarray(windows, dtype=np.float32))
    _, counts, stack, _ = run_target_windows(tc, elf, machine, plugin, ref, pipeline,
                                       library.n_features, work / "run")
    out = {"flash_bytes": probe.flash_bytes, "ram_bytes": probe.ram_bytes,
           "stack_bytes": int(stack.max()), "instructions_per_inference": int(counts.max()),
           "instructions_mean": float(counts.mean()),
           "instructions_per_window": counts.astype(int).tolist()}
    if stages:
        marked = build.compile_objects(tc, library.sources, [library.directory], profile,
                                       OPTIMIZE, work / "marked", extra=["-DKML_STAGE_MARKS"])
        elf_m = build.build_harness(tc, library, marked, profile, machine, OPTIMIZE,
                                    work / "marked")
        _, tot, _, marks = run_target_windows(tc, elf_m, machine, plugin, ref, pipeline,
                                        library.n_features, work / "marked" / "run")
        m = np.array([r for r in marks if len(r) == len(pipeline.features) + 1], np.float64)
        if len(m) == len(tot):
            per = [np.diff(m, axis=1).mean(axis=0).tolist()] if len(pipeline.features) else [[]]
            out["stage_instructions"] = per[0] + [float(np.mean(tot - m[:, -1]))]
            out["stage_instructions_per_window"] = np.column_stack(
                [np.diff(m, axis=1), tot - m[:, -1]]).tolist()
            out["framework_instructions"] = float(np.mean(m[:, 0]))
    sizes, calls = probe_functions(work / "probe" / "probe.elf")
    out["functions"], out["calls"] = sizes, calls
    return out


def measure_graph(graph, profile: TargetProfile, work: Path, *, portable: bool = False,
                  n_inputs: int = 4) -> dict:
    """An int8 graph as a standalone library (kiloml model compile's): flash, RAM, stack,
    instructions per inference (max over random inputs) and per layer."""
    from kiloml.codegen.nn_library import write_nn_library
    from kiloml.nn.compile import run_target

    library: FirmwareLibrary
    library, _net = write_nn_library(graph, work / "lib")
    rng = np.random.default_rng(0)
    # every graph input, whole tensors (a batch above 1 included)
    x = [rng.integers(-128, 128, size=(n_inputs, t.size)).astype(np.int8) if t.dtype == "int8"
         else rng.normal(size=(n_inputs, t.size)).astype(np.float32)
         for t in graph.input_tensors]
    run = run_target(library, graph, profile, x, work / "run", portable=portable)
    sizes, calls = probe_functions(work / "run" / "probe" / "probe.elf")
    return {"flash_bytes": run.flash_bytes, "ram_bytes": run.ram_bytes,
            "stack_bytes": run.stack_bytes,
            "instructions_per_inference": int(run.instructions.max()),
            "instructions_mean": float(run.instructions.mean()),
            "layer_instructions": run.layer_instructions,
            "functions": sizes, "calls": calls}
