"""The monitor in `kiloml run`: its RAM estimate against [monitor] ram_budget_bytes, and
its fit from the training windows' features and channel variances."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kiloml.errors import KilomlError
from kiloml.monitor.config import MonitorParams
from kiloml.monitor.fit import fit_monitor, importances_of
from kiloml.monitor.signals import channel_variances

# sizeof(kml_monitor_state) on a 32-bit MCU without its arrays: 3 pointers, run[6],
# 4 x ph[2], windows, flags, the record (counts[6], uncertain, hist[16], flags), padding
STATE_BYTES = 124
PER_FEATURE_BYTES = 8  # z_mean and z_var
PER_CHANNEL_BYTES = 2  # flat_run


def ram_estimate(k: int, channels: int, classes: int) -> dict[str, int]:
    """The monitor's static RAM by what uses it (the classes' scores live on the stack of
    the decision layer's call, not in the monitor's state)."""
    del classes
    flat = (PER_CHANNEL_BYTES * channels + 3) // 4 * 4
    parts = {"state": STATE_BYTES, "features": PER_FEATURE_BYTES * k, "channels": flat}
    parts["total"] = sum(parts.values())
    return parts


def check_ram(section, channels: int, classes: int, n_features: int,
              project_file: Path) -> None:
    from kiloml.project import locate_in

    k = min(section.features, n_features)
    ram = ram_estimate(k, channels, classes)
    if ram["total"] > section.ram_budget_bytes:
        raise KilomlError(
            f"the monitor needs {ram['total']} B of RAM, over its budget of "
            f"{section.ram_budget_bytes} B (ram_budget_bytes): state {ram['state']} B, "
            f"{k} monitored features x {PER_FEATURE_BYTES} B = {ram['features']} B, "
            f"{channels} channels = {ram['channels']} B; lower [monitor] features or raise "
            "ram_budget_bytes", file=str(project_file), where="[monitor]",
            line=locate_in(project_file, ("monitor",), "features"))


def fit_for_run(section, model, features: np.ndarray, windows: np.ndarray,
                train: np.ndarray, oof_scores: np.ndarray | None, n_classes: int,
                n_features: int, project_file: Path) -> MonitorParams:
    """``features`` [N, F] (what kml_feature_buf holds), ``windows`` [N, T, C] (the
    preprocessed windows, what the ring holds), ``train`` the training rows."""
    if features.ndim != 2 or features.shape[1] != n_features:
        raise KilomlError("the monitor watches the feature vector, and this model reads the "
                          "window itself; remove [monitor]", file=str(project_file),
                          where="[monitor]")
    smoothed = None
    if oof_scores is not None:
        rows = train[~np.isnan(oof_scores[train, 0])]
        if len(rows) >= 2:
            smoothed = np.asarray(oof_scores[rows], np.float32)
    cv = channel_variances(windows[train])
    try:
        return fit_monitor(features[train], cv, section.monitor_config(),
                           importances_of(getattr(model, "estimator", model)), n_classes=n_classes,
                           smoothed_train=smoothed)
    except ValueError as exc:
        raise KilomlError(f"the monitor cannot be fitted: {exc}", file=str(project_file),
                          where="[monitor]") from None
