"""Verify the library on one MCU target: cross-build, run every held-out window and
recording in QEMU, compare with the Python reference, and measure what it costs."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kiloml.codegen.library import FirmwareLibrary
from kiloml.errors import ToolchainError
from kiloml.pipeline import Pipeline
from kiloml.progress import track
from kiloml.targets.budget import Budget, check_budget
from kiloml.targets.profiles import TargetProfile
from kiloml.verify.fma_check import check_image, finding
from kiloml.verify.host import RecordingOutputs, StreamEvents, WindowOutputs, recording_payload
from kiloml.verify.mcu import build, qemu
from kiloml.verify.mcu.toolchain import find_toolchain
from kiloml.verify.parity import (
    add_decision_parity,
    add_recording_parity,
    recording_parity,
    stream_parity,
    window_parity,
)
from kiloml.verify.reference import Reference
from kiloml.verify.stage_costs import breakdown

DEFAULT_OPTIMIZATION = "-O2"
WINDOWS_PER_RUN = 2000  # one QEMU run per batch keeps the input files small


@dataclass
class TargetResult:
    parity: dict
    resources: dict

    @property
    def ok(self) -> bool:
        emulated = self.parity.get("emulated", False)
        parity_ok = not emulated or (self.parity["all_decisions_equal"]
                                     and self.parity["streaming"]["all_decisions_equal"])
        fused = self.resources.get("fused_multiply_add", {}).get("found")
        return parity_ok and self.resources["within_budget"] and not fused


def _compiler_version(gcc: str) -> str:
    out = subprocess.run([gcc, "-dumpversion"], capture_output=True, text=True).stdout.strip()
    return f"arm-none-eabi-gcc {out}"


def verify_target(pipeline: Pipeline, library: FirmwareLibrary, reference: Reference,
                  profile: TargetProfile, budget: Budget, work: Path, *,
                  optimize: str = DEFAULT_OPTIMIZATION,
                  latency_budget_ms: float | None = None,
                  estimate: dict | None = None,
                  cflags: list[str] | None = None) -> TargetResult:
    """``cflags``: the user's flags (kiloml verify --cflags); the library is then built
    with the target's CPU flags, ``optimize`` and them only (user_cflags)."""
    toolchain = find_toolchain()
    work.mkdir(parents=True, exist_ok=True)
    objects = _library_objects(toolchain, library, profile, optimize, work / "library", cflags)
    probe = build.budget_probe(toolchain, library, objects, profile, optimize, work / "probe")
    compiler = f"{_compiler_version(toolchain.gcc)} {optimize} {' '.join(profile.cflags)}"
    if cflags is not None:
        compiler += f" then --cflags {' '.join(cflags)}"
    common = {
        "flash_bytes": probe.flash_bytes,
        "ram_bytes": probe.ram_bytes,
        "library_objects_flash_bytes": probe.library_objects_flash_bytes,
        "runtime_support_flash_bytes": probe.flash_bytes - probe.library_objects_flash_bytes,
        "compiler": compiler,
        "cycles_per_instruction": profile.cycles_per_instruction,
        "power_source": profile.power_source,
        **({} if cflags is None else {"cflags": cflags}),
    }

    if profile.qemu_machine is None:
        est = estimate or {}
        instructions = int(est.get("instructions_per_inference", 0))
        stack = int(est.get("stack_bytes", 0))
        resources = _resources(common, profile, budget, instructions, stack,
                               latency_budget_ms,
                               measured_on=f"arm-none-eabi-ld link for {profile.name}; no "
                                           f"emulator: instructions, stack, latency and energy "
                                           f"are estimates",
                               estimated=["instructions_per_inference", "stack_bytes",
                                          "latency_us", "energy_uj"])
        parity = {"emulated": False,
                  "note": f"no emulator for {profile.name}: parity not checked on the MCU"}
        _check_fused(toolchain.gcc, work / "probe" / "probe.elf", resources)
        return TargetResult(parity, resources)

    machine = profile.qemu_machine
    fits = _recordings_that_fit(reference, pipeline, machine)
    buffer = 0 if fits is None else max(
        [int(reference.recording_lengths[i]) for i in fits] + [1]) * pipeline.n_channels
    elf = build.build_harness(toolchain, library, objects, profile, machine, optimize, work,
                              recording_floats=buffer)
    plugin = qemu.build_plugin(toolchain, work / "plugin")

    outputs, counts, stacks, _ = run_target_windows(toolchain, elf, machine, plugin, reference,
                                              pipeline, library.n_features, work / "run")
    parity = window_parity(reference.labels, reference.scores, reference.features, outputs,
                           pipeline.feature_slices())
    parity["emulated"] = True
    parity["machine"] = machine
    if cflags is not None:
        parity["cflags"] = cflags
    events, push_counts = _run_stream(toolchain, elf, machine, plugin, reference, pipeline,
                                      work / "run")
    parity["streaming"] = stream_parity(reference.stream_recording, reference.stream_last_sample,
                                        reference.stream_labels, reference.stream_scores,
                                        events)
    parity["streaming"]["n_recordings"] = len(reference.stream_lengths)
    add_decision_parity(parity["streaming"], reference, events)
    whole: dict = {}
    stack = int(stacks.max(initial=0))
    if fits is not None:
        outputs_r, counts_r = _run_recordings(toolchain, elf, machine, plugin, reference,
                                              pipeline, fits, work / "run")
        skipped = len(reference.recording_lengths) - len(fits)
        add_recording_parity(parity, recording_parity(
            reference, outputs_r, pipeline, ran=fits,
            not_run_note=f"{skipped} recordings longer than the harness's buffer on "
                         f"{machine} (a quarter of its RAM): checked on the host only"))
        held_out = reference.recording_probe[fits] == 0
        assert outputs_r.stack is not None
        np.save(work / "instructions_per_recording.npy", counts_r)
        stack = max(stack, int(outputs_r.stack.max(initial=0)))
        whole = {"recording_instructions_max": int(counts_r[held_out].max(initial=0)),
                 "recording_instructions_mean": float(counts_r[held_out].mean())
                 if held_out.any() else 0.0,
                 "recording_stack_bytes": int(outputs_r.stack.max(initial=0))}

    np.save(work / "instructions_per_window.npy", counts)  # for reports and run-to-run checks
    np.save(work / "stack_per_window.npy", stacks)
    instructions = int(counts.max(initial=0))
    resources = _resources(common, profile, budget, instructions, stack,
                           latency_budget_ms, measured_on=f"qemu-{machine}", estimated=[])
    resources.update(whole)
    resources.update(instructions_mean=float(counts.mean()) if len(counts) else 0.0,
                     instructions_min=int(counts.min(initial=0)),
                     push_sample_instructions_mean=float(push_counts.mean())
                     if len(push_counts) else 0.0,
                     push_sample_instructions_max=int(push_counts.max(initial=0)),
                     stages=_stage_breakdown(toolchain, library, objects, profile, machine,
                                             optimize, plugin, reference, pipeline, work,
                                             cflags),
                     instruction_counter="QEMU TCG plugin kml_icount (per translation block)",
                     stack_method="stack painting around kml_classify, deepest of all "
                                  "held-out windows" + (
                                      " and of kml_classify_recording on every recording"
                                      if whole else ""))
    _check_fused(toolchain.gcc, elf, resources)
    return TargetResult(parity, resources)


