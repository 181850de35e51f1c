"""Run kml_monitor.c on a stream, on the host (gcc) or on QEMU (arm-none-eabi-gcc,
semihosting, the instruction counter), through kiloml/verify/mcu/monitor_main.c; the
parity tests, the benchmark and verification compare its output with the twin's."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kiloml.codegen.library import RUNTIME_DIR, STRICT_CFLAGS
from kiloml.monitor.config import N_PAGE_HINKLEY, RUN_INIT, MonitorParams
from kiloml.monitor.snapshot import RECORD_BYTES

F32 = np.float32
MCU_DIR = Path(__file__).resolve().parent.parent / "verify" / "mcu"
HARNESS = MCU_DIR / "monitor_main.c"
ENERGY_HARNESS = MCU_DIR / "monitor_energy_main.c"  # kml_monitor_energy(_s8) on logits
SOURCES = [RUNTIME_DIR / "kml_monitor.c"]


@dataclass
class Stream:
    features: np.ndarray          # float32 [N, F]
    channel_variance: np.ndarray  # float32 [N, channels]
    smoothed: np.ndarray          # float32 [N, classes]
    decisions: np.ndarray         # int [N]: class or -1
    uncertain: np.ndarray         # bool [N]
    uptime_s: np.ndarray          # uint32 [N]: the record's uptime at that window
    # float32 [N]: a network's energy score per window (None: the monitor's OOD input is
    # the mean squared z of the monitored inputs)
    ood: np.ndarray | None = None


@dataclass
class HarnessOutput:
    returned: np.ndarray  # int64 [N]: kml_monitor_update's flags
    flags: np.ndarray     # int64 [N]: kml_monitor_flags() after it
    signals: np.ndarray   # float32 [N, S]
    records: list[bytes]
    instructions: np.ndarray | None = None  # per update or per snapshot (QEMU)


def constants(p: MonitorParams) -> np.ndarray:
    """The float32 constants in monitor_main.c's order."""
    c, t = p.constants(), p.thresholds.as_float32()
    return np.array([c["alpha"], c["one_minus_alpha"], c["z_clip"], c["inv_k"],
                     c["inv_log2_classes"], t["z_limit"], t["var_lo"], t["var_hi"],
                     *c["run_init"][RUN_INIT], *c["run_limit"], *t["ph_delta"],
                     *t["ph_lambda"], c["ph_cap"], c["ph_min_windows"]], "<f4")


MEASURE = {"update": 0, "snapshot": 1}  # what QEMU's instruction counts are of


def pack(p: MonitorParams, s: Stream, model_id: bytes, snapshot_every: int,
         measure: str = "update") -> bytes:
    n, f = s.features.shape
    energy = p.energy
    if energy and s.ood is None:
        raise ValueError("a monitor of the energy score needs the stream's energies (ood)")
    head = np.array([p.n_monitored, p.n_channels, p.n_classes, p.stuck_windows, f,
                     snapshot_every, n, MEASURE[measure], int(energy)], "<i4").tobytes()
    head += p.index.astype("<i4").tobytes()
    for a in (p.mean, p.inv_sd, p.lo, p.hi, p.floor):
        head += a.astype("<f4").tobytes()
    head += constants(p).tobytes() + model_id
    head += np.array([p.energy_offset], "<f4").tobytes()
    rows = np.zeros(n, np.dtype([("x", "<f4", (f,)), ("v", "<f4", (p.n_channels,)),
                                 ("s", "<f4", (p.n_classes,)), ("e", "<f4"), ("d", "<i4"),
                                 ("u", "<i4"), ("t", "<u4")]))
    rows["x"], rows["v"], rows["s"] = s.features, s.channel_variance, s.smoothed
    rows["e"] = 0.0 if s.ood is None else s.ood
    rows["d"], rows["u"], rows["t"] = s.decisions, s.uncertain, s.uptime_s
    return head + rows.tobytes()


