"""The monitor's fitting knobs (MonitorConfig), its limits (MonitorThresholds) and the
fitted parameters the C twin takes (MonitorParams, kml_monitor_params)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

F32 = np.float32
N_PAGE_HINKLEY = 2  # detector 0: the per-window OOD score; 1: the per-window top score
# the running (EWMA) signals, in kml_monitor_state.run[] order (KML_MON_OOR ...)
RUN_SIGNALS = ("oor", "ood", "top", "margin", "entropy", "uncertain")
RUN_FLAGS = ("OUT_OF_RANGE", "OOD", "LOW_CONFIDENCE", "LOW_CONFIDENCE", "LOW_CONFIDENCE",
             "UNCERTAIN_RATE")
# the running signals whose flag is raised below their limit (kml_monitor.c: TOP, MARGIN);
# the others raise theirs above it
RUN_BELOW = ("top", "margin")
# the running signals kml_monitor_params.run_init starts (ood ... entropy); oor and uncertain
# start at 0
RUN_INIT = slice(1, 5)
# what the monitored inputs are: positions in the feature vector (kml_feature_buf), or in
# the raw window's per-channel statistics [means, variances] (kml_monitor_channel_moments:
# a model that reads the window has no feature vector worth watching)
INPUTS = ("features", "channels")
# the per-window out-of-distribution input: the mean squared clipped z of the monitored
# inputs (the diagonal Mahalanobis distance squared over k), or a network's energy score
# less energy_offset (kiloml.monitor.energy)
OOD_SCORES = ("mahalanobis", "energy")


@dataclass(frozen=True)
class MonitorConfig:
    n_monitored: int = 4          # k most important features
    alpha: float = 1.0 / 32.0     # EWMA weight of the newest window
    z_clip: float = 16.0          # |z| of one feature counts at most this much
    range_quantiles: tuple[float, float] = (0.005, 0.995)
    stuck_windows: int = 8        # consecutive flat windows that make a channel stuck
    stuck_quantile: float = 0.01  # the floor: this fraction of the training p1 variance
    stuck_floor_fraction: float = 0.01
    # default limits (from the training distribution where it says so); part 2's
    # false-alarm-budget calibration replaces MonitorParams.thresholds
    z_limit: float = 3.0
    var_lo: float = 0.01
    var_hi: float = 9.0
    oor_limit: float = 0.25
    ood_quantile: float = 0.995   # ood_limit: this quantile of the training windows' score
    confidence_quantile: float = 0.01  # top/margin limits (entropy: 1 - it), with scores
    top_limit: float = 0.4        # without training scores
    margin_limit: float = 0.05
    entropy_limit: float = 0.95
    uncertain_limit: float = 0.5
    ph_delta_sd: float = 0.5      # Page-Hinkley delta and lambda in training sd of the signal
    ph_lambda_sd: float = 50.0
    ph_top_sd: float = 0.1        # the top score's sd without training scores
    ph_cap: int = 1024            # the detector's mean becomes an EWMA of 1/ph_cap there
    ph_min_windows: int = 32

    def __post_init__(self) -> None:
        if self.n_monitored < 1:
            raise ValueError("n_monitored must be at least 1")
        if not 0.0 < self.alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], not {self.alpha}")
        if self.stuck_windows < 1 or self.ph_min_windows < 1:
            raise ValueError("stuck_windows and ph_min_windows must be at least 1")
        if self.ph_cap < self.ph_min_windows:
            raise ValueError("ph_cap must be at least ph_min_windows")
        lo, hi = self.range_quantiles
        if not 0.0 <= lo < hi <= 1.0:
            raise ValueError(f"range_quantiles must be 0 <= lo < hi <= 1, not {lo, hi}")


@dataclass
class MonitorThresholds:
    """The limits behind the flags; ``source`` says how they were chosen."""

    z_limit: float
    var_lo: float
    var_hi: float
    oor_limit: float
    ood_limit: float
    top_limit: float
    margin_limit: float
    entropy_limit: float
    uncertain_limit: float
    ph_delta: tuple[float, float]
    ph_lambda: tuple[float, float]
    source: str = "training-distribution defaults (not calibrated to a false-alarm budget)"

    def as_float32(self) -> dict:
        out = {k: F32(v) for k, v in asdict(self).items()
               if k not in ("ph_delta", "ph_lambda", "source")}
        out["ph_delta"] = np.asarray(self.ph_delta, F32)
        out["ph_lambda"] = np.asarray(self.ph_lambda, F32)
        return out

    def run_limits(self) -> np.ndarray:
        """run_limit (float32 [6], RUN_SIGNALS order): a signal of RUN_BELOW raises its flag
        below its limit, the others above it (each is one-sided: one limit per signal keeps
        the C parameters and the update's compare small)."""
        return np.asarray([self.oor_limit, self.ood_limit, self.top_limit, self.margin_limit,
                           self.entropy_limit, self.uncertain_limit], F32)


@dataclass
class MonitorParams:
    """kml_monitor_params: every float is float32, as the C twin holds it."""

    index: np.ndarray      # int32 [k]: monitored positions in the feature vector
    mean: np.ndarray       # float32 [k]
    inv_sd: np.ndarray     # float32 [k]
    lo: np.ndarray         # float32 [k]
    hi: np.ndarray         # float32 [k]
    floor: np.ndarray      # float32 [channels]
    n_classes: int
    stuck_windows: int
    alpha: float
    z_clip: float
    init_top: float
    init_margin: float
    init_entropy: float
    thresholds: MonitorThresholds
    ph_cap: int
    ph_min_windows: int
    fit: dict = field(default_factory=dict)  # what the fit saw (for the report)
    inputs: str = "features"   # INPUTS: what index points into
    ood: str = "mahalanobis"   # OOD_SCORES
    # energy: the OOD input is the energy less this (the training windows' low range
    # quantile), so in-distribution values are >= 0 as the record's unsigned Q8.8 field
    # needs (a constant: the EWMA, its limit and Page-Hinkley move with it)
    energy_offset: float = 0.0
    init_ood: float = 1.0  # the running OOD's start (mean squared z: 1 in distribution)
    names: list[str] = field(default_factory=list)  # of the monitored inputs (the report)

    def __post_init__(self) -> None:
        self.index = np.asarray(self.index, np.int32)
        for name in ("mean", "inv_sd", "lo", "hi", "floor"):
            setattr(self, name, np.asarray(getattr(self, name), F32))
        if self.inputs not in INPUTS:
            raise ValueError(f"inputs must be one of {', '.join(INPUTS)}")
        if self.ood not in OOD_SCORES:
            raise ValueError(f"ood must be one of {', '.join(OOD_SCORES)}")
        if self.inputs == "channels" and (self.index >= 2 * self.n_channels).any():
            raise ValueError("a monitored channel statistic past the 2 x channels")
        if not np.isfinite(F32(self.energy_offset)):
            raise ValueError("energy_offset must be finite")
        if not 2 <= self.n_classes <= 255:  # the telemetry record's byte
            raise ValueError(f"the monitor needs 2 to 255 classes, not {self.n_classes}")
        if self.n_monitored < 1:
            raise ValueError("the monitor needs at least 1 monitored feature")
        if self.n_channels < 1:
            raise ValueError("the monitor needs at least 1 raw channel (floor)")
        for name in ("n_monitored", "n_channels", "n_classes", "stuck_windows"):
            if not 0 <= getattr(self, name) <= 0xFFFF:  # uint16_t in kml_monitor_params
                raise ValueError(f"{name} must be at most 65535, not {getattr(self, name)}")
        if self.ph_cap < self.ph_min_windows:
            raise ValueError("ph_cap must be at least ph_min_windows")

    @property
    def n_monitored(self) -> int:
        return len(self.index)

    @property
    def n_channels(self) -> int:
        return len(self.floor)

    def constants(self) -> dict:
        """The derived float32 constants, computed once here and stored in the C params."""
        k = F32(self.n_monitored)
        return {"alpha": F32(self.alpha), "one_minus_alpha": F32(F32(1.0) - F32(self.alpha)),
                "z_clip": F32(self.z_clip), "inv_k": F32(F32(1.0) / k),
                "inv_log2_classes": F32(1.0 / np.log2(self.n_classes)),
                "run_init": np.asarray([0.0, self.init_ood, self.init_top, self.init_margin,
                                        self.init_entropy, 0.0], F32),
                "run_limit": self.thresholds.run_limits(), "ph_cap": F32(self.ph_cap),
                "ph_min_windows": F32(self.ph_min_windows)}

    @property
    def energy(self) -> bool:
        return self.ood == "energy"

    def describe(self) -> dict:
        out = {"index": self.index.tolist(), "n_channels": self.n_channels,
               "n_classes": self.n_classes, "stuck_windows": self.stuck_windows,
               "alpha": self.alpha, "z_clip": self.z_clip,
               "thresholds": asdict(self.thresholds), "fit": self.fit}
        if self.inputs != "features" or self.energy:  # the tree / linear form as it was
            out.update(inputs=self.inputs, ood=self.ood,
                       energy_offset=float(F32(self.energy_offset)), init_ood=self.init_ood,
                       names=list(self.names))
        return out