def _library_objects(toolchain, library: FirmwareLibrary, profile: TargetProfile,
                     optimize: str, out_dir: Path, cflags: list[str] | None,
                     extra: list[str] | None = None) -> list[Path]:
    if cflags is None:
        return build.compile_objects(toolchain, library.sources, [library.directory], profile,
                                     optimize, out_dir, extra=extra)
    from kiloml.verify.user_cflags import build_failure

    try:
        return build.compile_objects(toolchain, library.sources, [library.directory], profile,
                                     optimize, out_dir, extra=[*(extra or []), *cflags],
                                     base=[])
    except ToolchainError as exc:
        raise build_failure(f" for {profile.name}", exc.message, cflags,
                            library.directory) from None


def _check_fused(gcc: str, elf: Path, resources: dict) -> None:
    """Fused multiply-adds in the linked image fail the verification, whatever the parity
    on the held-out data (fma_check)."""
    resources["fused_multiply_add"] = entry = check_image(gcc, elf)
    verdict = finding(entry)
    if verdict is not None:
        resources["status"] = "fail"
        resources["notes"].append(verdict)


def _resources(common: dict, profile: TargetProfile, budget: Budget, instructions: int,
               stack: int, latency_budget_ms: float | None, *, measured_on: str,
               estimated: list[str]) -> dict:
    check = check_budget(common["flash_bytes"], common["ram_bytes"] + stack, budget)
    latency = profile.latency_us(instructions)
    notes = list(check.notes)
    within = check.within_budget
    status = check.status
    if latency_budget_ms is not None and latency > latency_budget_ms * 1000:
        within, status = False, "fail"
        notes.append(f"latency {latency:.0f} us is over the budget of "
                     f"{latency_budget_ms * 1000:.0f} us")
    return {
        **common,
        "stack_bytes": stack,
        "ram_with_stack_bytes": common["ram_bytes"] + stack,
        "instructions_per_inference": instructions,
        "latency_us": round(latency, 3),
        "energy_uj": round(profile.energy_uj(instructions), 4),
        "clock_hz": profile.clock_hz,
        "flash_budget_bytes": check.flash_budget_bytes,
        "ram_budget_bytes": check.ram_budget_bytes,
        "flash_fraction": check.flash_fraction,
        "ram_fraction": check.ram_fraction,
        "latency_budget_us": None if latency_budget_ms is None else latency_budget_ms * 1000,
        "status": status,
        "within_budget": within,
        "notes": notes,
        "measured_on": measured_on,
        "estimated": estimated,
    }


