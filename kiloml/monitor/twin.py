"""The Python twin of kml_monitor.c: the same float32 operations in the same order, so
signals, flags and telemetry records equal the C's bit for bit."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kiloml.monitor import snapshot
from kiloml.monitor.config import (
    N_PAGE_HINKLEY,
    RUN_BELOW,
    RUN_FLAGS,
    RUN_SIGNALS,
    MonitorParams,
)
from kiloml.monitor.flags import FLAGS
from kiloml.monitor.page_hinkley import PageHinkley
from kiloml.monitor.signals import clamp, confidence, ewma

F32 = np.float32
U16 = 0xFFFF
U32 = 0xFFFFFFFF
OOD_CLAMP = F32(1e30)  # a given OOD input's range (kml_monitor_update_ood)


@dataclass
class MonitorSteps:
    """Per window of a stream: every state float the C keeps, and the flags."""

    signals: np.ndarray  # float32 [N, len(Monitor.signal_names(p))]
    flags: np.ndarray    # int64 [N]


class Monitor:
    """Stateful twin (reset at boot; snapshot() starts the next record)."""

    def __init__(self, params: MonitorParams) -> None:
        self.p = params
        self.c = params.constants()
        self.t = params.thresholds.as_float32()
        self.reset()

    def reset(self) -> None:
        p, c = self.p, self.c
        self.z_mean = np.zeros(p.n_monitored, F32)
        self.z_var = np.ones(p.n_monitored, F32)
        self.flat_run = np.zeros(p.n_channels, np.int64)
        self.running = c["run_init"].copy()  # RUN_SIGNALS order
        self.ph = [PageHinkley() for _ in range(N_PAGE_HINKLEY)]
        self.windows = 0
        self.flags = 0
        self.record_flags = 0
        self._new_record()

    def _new_record(self) -> None:
        self.counts = np.zeros(6, np.int64)
        self.uncertain_count = 0
        self.hist = np.zeros(snapshot.HIST_BINS, np.int64)
        self.record_flags = 0

    @staticmethod
    def signal_names(p: MonitorParams) -> list[str]:
        return ([f"z_mean[{i}]" for i in range(p.n_monitored)]
                + [f"z_var[{i}]" for i in range(p.n_monitored)]
                + list(RUN_SIGNALS)
                + [f"ph_{what}[{j}]" for what in ("n", "mean", "up", "down")
                   for j in range(N_PAGE_HINKLEY)])

    def signals(self) -> np.ndarray:
        ph = [[getattr(d, what) for d in self.ph] for what in ("n", "mean", "up", "down")]
        return np.array([*self.z_mean, *self.z_var, *self.running,
                         *(v for row in ph for v in row)], F32)

    def update(self, features: np.ndarray, channel_variance: np.ndarray,
               smoothed: np.ndarray, decision: int, uncertain: bool,
               energy: float | None = None) -> int:
        """One window: ``features`` the vector the monitored inputs are taken from (the
        feature vector, or channel_moments for inputs = "channels"); ``energy`` the
        window's energy score (a monitor with ood = "energy" needs it:
        kml_monitor_update_ood)."""
        p, c, t = self.p, self.c, self.t
        if p.energy and energy is None:
            raise ValueError("this monitor's OOD input is the network's energy score")
        a, om, clip = c["alpha"], c["one_minus_alpha"], c["z_clip"]
        features = np.asarray(features, F32)
        flags = 0
        d2 = F32(0.0)
        outside = 0
        with np.errstate(all="ignore"):  # extremes overflow to inf, as in C
            for i in range(p.n_monitored):
                x = features[p.index[i]]
                z = F32(F32(x - p.mean[i]) * p.inv_sd[i])
                if not (x >= p.lo[i] and x <= p.hi[i]):
                    outside += 1
                z = clip if z != z else clamp(z, -clip, clip)
                d2 = F32(d2 + F32(z * z))
                d = F32(z - self.z_mean[i])
                ad = F32(a * d)
                self.z_mean[i] = F32(self.z_mean[i] + ad)
                self.z_var[i] = F32(om * F32(self.z_var[i] + F32(d * ad)))
                if (self.z_mean[i] > t["z_limit"] or self.z_mean[i] < -t["z_limit"]
                        or self.z_var[i] > t["var_hi"] or self.z_var[i] < t["var_lo"]):
                    flags |= FLAGS["INPUT_DRIFT"]
            cv = np.asarray(channel_variance, F32)
            for ch in range(p.n_channels):
                if not cv[ch] >= p.floor[ch]:
                    self.flat_run[ch] = min(self.flat_run[ch] + 1, U16)
                else:
                    self.flat_run[ch] = 0
                if self.flat_run[ch] >= p.stuck_windows:
                    flags |= FLAGS["STUCK_CHANNEL"]
            top, margin, ent = confidence(np.asarray(smoothed, F32), c["inv_log2_classes"])
            if p.energy:  # kml_monitor_update_ood: clamped to +-1e30, NaN to +1e30
                ood = F32(F32(energy) - F32(p.energy_offset))
                ood = OOD_CLAMP if ood != ood else clamp(ood, -OOD_CLAMP, OOD_CLAMP)
            else:
                ood = F32(d2 * c["inv_k"])
            x = [F32(F32(outside) * c["inv_k"]), ood, top, margin, ent,
                 F32(1.0) if uncertain else F32(0.0)]
            for j in range(len(RUN_SIGNALS)):
                r = ewma(a, self.running[j], x[j])
                self.running[j] = r
                limit = c["run_limit"][j]
                if (r < limit) if RUN_SIGNALS[j] in RUN_BELOW else (r > limit):
                    flags |= FLAGS[RUN_FLAGS[j]]
            for j in range(N_PAGE_HINKLEY):  # detector 0: the OOD score, 1: the top score
                if self.ph[j].update(x[1 + j], t["ph_delta"][j], t["ph_lambda"][j],
                                     c["ph_cap"], c["ph_min_windows"]):
                    flags |= FLAGS["CHANGE"]
        self.windows = min(self.windows + 1, U32)
        if decision >= 0:
            slot = min(int(decision), 5)
            self.counts[slot] = min(self.counts[slot] + 1, U16)
        if uncertain:
            self.uncertain_count = min(self.uncertain_count + 1, U16)
        b = min(int(F32(top * F32(snapshot.HIST_BINS))), snapshot.HIST_BINS - 1)
        self.hist[b] = min(self.hist[b] + 1, U16)
        self.flags = flags
        self.record_flags |= flags
        return flags

    def snapshot(self, model_id: bytes, uptime_s: int) -> bytes:
        record = snapshot.encode(
            n_classes=self.p.n_classes, model_id=model_id, uptime_s=uptime_s,
            windows=self.windows, counts=self.counts, uncertain_count=self.uncertain_count,
            hist=self.hist, oor=self.running[0], z_mean=self.z_mean, ood=self.running[1],
            entropy=self.running[4], flags=self.record_flags)
        self._new_record()
        return record

    def run(self, features: np.ndarray, channel_variance: np.ndarray, smoothed: np.ndarray,
            decisions: np.ndarray, uncertain: np.ndarray, energy: np.ndarray | None = None
            ) -> MonitorSteps:
        """Reset, then step through a stream; the signals and flags after each window."""
        self.reset()
        n = len(features)
        out = MonitorSteps(np.zeros((n, len(self.signal_names(self.p))), F32),
                           np.zeros(n, np.int64))
        for i in range(n):
            out.flags[i] = self.update(features[i], channel_variance[i], smoothed[i],
                                       int(decisions[i]), bool(uncertain[i]),
                                       None if energy is None else energy[i])
            out.signals[i] = self.signals()
        return out
