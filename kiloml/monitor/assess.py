"""The monitor's alarms in `kiloml run`: limits calibrated to ``[monitor] false_alarm_every``
on the held-out devices' clean streams (kiloml.monitor.calibrate), then evaluated on the
same devices (kiloml.monitor.evaluate): false alarms on the clean streams, in sample and
device by device with the limits calibrated on the other devices (the honest figure for a
device the calibration never saw), and the detection delay of gradual drifts, severity by
severity, next to a do-nothing, a periodic and river's ADWIN and KSWIN detectors.

A held-out device is one held-out group (subject, session, unit): its recordings end to
end, as one boot of the firmware would see them."""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kiloml.data.recording import Recording
from kiloml.errors import KilomlError
from kiloml.evaluate.perturb import ChannelScale
from kiloml.monitor import calibrate as cal
from kiloml.monitor import delays
from kiloml.monitor import evaluate as ev
from kiloml.monitor.config import MonitorParams
from kiloml.monitor.harness import Stream
from kiloml.monitor.twin import Monitor
from kiloml.pipeline import Pipeline
from kiloml.progress import track

DAY_S = 86400.0
MAX_BOOTSTRAP_WINDOWS = 40_000  # a bootstrapped clean device: a device-day, at most this
# many windows (the twin steps ~10,000 windows a second in Python; bench/monitor_eval.py
# bootstraps whole device-days)
TIMELINE_POINTS = 1500           # points per timeline kept for the report's plot
WHERE = "[monitor] false_alarm_every"
CALIBRATED = "kiloml monitor (calibrated)"


@dataclass
class HeldOutDevices:
    names: list[str]
    samples: list[np.ndarray]  # float32 [S, C] at the input rate: the recordings end to end
    streams: list[Stream]      # the monitor's inputs per window (Python, bit-exact with C)


def held_out_devices(pipeline: Pipeline, raw: list[Recording], groups: list[str]
                     ) -> HeldOutDevices:
    """One device per held-out group with at least one window of samples."""
    names, samples, streams = [], [], []
    for g in groups:
        recs = [r.samples for r in raw if r.group == g and not r.augmented]
        if not recs:
            continue
        x = np.concatenate(recs).astype(np.float32)
        if len(x) < pipeline.window_samples * pipeline.decimation:
            continue
        names.append(g)
        samples.append(x)
        streams.append(ev.stream_of(pipeline, x))
    return HeldOutDevices(names, samples, streams)


def stride_s(pipeline: Pipeline) -> float:
    return pipeline.stride_samples / pipeline.sample_rate_hz


def calibrate_for_run(every: str, params: MonitorParams, pipeline: Pipeline,
                      devices: HeldOutDevices, project_file: Path, line: int | None
                      ) -> cal.Calibration:
    """The monitor with limits for ``every``, or the one-line error naming how much clean
    held-out data that needs."""
    try:
        return cal.calibrate(params, devices.streams, every, stride_s(pipeline), where=WHERE)
    except KilomlError as exc:
        exc.file, exc.line = str(project_file), line
        raise


def reference_values(params: MonitorParams, devices: HeldOutDevices) -> dict:
    """metrics.json monitor.reference: what the telemetry's trend fields read on the clean
    held-out devices (medians over their windows), for the fleet report's comparison."""
    if not devices.streams:
        return {}
    k = params.n_monitored
    tops, drift, ood, oor = [], [], [], []
    for s in devices.streams:
        steps = Monitor(params).run(s.features, s.channel_variance, s.smoothed, s.decisions,
                                    s.uncertain, s.ood)
        tops.append(cal.window_inputs(params, s)[:, k + 2])  # z[k], oor, ood, top
        drift.append(np.abs(steps.signals[:, :k]).max(axis=1))
        oor.append(steps.signals[:, 2 * k])
        ood.append(steps.signals[:, 2 * k + 1])
    return {name: float(np.median(np.concatenate(v))) for name, v in
            (("top_score_p50", tops), ("drift_z", drift), ("ood_score", ood),
             ("out_of_range_rate", oor))}


def _timeline(steps, stride: float, first_window_s: float) -> dict:
    """The running OOD score, the largest |EWMA z| and the flags, thinned for a plot."""
    n = len(steps.flags)
    keep = np.unique(np.linspace(0, n - 1, min(n, TIMELINE_POINTS)).astype(int)) if n else \
        np.zeros(0, int)
    k = (steps.signals.shape[1] - 6 - 8) // 2
    z = np.abs(steps.signals[:, :k]).max(axis=1) if k else np.zeros(n)
    # a thinned point is flagged when any window since the previous kept point was
    flagged = np.maximum.reduceat(steps.flags != 0, keep) if n else np.zeros(0, bool)
    return {"time_s": np.round(first_window_s + keep * stride, 2).tolist(),
            "ood": np.round(steps.signals[keep, 2 * k + 1].astype(float), 4).tolist(),
            "drift_z": np.round(z[keep].astype(float), 4).tolist(),
            "flagged": flagged.astype(int).tolist()}