def parse(p: MonitorParams, out: bytes, n: int, snapshot_every: int) -> HarnessOutput:
    width = 2 * p.n_monitored + 6 + 4 * N_PAGE_HINKLEY
    row = 8 + 4 * width
    returned, flags = np.zeros(n, np.int64), np.zeros(n, np.int64)
    signals = np.zeros((n, width), F32)
    records, pos = [], 0
    for i in range(n):
        returned[i], flags[i] = np.frombuffer(out, "<u4", 2, pos)
        signals[i] = np.frombuffer(out, "<f4", width, pos + 8)
        pos += row
        if (i + 1) % snapshot_every == 0:
            records.append(out[pos:pos + RECORD_BYTES])
            pos += RECORD_BYTES
    if pos != len(out):
        raise ValueError(f"monitor harness output: {len(out)} bytes, expected {pos}")
    return HarnessOutput(returned, flags, signals, records)


def build_host(work: Path, cflags: list[str] | None = None, *,
               emitted: Path | None = None, harness: Path = HARNESS) -> Path:
    """``emitted``: a kiloml.monitor.emit file for the monitor "kml_emitted", used in place
    of the parameters the stream carries; ``harness``: ENERGY_HARNESS for the energy."""
    work.mkdir(parents=True, exist_ok=True)
    exe = work / harness.stem.replace("_main", "_host")
    extra = [f'-DKML_MONITOR_EMITTED="{emitted.absolute()}"'] if emitted else []
    subprocess.run(["gcc", *STRICT_CFLAGS, *(cflags or ["-O2"]), "-DKML_MONITOR_HOST", *extra,
                    f"-I{RUNTIME_DIR}", *map(str, SOURCES), str(harness), "-o", str(exe)],
                   check=True)
    return exe


def run_host(exe: Path, p: MonitorParams, s: Stream, model_id: bytes, snapshot_every: int,
             work: Path) -> HarnessOutput:
    (work / "mon_in.bin").write_bytes(pack(p, s, model_id, snapshot_every))
    subprocess.run([str(exe), str(work / "mon_in.bin"), str(work / "mon_out.bin")],
                   check=True)
    return parse(p, (work / "mon_out.bin").read_bytes(), len(s.features), snapshot_every)


@dataclass
class QemuMonitor:
    elf: Path
    plugin: Path
    machine: str


def build_qemu(work: Path, machine: str = "mps2-an386", profile_name: str = "cortex-m4f",
               optimize: str = "-O2", extra: list[str] | None = None,
               sources: list[Path] | None = None, harness: Path = HARNESS) -> QemuMonitor:
    """``extra``: more compiler flags, after kiloml's and ``optimize``; ``sources``: the
    monitor's C in place of kiloml/runtime's (a control build); ``harness``:
    ENERGY_HARNESS for the energy."""
    from kiloml.targets.profiles import load_profile
    from kiloml.verify.mcu.build import build_standalone_harness
    from kiloml.verify.mcu.qemu import build_plugin
    from kiloml.verify.mcu.toolchain import find_toolchain
    elf = build_standalone_harness(harness, sources or SOURCES, [RUNTIME_DIR], work,
                                   name="monitor", machine=machine,
                                   profile=load_profile(profile_name), optimize=optimize,
                                   extra=extra)
    return QemuMonitor(elf, build_plugin(find_toolchain(), work / "plugin"), machine)


def run_qemu(q: QemuMonitor, p: MonitorParams, s: Stream, model_id: bytes,
             snapshot_every: int, work: Path, timeout_s: float = 300.0, *,
             measure: str = "update") -> HarnessOutput:
    from kiloml.verify.mcu.qemu import run_harness
    from kiloml.verify.mcu.toolchain import find_toolchain
    run = run_harness(find_toolchain(), q.elf, q.machine,
                      pack(p, s, model_id, snapshot_every, measure), q.plugin, work / "qemu",
                      timeout_s=timeout_s)
    out = parse(p, run.output, len(s.features), snapshot_every)
    out.instructions = run.instructions
    return out


