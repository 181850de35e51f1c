"""What a capture measured: the sample rate, its jitter, dropped and corrupt frames; the
rate check against what was declared; the lines `kiloml capture` prints."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from kiloml.capture.session import RATE_TOLERANCE, Capture
from kiloml.errors import KilomlError

# Fewer samples, or a shorter span, measure an arrival rate too roughly to judge it (a
# link delivers bytes in bursts: USB every 1 ms, a pty in chunks).
MIN_RATE_SAMPLES = 10
MIN_RATE_SPAN_S = 0.5


def _intervals(deltas_s: np.ndarray) -> dict[str, float] | None:
    if not len(deltas_s):
        return None
    ms = deltas_s * 1000.0
    return {"mean_ms": float(ms.mean()), "std_ms": float(ms.std()),
            "min_ms": float(ms.min()), "max_ms": float(ms.max())}


def _arrival_rate(arrival: np.ndarray) -> float:
    """Samples per second from host arrival times: the inverse slope of the least-squares
    line through (index, arrival), which one late first or last sample (a busy host, a
    burst) barely moves, unlike (n - 1) / (last - first)."""
    index = np.arange(len(arrival), dtype=np.float64)
    index -= index.mean()
    slope = float(np.dot(index, arrival - arrival.mean()) / np.dot(index, index))
    return 1.0 / slope if slope > 0 else (len(arrival) - 1) / float(arrival[-1] - arrival[0])


def figures(cap: Capture) -> dict[str, Any]:
    """The capture's figures, as the JSON next to the recording holds them."""
    s = cap.settings
    arrival = np.asarray(cap.arrival_s, dtype=np.float64)
    arrival_span = float(arrival[-1] - arrival[0]) if len(arrival) else 0.0
    arrival_rate = _arrival_rate(arrival) if arrival_span > 0 else None
    out: dict[str, Any] = {
        "protocol": s.protocol,
        "port": s.port,
        "channels": list(cap.channels),
        "units": cap.units,
        "samples": cap.n_samples,
        "rate_hz_option": s.rate_hz,
        "arrival": {"rate_hz": arrival_rate, "span_s": arrival_span,
                    "interval": _intervals(np.diff(arrival))},
        "bytes_received": cap.bytes_received,
        "partial_bytes_dropped": cap.partial_bytes,
        "end": cap.end,
        "end_detail": cap.end_detail,
        "elapsed_s": cap.elapsed_s,
    }
    if s.protocol == "kml":
        seq = np.asarray(cap.seq, dtype=np.int64)
        t = np.asarray(cap.t_us, dtype=np.int64)
        span_us = int(t[-1] - t[0]) if len(t) else 0
        # the device's own clock: consecutive frames only (a dropped frame is no interval)
        step = np.diff(t)[np.diff(seq) == 1] / 1e6
        out["device"] = {
            "declared_rate_hz": cap.device_rate_hz,
            "rate_hz": (int(seq[-1] - seq[0]) / (span_us / 1e6)) if span_us > 0 else None,
            "span_s": span_us / 1e6,
            "interval": _intervals(step),
        }
        out["frames"] = {
            "samples_received": cap.n_samples,
            "dropped": cap.dropped_frames,
            "corrupt": cap.corrupt_frames,
            "out_of_order": cap.out_of_order_frames,
            "before_hello": cap.before_hello_frames,
            "repeated_hellos": cap.repeated_hellos,
            "first_seq": int(seq[0]) if len(seq) else None,
            "last_seq": int(seq[-1]) if len(seq) else None,
            "samples_sent": cap.samples_sent,
        }
        out["rate_hz"] = out["device"]["rate_hz"]
        out["rate_source"] = "device timestamps"
    else:
        out["lines"] = {"samples": cap.n_samples, "skipped": cap.skipped_lines}
        out["rate_hz"] = arrival_rate
        out["rate_source"] = "arrival"
    return out


def recording_rate(cap: Capture, figs: dict[str, Any]) -> float:
    """The rate the text recording's time column uses: --rate-hz, else the measured one."""
    if cap.settings.rate_hz is not None:
        return cap.settings.rate_hz
    rate = figs["arrival"]["rate_hz"]
    if rate is None or not math.isfinite(rate):
        raise KilomlError(f"{cap.settings.port}: {cap.n_samples} sample(s) arrived at once: "
                          f"too few to measure the sample rate; capture longer or give "
                          f"--rate-hz")
    return float(rate)