def _detectors(calibrated: MonitorParams | None, defaults: MonitorParams, period: int,
               ood) -> dict:
    out = {}
    if calibrated is not None:
        out[CALIBRATED] = ev.monitor_detector(calibrated)
    out["kiloml monitor (training defaults)"] = ev.monitor_detector(defaults)
    out["do-nothing"] = ev.never
    out[f"periodic (every {period} windows)"] = ev.periodic_detector(period)
    try:
        out["ADWIN (river defaults)"] = ev.river_detector("adwin", ood)
        out["KSWIN (river defaults)"] = ev.river_detector("kswin", ood, seed=0)
    except KilomlError:  # river is the bench extra's: said in the evaluation
        pass
    return out


def evaluate_for_run(pipeline: Pipeline, calibration: cal.Calibration | None,
                     defaults: MonitorParams, devices: HeldOutDevices, scale: ChannelScale,
                     every: str | None, seed: int = 0) -> dict:
    """metrics.json ``monitor.evaluation``."""
    stride = stride_s(pipeline)
    rate = pipeline.input_rate_hz
    calibrated = calibration.params if calibration is not None else None
    budget = calibration.budget_windows if calibration is not None else \
        cal.budget_windows(DAY_S, stride)
    block = calibration.report["block_windows"] if calibration is not None else \
        max(1, int(np.ceil(0.5 / float(defaults.alpha))))
    k = defaults.n_monitored

    def ood(s: Stream) -> np.ndarray:  # river's input: the monitor's own per-window OOD
        return cal.window_inputs(defaults, s)[:, k + 1]

    detectors = _detectors(calibrated, defaults, budget, ood)
    monitors = [n for n in detectors if n.startswith("kiloml monitor")]
    rng = np.random.default_rng(seed)
    day = min(MAX_BOOTSTRAP_WINDOWS, cal.budget_windows(DAY_S, stride))
    out: dict = {"devices": devices.names, "stride_s": stride, "ramp_s": ev.RAMP_S,
                 "budget_windows": budget, "false_alarm_every": every,
                 "detectors": list(detectors), "river": "ADWIN (river defaults)" in detectors,
                 "clean": [], "leave_one_device_out": [], "drift": [], "timelines": []}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, s in zip(devices.names, devices.streams, strict=True):
            n = len(s.features)
            boot = ev.resample_stream(s, day, block, rng)
            row = {"device": name, "windows": n, "hours": n * stride / 3600.0,
                   "bootstrap_windows": day, "detectors": {}}
            for det_name, det in detectors.items():
                real = len(ev.alarm_events(det(s)))
                d = {"alarms": real, "per_device_day": ev.per_device_day(real, n, stride)}
                if det_name in monitors:
                    b = len(ev.alarm_events(det(boot)))
                    d.update(bootstrap_alarms=b,
                             bootstrap_per_device_day=ev.per_device_day(b, day, stride))
                row["detectors"][det_name] = d
            out["clean"].append(row)
            shown = calibrated if calibrated is not None else defaults
            steps = Monitor(shown).run(s.features, s.channel_variance, s.smoothed,
                                       s.decisions, s.uncertain, s.ood)
            out["timelines"].append({"device": name, "what": "clean",
                                     **_timeline(steps, stride, float(s.uptime_s[0]) if n
                                                 else 0.0)})
        if calibration is not None and every is not None and len(devices.names) >= 2:
            out["leave_one_device_out"] = _leave_one_out(defaults, devices, every, stride,
                                                         block, day, rng)
        # every drift from a third of each device's stream for every detector; the
        # calibrated monitor also from dense onsets (kiloml.monitor.delays): its worst
        # delay is the calibrated delay
        jobs = [(i, pert, sev, severities) for i in range(len(devices.names))
                for pert, severities in ev.SEVERITIES.items() for sev in severities]
        bases = {}
        for i, pert, sev, severities in track(jobs, "monitor: drifts"):
            name, x = devices.names[i], devices.samples[i]
            onset = len(x) // 3
            y = ev.gradual(x, pert, sev, scale, rate, onset, int(ev.RAMP_S * rate),
                           seed=seed, index=i)
            s = ev.stream_of(pipeline, y)
            ends = (np.arange(len(s.features)) * pipeline.stride_samples
                    + pipeline.window_samples) * pipeline.decimation
            onset_w = int(np.searchsorted(ends, onset + 1))
            row = {"device": name, "perturbation": pert, "severity": sev,
                   "onset_window": onset_w, "onset_s": onset / rate,
                   "windows": len(s.features), "detectors": {}}
            for det_name, det in detectors.items():
                row["detectors"][det_name] = dataclasses.asdict(
                    ev.delay(det(s), onset_w, stride))
            out["drift"].append(row)
            if calibrated is not None:
                if i not in bases:
                    bases[i] = delays.clean_device(pipeline, calibrated, x,
                                                   devices.streams[i])
                for dense in delays.onsets(len(x), rate):
                    y = ev.gradual(x, pert, sev, scale, rate, dense, int(ev.RAMP_S * rate),
                                   seed=seed, index=i)
                    d = delays.drift_delay(pipeline, calibrated, bases[i], y, dense)
                    out["drift"].append({"device": name, "perturbation": pert,
                                         "severity": sev, "onset_s": dense / rate,
                                         "detectors": {CALIBRATED: dataclasses.asdict(d)}})
            if i == 0 and pert == "offset" and sev == severities[-1]:
                steps = Monitor(calibrated if calibrated is not None else defaults).run(
                    s.features, s.channel_variance, s.smoothed, s.decisions, s.uncertain,
                    s.ood)
                out["timelines"].append({
                    "device": name, "what": f"offset {sev:g} from {onset / rate:.0f} s",
                    "onset_s": onset / rate,
                    **_timeline(steps, stride, float(s.uptime_s[0]))})
    out["summary"] = summary(out)
    return out