def pack_energy(logits: np.ndarray, scale: float | None = None, zero_point: int = 0
                ) -> bytes:
    """ENERGY_HARNESS's input: rows of float32 logits, or int8 ones with ``scale``."""
    x = np.asarray(logits)
    if x.ndim != 2:
        raise ValueError("logits [rows, n]")
    int8 = scale is not None
    head = np.array([x.shape[0], x.shape[1], int(int8)], "<i4").tobytes()
    head += np.array([0.0 if scale is None else scale], "<f4").tobytes()
    head += np.array([zero_point], "<i4").tobytes()
    return head + (x.astype(np.int8) if int8 else x.astype("<f4")).tobytes()


def run_energy_host(exe: Path, work: Path, logits: np.ndarray, scale: float | None = None,
                    zero_point: int = 0) -> np.ndarray:
    """kml_monitor_energy (or _s8 with ``scale``) of each row, float32 [rows]."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "energy_in.bin").write_bytes(pack_energy(logits, scale, zero_point))
    subprocess.run([str(exe), str(work / "energy_in.bin"), str(work / "energy_out.bin")],
                   check=True)
    return np.frombuffer((work / "energy_out.bin").read_bytes(), "<f4").astype(F32)


def run_energy_qemu(q: QemuMonitor, work: Path, logits: np.ndarray,
                    scale: float | None = None, zero_point: int = 0,
                    timeout_s: float = 300.0) -> tuple[np.ndarray, np.ndarray]:
    """(energies float32 [rows], instructions per call) on QEMU."""
    from kiloml.verify.mcu.qemu import run_harness
    from kiloml.verify.mcu.toolchain import find_toolchain
    run = run_harness(find_toolchain(), q.elf, q.machine,
                      pack_energy(logits, scale, zero_point), q.plugin, work / "qemu",
                      timeout_s=timeout_s)
    return (np.frombuffer(run.output, "<f4").astype(F32),
            np.asarray(run.instructions, np.int64))


@dataclass(frozen=True)
class MonitorSizes:
    flash_bytes: int  # code, its constants and one monitor's parameters
    ram_bytes: int    # one monitor's state (struct and arrays)


def measure_sizes(work: Path, *, k: int, channels: int, classes: int,
                  profile_name: str = "cortex-m4f", optimize: str = "-O2",
                  network: bool = False) -> MonitorSizes:
    """Link monitor_probe.c with and without the monitor at the target's memory sizes
    (gc-sections) and take the difference, as the library's budget probe does.
    ``network``: the monitor of a raw-window network (channel moments, the int8 energy
    score, kml_monitor_update_ood) in place of the default's."""
    from kiloml.targets.profiles import load_profile
    from kiloml.verify.mcu.build import (
        compile_objects,
        elf_sections,
        flash_and_ram,
        link,
        write_linker_script,
    )
    from kiloml.verify.mcu.toolchain import find_toolchain
    tc, profile = find_toolchain(), load_profile(profile_name)
    memory = (0x00000000, profile.flash_bytes, 0x20000000, profile.ram_bytes)
    sizes = [f"-DKML_PROBE_K={k}", f"-DKML_PROBE_CHANNELS={channels}",
             f"-DKML_PROBE_CLASSES={classes}", *(["-DKML_PROBE_NETWORK"] if network else [])]
    startup = compile_objects(tc, [MCU_DIR / "startup.c", MCU_DIR / "semihost.c"], [MCU_DIR],
                              profile, optimize, work / "startup")
    script = write_linker_script(work / "probe.ld", f"monitor probe for {profile.name}",
                                 memory, 0)
    result = []
    for name, extra, sources in (("with", sizes, [MCU_DIR / "monitor_probe.c", *SOURCES]),
                                 ("without", [*sizes, "-DKML_NO_MONITOR"],
                                  [MCU_DIR / "monitor_probe.c"])):
        objs = compile_objects(tc, sources, [RUNTIME_DIR], profile, optimize, work / name,
                               extra=extra)
        elf = link(tc, [*startup, *objs], script, work / f"{name}.elf", profile, memory,
                   target_label=f"target '{profile.name}'")
        result.append(flash_and_ram(elf_sections(tc, elf)))
    (f1, r1), (f0, r0) = result
    return MonitorSizes(f1 - f0, r1 - r0)