def run_target_windows(toolchain, elf: Path, machine: str, plugin: Path, reference: Reference,
                 pipeline: Pipeline, n_features: int, work: Path, limit: int | None = None
                 ) -> tuple[WindowOutputs, np.ndarray, np.ndarray, list[list[int]]]:
    k = pipeline.n_classes
    record = np.dtype([("label", "<i4"), ("scores", "<f4", (k,)),
                       ("features", "<f4", (n_features,)), ("stack", "<u4")])
    parts, counts, marks = [], [], []
    n = len(reference.windows) if limit is None else min(limit, len(reference.windows))
    batches = range(0, n, WINDOWS_PER_RUN)
    for start in track(batches, f"{machine}: held-out windows", total=len(batches)):
        x = np.ascontiguousarray(reference.windows[start:min(start + WINDOWS_PER_RUN, n)],
                                 dtype="<f4")
        payload = np.array([0, len(x)], dtype="<i4").tobytes() + x.tobytes()
        run = qemu.run_harness(toolchain, elf, machine, payload, plugin, work,
                               timeout_s=120 + 0.05 * len(x))
        out = np.frombuffer(run.output, dtype=record)
        if len(out) != len(x) or len(run.instructions) != len(x):
            raise ToolchainError(f"QEMU returned {len(out)} results and {len(run.instructions)} "
                               f"counts for {len(x)} windows")
        parts.append(out)
        counts.append(run.instructions)
        marks += run.marks
    out = np.concatenate(parts) if parts else np.zeros(0, dtype=record)
    outputs = WindowOutputs(out["label"].copy(), out["scores"].copy(), out["features"].copy())
    return (outputs, np.concatenate(counts) if counts else np.zeros(0, np.int64),
            out["stack"].astype(np.int64), marks)


def _run_stream(toolchain, elf: Path, machine: str, plugin: Path, reference: Reference,
                pipeline: Pipeline, work: Path) -> StreamEvents:
    k = pipeline.n_classes
    parts = [np.array([1, len(reference.stream_lengths)], dtype="<i4").tobytes()]
    for samples in reference.stream_recordings:
        parts.append(np.int32(len(samples)).astype("<i4").tobytes())
        parts.append(np.ascontiguousarray(samples, dtype="<f4").tobytes())
    run = qemu.run_harness(toolchain, elf, machine, b"".join(parts), plugin, work,
                           timeout_s=120 + 1e-4 * len(reference.stream_samples))
    return StreamEvents.parse(run.output, k, monitor=pipeline.monitor is not None), \
        run.instructions


def _recordings_that_fit(reference: Reference, pipeline: Pipeline, machine: str
                         ) -> np.ndarray | None:
    """Indices of the whole recordings the MCU harness can hold (None: no recording mode)."""
    if reference.recording_lengths is None:
        return None
    ram = build.MACHINE_MEMORY[machine][3]
    most = int(ram * build.RECORDING_BUFFER_RAM_FRACTION) // (4 * pipeline.n_channels)
    return np.flatnonzero(reference.recording_lengths <= most)


def _run_recordings(toolchain, elf: Path, machine: str, plugin: Path, reference: Reference,
                    pipeline: Pipeline, index: np.ndarray, work: Path
                    ) -> tuple[RecordingOutputs, np.ndarray]:
    whole = reference.whole_recordings
    chosen = [whole[i] for i in index]
    payload = np.int32(2).astype("<i4").tobytes() + recording_payload(chosen)
    samples = sum(len(x) for x in chosen)
    run = qemu.run_harness(toolchain, elf, machine, payload, plugin, work,
                           timeout_s=120 + 0.05 * len(chosen) + 1e-4 * samples)
    outputs = RecordingOutputs.parse(run.output, pipeline.n_classes, len(chosen), stack=True)
    if len(run.instructions) != len(chosen):
        raise ToolchainError(f"QEMU returned {len(run.instructions)} counts for "
                             f"{len(chosen)} recordings")
    return outputs, run.instructions


PROFILED_WINDOWS = 16


def _stage_breakdown(toolchain, library: FirmwareLibrary, objects: list[Path],
                     profile: TargetProfile, machine: str, optimize: str, plugin: Path,
                     reference: Reference, pipeline: Pipeline, work: Path,
                     cflags: list[str] | None = None) -> list[dict]:
    """Flash, RAM and instructions per stage (a separate build with stage markers, run on
    a few windows; the markers add a handful of instructions each)."""
    marked = _library_objects(toolchain, library, profile, optimize, work / "marked", cflags,
                              extra=["-DKML_STAGE_MARKS"])
    elf = build.build_harness(toolchain, library, marked, profile, machine, optimize,
                              work / "marked")
    _, counts, _, marks = run_target_windows(toolchain, elf, machine, plugin, reference, pipeline,
                                       library.n_features, work / "marked" / "run",
                                       limit=PROFILED_WINDOWS)
    return breakdown(toolchain, library.directory, work / "probe" / "probe.elf", objects, marks,
                     counts)