def _leave_one_out(defaults: MonitorParams, devices: HeldOutDevices, every: str,
                   stride: float, block: int, day: int, rng: np.random.Generator) -> list:
    """Each device with the limits calibrated on the others: its false alarms."""
    rows = []
    for i, name in enumerate(devices.names):
        others = [s for j, s in enumerate(devices.streams) if j != i]
        try:
            c = cal.calibrate(defaults, others, every, stride, where=WHERE)
        except KilomlError as exc:
            rows.append({"device": name, "error": exc.message})
            continue
        s = devices.streams[i]
        det = ev.monitor_detector(c.params)
        real = len(ev.alarm_events(det(s)))
        b = len(ev.alarm_events(det(ev.resample_stream(s, day, block, rng))))
        rows.append({"device": name, "calibrated_on": [n for j, n in enumerate(devices.names)
                                                       if j != i],
                     "windows": len(s.features), "alarms": real,
                     "per_device_day": ev.per_device_day(real, len(s.features), stride),
                     "bootstrap_windows": day, "bootstrap_alarms": b,
                     "bootstrap_per_device_day": ev.per_device_day(b, day, stride)})
    return rows


def summary(out: dict) -> dict:
    """Per detector: clean false alarms per device-day (all devices' windows together) and,
    per perturbation and severity, the drifted streams (devices x onsets) it detected and
    the delays (median, max)."""
    stride = out["stride_s"]
    res: dict = {}
    for det in out["detectors"]:
        windows = sum(r["windows"] for r in out["clean"])
        alarms = sum(r["detectors"][det]["alarms"] for r in out["clean"])
        boot = [r["detectors"][det].get("bootstrap_per_device_day") for r in out["clean"]]
        drift: dict = {}
        for row in out["drift"]:
            d = row["detectors"].get(det)
            if d is None:  # a dense onset: the calibrated monitor's alone
                continue
            key = f"{row['perturbation']}:{row['severity']:g}"
            e = drift.setdefault(key, {"perturbation": row["perturbation"],
                                       "severity": row["severity"], "streams": 0,
                                       "detected": 0, "delays_s": [],
                                       "alarms_before_onset": 0})
            e["streams"] += 1
            e["alarms_before_onset"] += d["alarms_before_onset"]
            if d["detected"]:
                e["detected"] += 1
                e["delays_s"].append(d["seconds"])
        for e in drift.values():
            found = e.pop("delays_s")
            e["delay_s_median"] = float(np.median(found)) if found else None
            e["delay_s_max"] = float(max(found)) if found else None
            if det == CALIBRATED:
                # an onset between two evaluated ones: the drift from the next one is weaker
                # at every moment, so (a stronger drift flagged no later) it is flagged by
                # then: the worst delay plus the onsets' spacing
                e["calibrated_delay_s"] = (e["delay_s_max"] + delays.ONSET_SPACING_S
                                           if e["detected"] == e["streams"] else None)
        res[det] = {"clean_windows": windows, "clean_alarms": alarms,
                    "clean_per_device_day": ev.per_device_day(alarms, windows, stride)
                    if windows else None,
                    "bootstrap_per_device_day": None if None in boot or not boot
                    else float(np.mean(boot)), "drift": list(drift.values())}
    return res