def rate_problem(cap: Capture, figs: dict[str, Any]) -> str | None:
    """Why the recording's rate cannot be trusted (the command refuses it), or None.

    text: the rate measured from arrival against --rate-hz. kml: the device's timestamps
    against the rate its hello declares (--rate-hz was checked against that already);
    the arrival rate is only reported, since a link may buffer or a device replay faster
    than real time."""
    if cap.settings.protocol == "kml":
        measured, declared = figs["device"]["rate_hz"], cap.device_rate_hz
        if measured is None or declared is None:
            return None
        off = abs(measured - declared) / declared
        if off > RATE_TOLERANCE:
            return (f"the device's timestamps give {measured:.4g} Hz, {off:.0%} off the "
                    f"{declared:g} Hz its hello frame declares (tolerance "
                    f"{RATE_TOLERANCE:.0%}): its clock or its declared rate is wrong")
        return None
    want = cap.settings.rate_hz
    arrival = figs["arrival"]
    if want is None or arrival["rate_hz"] is None or cap.n_samples < MIN_RATE_SAMPLES or \
            arrival["span_s"] < MIN_RATE_SPAN_S:
        return None
    off = abs(arrival["rate_hz"] - want) / want
    if off > RATE_TOLERANCE:
        return (f"samples arrived at {arrival['rate_hz']:.4g} Hz, {off:.0%} off --rate-hz "
                f"{want:g} (tolerance {RATE_TOLERANCE:.0%}): check the device's rate, or "
                f"capture with --rate-hz {arrival['rate_hz']:.3g}")
    return None


def rate_checked(cap: Capture, figs: dict[str, Any]) -> str:
    """How the rate was checked, for the report (the check passed or was not possible)."""
    if cap.settings.protocol == "kml":
        return (f"device timestamps within {RATE_TOLERANCE:.0%} of the hello's "
                f"{cap.device_rate_hz:g} Hz")
    if cap.settings.rate_hz is None:
        return "not checked (no --rate-hz)"
    if cap.n_samples < MIN_RATE_SAMPLES or figs["arrival"]["span_s"] < MIN_RATE_SPAN_S:
        return (f"not checked: fewer than {MIN_RATE_SAMPLES} samples or "
                f"{MIN_RATE_SPAN_S:g} s of arrivals")
    return f"arrival within {RATE_TOLERANCE:.0%} of --rate-hz {cap.settings.rate_hz:g}"


def _ms(interval: dict[str, float] | None) -> str:
    if interval is None:
        return "n/a"
    return (f"{interval['mean_ms']:.3f} ms (std {interval['std_ms']:.3f}, "
            f"max {interval['max_ms']:.3f})")


def summary_lines(figs: dict[str, Any]) -> list[str]:
    arrival = figs["arrival"]
    lines = []
    a_rate = f"{arrival['rate_hz']:.2f} Hz" if arrival["rate_hz"] else "n/a"
    if figs["protocol"] == "kml":
        d, f = figs["device"], figs["frames"]
        d_rate = f"{d['rate_hz']:.3f} Hz" if d["rate_hz"] else "n/a"
        lines.append(f"rate           {d_rate} from device timestamps (declared "
                     f"{d['declared_rate_hz']:g} Hz); arrival {a_rate}")
        lines.append(f"jitter         device interval {_ms(d['interval'])}; arrival "
                     f"interval {_ms(arrival['interval'])}")
        lines.append(f"frames         {f['samples_received']} samples received, "
                     f"{f['dropped']} dropped, {f['corrupt']} corrupt, "
                     f"{f['out_of_order']} out of order, {f['before_hello']} before the hello")
    else:
        lines.append(f"rate           {a_rate} from arrival")
        lines.append(f"jitter         arrival interval {_ms(arrival['interval'])}")
        lines.append(f"lines          {figs['lines']['samples']} samples, "
                     f"{figs['lines']['skipped']} skipped (the first, partial line; banners)")
    return lines
