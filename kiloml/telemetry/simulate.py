"""`kiloml fleet simulate RUN_DIR --devices N --drifting K --days D --out DIR`: a fleet of
simulated devices, each the run's generated C library compiled with the host gcc (the real
C, not the Python twin) fed D days of sensor samples, writing its kml_telemetry_v1
records to ``DIR/<device>.bin`` (what `kiloml fleet ingest` reads), and ``truth.json``
naming the devices with a drift and when it began.

A device's samples are the run's held-out recordings (verify/reference.npz, what the
firmware is fed in verification) in a random order per pass over them, from a random
starting sample, looped to fill its time at the input sample rate. K devices chosen at
random get one of kiloml stress's perturbations applied gradually from a random onset
(uniform in ONSET_SHARE of the device's time): 0 to the full severity over
kiloml.monitor.evaluate's RAMP_S, or, for "ramp", the stress ramp from the onset to the
device's last sample. Severities are in units of the training samples' channel statistics
when metrics.json has them (monitor.channel_scale), else of the held-out recordings' (a
run folder holds no training samples). Samples are generated and streamed
to the driver (kiloml/verify/harness/fleet_main.c) in chunks: memory stays bounded
whatever D is. Everything random follows ``seed``: the same call writes the same bytes.

Outputs are written into a staging folder moved over ``DIR`` when every device is done,
so an error leaves no half-written fleet."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kiloml.errors import KilomlError, ToolchainError
from kiloml.evaluate.perturb import ChannelScale, get_perturbation, perturb_samples
from kiloml.monitor import evaluate as ev
from kiloml.monitor.calibrate import parse_every
from kiloml.outputs import (
    Protected,
    check_output_folder,
    make_staging,
    replace_folder,
    require_kiloml_folder,
)
from kiloml.persist.pipeline_state import PIPELINE_FILE, load_pipeline, refuse_old_run
from kiloml.pipeline import Pipeline
from kiloml.progress import track
from kiloml.results import METRICS_FILE, read_metrics
from kiloml.telemetry.codec import RECORD_SIZE
from kiloml.telemetry.simulate_twin import record_points
from kiloml.verify.reference import REFERENCE_FILE, Reference

__all__ = ["DEFAULT_PERTURBATIONS", "KIND", "TRUTH_FILE", "DevicePlan", "Drift", "FleetRun",
           "device_chunks", "device_names", "load_run", "parse_perturbation",
           "parse_record_every", "plan_fleet", "records_expected", "simulate",
           "training_scale"]

KIND = "fleet-simulate"  # the output folder's marker (kiloml.outputs)
TRUTH_FILE = "truth.json"
HARNESS = "fleet_main.c"
DAY_S = 86400.0
# the strong severity of each gradual perturbation the monitor evaluation uses
DEFAULT_PERTURBATIONS = tuple((name, float(ev.SEVERITIES[name][-1])) for name in ev.GRADUAL)
ONSET_SHARE = (0.2, 0.7)  # a drift begins in this part of the device's time
CHUNK_ROWS = 1 << 16  # samples per chunk streamed to a device (~1.5 MB at 6 channels)


@dataclass(frozen=True)
class Drift:
    perturbation: str
    severity: float
    onset_sample: int  # the first perturbed sample (input rate)


@dataclass(frozen=True)
class DevicePlan:
    name: str
    index: int
    seed: int  # the device's own random stream (order, offset, perturbation patterns)
    drift: Drift | None


@dataclass
class FleetRun:
    """What a simulation needs from a run folder."""

    folder: Path
    pipeline: Pipeline
    recordings: list[np.ndarray]  # float32 [S, C] each: the held-out raw recordings
    scale: ChannelScale
    model_id: str  # 16 hex digits (metrics.json library.model_id)
    scale_units: str = "held-out"  # whose channel statistics the severities are in

    @property
    def rate_hz(self) -> float:
        return float(self.pipeline.input_rate_hz)


# --- input checks ----------------------------------------------------------------------


def parse_perturbation(text: str, n_channels: int) -> tuple[str, float]:
    """'NAME:SEVERITY' (a gradual perturbation, its severity in kiloml stress's units)."""
    where = "--perturbation"
    name, sep, value = str(text).partition(":")
    name = name.strip()
    if not sep or not name or not value.strip():
        raise KilomlError(f"'{text}' is not NAME:SEVERITY (e.g. gain:50; perturbations: "
                          f"{', '.join(ev.GRADUAL)})", where=where)
    p = get_perturbation(name, where)
    if name not in ev.GRADUAL:
        raise KilomlError(f"'{name}' has no gradual form; use one of {', '.join(ev.GRADUAL)}",
                          where=where)
    try:
        severity = float(value)
    except ValueError:
        raise KilomlError(f"'{value.strip()}' in '{text}' is not a number", where=where) from None
    severity = p.check(severity, n_channels, where)
    if p.identity is not None and severity == p.identity:
        raise KilomlError(f"{name} severity {severity:g} leaves the samples unchanged: a "
                          "drifting device needs a drift", where=where)
    return name, severity


def parse_record_every(text: str) -> int:
    """'60s', '5m' ... -> whole seconds (the records' uptime is in seconds)."""
    seconds = parse_every(text, "--record-every")
    if seconds != int(seconds):
        raise KilomlError(f"'{text}' is not a whole number of seconds", where="--record-every")
    return int(seconds)


def load_run(folder: Path) -> FleetRun:
    """The run folder's pipeline (with a [monitor]), held-out recordings and model id."""
    folder = Path(folder)
    require_kiloml_folder(folder, "run", what="the run folder")
    refuse_old_run(folder)
    for name in (PIPELINE_FILE, METRICS_FILE, f"verify/{REFERENCE_FILE}"):
        if not (folder / name).is_file():
            raise KilomlError(f"no complete `kiloml run` output here ({name} is missing); "
                              "run `kiloml run` again", file=folder)
    pipeline = load_pipeline(folder / PIPELINE_FILE)
    if pipeline.monitor is None:
        raise KilomlError("the run has no on-device monitor, so its devices write no "
                          "telemetry; add a [monitor] section to its kiloml.toml and run "
                          "`kiloml run` again", file=folder)
    metrics = read_metrics(folder)
    library = metrics.get("library")
    model_id = library.get("model_id") if isinstance(library, dict) else None
    if not isinstance(model_id, str) or len(model_id) != 16:
        raise KilomlError("metrics.json has no library model_id; run `kiloml run` again",
                          file=folder / METRICS_FILE)
    reference = Reference.load(folder / "verify" / REFERENCE_FILE, pipeline)
    recordings = [r for r in reference.stream_recordings if len(r)]
    if not recordings:
        raise KilomlError("the run holds no held-out recordings to replay (verify/"
                          f"{REFERENCE_FILE} is empty)", file=folder)
    scale = training_scale(metrics, pipeline.n_channels)
    units = "training"
    if scale is None:
        scale, units = ChannelScale.of_samples(np.concatenate(recordings)), "held-out"
    return FleetRun(folder, pipeline, recordings, scale, model_id, units)


def training_scale(metrics: dict, n_channels: int) -> ChannelScale | None:
    """metrics.json monitor.channel_scale ({"std", "low", "high"}: the training samples'
    ChannelScale), when the run wrote it and it is sound; None otherwise."""
    monitor = metrics.get("monitor")
    found = monitor.get("channel_scale") if isinstance(monitor, dict) else None
    if not isinstance(found, dict):
        return None
    try:
        parts = [np.asarray(found[k], np.float64) for k in ("std", "low", "high")]
    except (KeyError, TypeError, ValueError):
        return None
    std, low, high = parts
    if any(p.shape != (n_channels,) or not np.all(np.isfinite(p)) for p in parts) or \
            np.any(std <= 0) or np.any(high < low):
        return None
    return ChannelScale(std=std, low=low, high=high)


# --- the fleet's plan -------------------------------------------------------------------


def device_names(n: int) -> list[str]:
    width = max(3, len(str(n - 1)))
    return [f"dev-{i:0{width}d}" for i in range(n)]


def plan_fleet(n_devices: int, n_drifting: int, n_samples: int,
               perturbations: list[tuple[str, float]], seed: int) -> list[DevicePlan]:
    """Which devices drift (chosen at random), with what and from which sample."""
    rng = np.random.default_rng([seed, 0])
    drifting = set(rng.choice(n_devices, size=n_drifting, replace=False).tolist())
    states = np.random.SeedSequence(seed).generate_state(n_devices)
    plans = []
    for i, name in enumerate(device_names(n_devices)):
        drift = None
        if i in drifting:
            pert, severity = perturbations[int(rng.integers(len(perturbations)))]
            onset = int(rng.uniform(*ONSET_SHARE) * n_samples)
            drift = Drift(pert, severity, onset)
        plans.append(DevicePlan(name, i, int(states[i]), drift))
    return plans


def records_expected(n_samples: int, rate_hz: float, record_every_s: int) -> int:
    """The records fleet_main.c writes for n_samples."""
    return len(record_points(n_samples, rate_hz, record_every_s))


# --- a device's samples -----------------------------------------------------------------


def _pieces(recordings: list[np.ndarray], rng: np.random.Generator
            ) -> Iterator[np.ndarray]:
    """The recordings end to end forever, each pass in a new random order, the first pass
    from a random sample on."""
    total = sum(len(r) for r in recordings)
    skip = int(rng.integers(total))
    while True:
        for i in rng.permutation(len(recordings)):
            r = recordings[i]
            if skip >= len(r):
                skip -= len(r)
                continue
            yield r[skip:]
            skip = 0


def clean_chunks(recordings: list[np.ndarray], rng: np.random.Generator, n_samples: int,
                 chunk: int = CHUNK_ROWS) -> Iterator[np.ndarray]:
    """n_samples of a device's clean stream, in float32 chunks of ``chunk`` rows."""
    pieces = _pieces(recordings, rng)
    rest = np.zeros((0, recordings[0].shape[1]), np.float32)
    done = 0
    while done < n_samples:
        want = min(chunk, n_samples - done)
        parts, have = [rest], len(rest)
        while have < want:
            parts.append(next(pieces))
            have += len(parts[-1])
        x = np.concatenate(parts) if len(parts) > 1 else rest
        rest = x[want:]
        done += want
        yield np.asarray(x[:want], np.float32)


def _drift_part(x: np.ndarray, start: int, n_samples: int, drift: Drift, scale: ChannelScale,
                rate_hz: float, seed: int, index: int) -> np.ndarray:
    """Samples from ``start`` on (all at or after the onset) of a drifting device.
    kiloml.monitor.evaluate.gradual on this part with the onset where it falls relative to
    it (the weight follows the device's time; the random patterns differ per part through
    ``index``), except "ramp": gradual's ramp spans the samples it is given, so here the
    stress ramp's full-severity shift (perturb_samples' last row) is scaled by the share
    of the way from the onset to the device's last sample."""
    onset = drift.onset_sample - start  # <= 0
    if drift.perturbation != "ramp":
        return ev.gradual(x, drift.perturbation, drift.severity, scale, rate_hz, onset,
                          int(ev.RAMP_S * rate_hz), seed=seed, index=index)
    shift = perturb_samples(np.zeros((2, x.shape[1]), np.float32), "ramp", drift.severity,
                            scale, rate_hz, seed=seed)[-1].astype(np.float64)
    t = np.arange(len(x), dtype=np.float64) - onset
    w = np.clip(t / max(1, n_samples - 1 - drift.onset_sample), 0.0, 1.0)
    return (x.astype(np.float64) + w[:, None] * shift).astype(np.float32)


def device_chunks(run: FleetRun, plan: DevicePlan, n_samples: int,
                  chunk: int = CHUNK_ROWS) -> Iterator[np.ndarray]:
    """The device's samples in chunks (float32 [<= chunk, C]), drift included."""
    rng = np.random.default_rng(plan.seed)
    start = 0
    for k, x in enumerate(clean_chunks(run.recordings, rng, n_samples, chunk)):
        d = plan.drift
        if d is not None and start + len(x) > d.onset_sample:
            cut = max(0, d.onset_sample - start)
            x = x.copy()
            x[cut:] = _drift_part(x[cut:], start + cut, n_samples, d, run.scale, run.rate_hz,
                                  plan.seed, k)
        start += len(x)
        yield x


# --- running the devices ----------------------------------------------------------------


class Stopped(Exception):
    """Another device failed, or the user pressed Ctrl-C: this one stops too."""


def run_device(exe: Path, chunks: Iterator[np.ndarray], record_every_s: int, out: Path,
               stop: threading.Event | None = None) -> None:
    """One device: its samples into fleet_main's stdin, its records into ``out``."""
    with out.open("wb") as f:
        proc = subprocess.Popen([str(exe), str(record_every_s)], stdin=subprocess.PIPE,
                                stdout=f, stderr=subprocess.PIPE)
        assert proc.stdin is not None and proc.stderr is not None
        try:
            for x in chunks:
                if stop is not None and stop.is_set():
                    raise Stopped
                proc.stdin.write(np.ascontiguousarray(x, "<f4").tobytes())
            proc.stdin.close()
        except BrokenPipeError:
            pass  # the driver stopped early: its exit code and message say why
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        err = proc.stderr.read().decode(errors="replace").strip()
        code = proc.wait()
    if code != 0:
        raise ToolchainError(f"the fleet driver failed for {out.stem} (exit {code}): "
                             f"{err[:300] or 'no message'}")


def check_counts(n_devices: int, n_drifting: int, days: float) -> None:
    if n_devices < 1:
        raise KilomlError(f"{n_devices} devices: give at least 1", where="--devices")
    if n_drifting < 0:
        raise KilomlError(f"{n_drifting} drifting devices: give 0 or more",
                          where="--drifting")
    if n_drifting > n_devices:
        raise KilomlError(f"{n_drifting} drifting devices, but only {n_devices} devices",
                          where="--drifting")
    if not math.isfinite(days) or days <= 0:
        raise KilomlError(f"{days:g} days: give a positive number of days (fractions "
                          "allowed)", where="--days")


def simulate(run_dir: Path, out: Path, *, devices: int, drifting: int, days: float,
             seed: int = 0, record_every: str = "60s",
             perturbations: list[str] | None = None, jobs: int = 2) -> dict:
    """Simulate the fleet into ``out``; returns truth.json's content."""
    check_counts(devices, drifting, days)
    if jobs < 1:
        raise KilomlError(f"{jobs} jobs: give at least 1", where="--jobs")
    every = parse_record_every(record_every)
    check_output_folder(out, KIND, [Protected("the run folder", Path(run_dir), folder=True,
                                              inside_ok=True)], name="--out")
    run = load_run(Path(run_dir))
    chosen = [parse_perturbation(p, run.pipeline.n_channels) for p in perturbations or []]
    n_samples = round(days * DAY_S * run.rate_hz)
    n_records = records_expected(n_samples, run.rate_hz, every)
    if n_records < 1:
        raise KilomlError(f"{days:g} days is shorter than one record period ({every} s): no "
                          "device would write a record", where="--days")
    plans = plan_fleet(devices, drifting, n_samples, chosen or list(DEFAULT_PERTURBATIONS),
                       seed)
    from kiloml.verify.command import generated_library
    from kiloml.verify.host import build_host

    staging = make_staging(out, KIND)
    try:
        with tempfile.TemporaryDirectory(prefix="kiloml-fleet-") as tmp:
            # the C is generated again from pipeline.json and must equal firmware/ byte for
            # byte (as `kiloml verify` does: the folder may come from someone else)
            library = generated_library(run.pipeline, run.folder / "firmware",
                                        Path(tmp) / "firmware")
            exe = build_host(library, Path(tmp) / "build", harness=HARNESS)
            stop = threading.Event()
            with ThreadPoolExecutor(max_workers=min(jobs, devices)) as pool:
                futures = [pool.submit(run_device, exe, device_chunks(run, p, n_samples), every,
                                       staging / f"{p.name}.bin", stop) for p in plans]
                try:
                    for f in track(as_completed(futures), "simulating devices",
                                   total=devices):
                        f.result()
                except BaseException:
                    stop.set()  # the running devices stop at their next chunk
                    for f in futures:  # the devices not started yet are not
                        f.cancel()
                    raise
        for p in plans:
            size = (staging / f"{p.name}.bin").stat().st_size
            if size != n_records * RECORD_SIZE:
                raise ToolchainError(f"{p.name}: the fleet driver wrote {size} bytes, not "
                                     f"{n_records} records of {RECORD_SIZE}")
        truth = truth_of(run, plans, days, seed, every, n_samples, n_records)
        (staging / TRUTH_FILE).write_text(json.dumps(truth, indent=1) + "\n")
        replace_folder(staging, out, KIND)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return truth


def truth_of(run: FleetRun, plans: list[DevicePlan], days: float, seed: int, every: int,
             n_samples: int, n_records: int) -> dict:
    return {
        "drifting": [{"device": p.name, "onset_s": p.drift.onset_sample / run.rate_hz,
                      "perturbation": p.drift.perturbation, "severity": p.drift.severity}
                     for p in plans if p.drift is not None],
        "devices": [p.name for p in plans],
        "days": days, "seed": seed, "record_every_s": every,
        "run": str(run.folder.resolve()), "model_id": run.model_id,
        "sample_rate_hz": run.rate_hz, "samples_per_device": n_samples,
        "records_per_device": n_records, "ramp_s": ev.RAMP_S,
        "severity_units": f"kiloml stress's, in the {run.scale_units} samples' channel "
                          "statistics",
    }
