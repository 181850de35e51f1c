"""metrics.json monitor.resources.<target>: what the monitor adds to the library, measured
like the library (the budget probe, arm-none-eabi-gcc at the target's optimization): the
library with the monitor against the same library without it, both probes calling the
decision layer (kml_decide_latest), the monitor's probe its API too."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from kiloml.codegen.library import FirmwareLibrary, write_library
from kiloml.pipeline import Pipeline
from kiloml.verify.mcu import build
from kiloml.verify.mcu.toolchain import find_toolchain


def monitor_resources(pipeline: Pipeline, library: FirmwareLibrary, profile, optimize: str,
                      work: Path, created_utc: str | None = None) -> dict:
    toolchain = find_toolchain()
    work.mkdir(parents=True, exist_ok=True)
    bare = write_library(dataclasses.replace(pipeline, monitor=None), work / "without_monitor",
                         created_utc=created_utc)
    probe_decide = work / "probe_decide.c"
    probe_decide.write_text("#define KML_PROBE_DECIDE 1\n"
                            f'#include "{(build.MCU_DIR / "budget_main.c").absolute()}"\n')
    sizes = {}
    for name, lib, probe in (("with", library, None), ("without", bare, probe_decide)):
        objects = build.compile_objects(toolchain, lib.sources, [lib.directory], profile,
                                        optimize, work / name / "library")
        sizes[name] = build.budget_probe(toolchain, lib, objects, profile, optimize,
                                         work / name / "probe", probe_source=probe)
    w, wo = sizes["with"], sizes["without"]
    return {"flash_bytes": w.flash_bytes - wo.flash_bytes,
            "ram_bytes": w.ram_bytes - wo.ram_bytes,
            "library_flash_bytes": {"with": w.flash_bytes, "without": wo.flash_bytes},
            "library_ram_bytes": {"with": w.ram_bytes, "without": wo.ram_bytes},
            "measured_on": f"budget probe, arm-none-eabi-gcc {optimize} for {profile.name} "
                           "(with the monitor minus without it)"}


def monitor_instructions(pipeline: Pipeline, reference, profile, optimize: str, work: Path
                         ) -> dict:
    """Instructions per kml_monitor_update (kml_monitor_update_ood for a network) on QEMU
    (kiloml/verify/mcu/monitor_main.c, the instruction counter), on the held-out windows:
    what the monitor watches and their channel variances, the device scores as the
    smoothed scores, the model's labels as the decisions, a network's energy score."""
    import numpy as np

    from kiloml.monitor.harness import Stream, build_qemu, run_qemu
    from kiloml.monitor.inputs import monitor_inputs

    assert pipeline.monitor is not None
    x = np.asarray(reference.features, np.float32)
    n = len(x)
    if n == 0:
        return {}
    inputs = monitor_inputs(pipeline, reference.windows, x)
    stream = Stream(features=inputs.watched, channel_variance=inputs.channel_variance,
                    smoothed=inputs.scores, decisions=np.asarray(reference.labels, np.int64),
                    uncertain=np.zeros(n, bool), uptime_s=np.arange(n, dtype=np.uint32),
                    ood=inputs.energy)
    q = build_qemu(work / "qemu", machine=profile.qemu_machine, profile_name=profile.name,
                   optimize=optimize)
    out = run_qemu(q, pipeline.monitor, stream, bytes(8), pipeline.monitor_snapshot_every,
                   work / "qemu")
    counts = np.asarray(out.instructions, np.int64)
    return {"instructions_per_update_mean": float(counts.mean()) if len(counts) else None,
            "instructions_per_update_max": int(counts.max(initial=0)),
            "updates_measured": len(counts),
            "instructions_measured_on": f"qemu-{profile.qemu_machine} (monitor_main.c)"}
