"""The monitor in `kiloml run`: its RAM estimate against [monitor] ram_budget_bytes, and
its fit from the training windows' features and channel variances."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kiloml.errors import KilomlError
from kiloml.monitor.config import MonitorParams
from kiloml.monitor.fit import fit_monitor, importances_of, separation
from kiloml.monitor.signals import channel_moments_many, channel_variances

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
    """``n_features`` 0: a model of the raw window (no feature stage), whose monitor
    chooses among the window's 2 x channels channel means and variances."""
    from kiloml.project import locate_in

    k = min(section.features, n_features or 2 * channels)
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
                n_features: int, project_file: Path, *, labels: np.ndarray | None = None,
                channels: list[str] | None = None) -> MonitorParams:
    """``features`` [N, F] (what kml_feature_buf holds), ``windows`` [N, T, C] (the
    preprocessed windows, what the ring holds), ``train`` the training rows, ``labels``
    [N] their classes (a raw-window model's inputs are chosen by class separation).

    A network's OOD input is the energy score of its logits (kiloml.monitor.energy), and
    its watched inputs are those that separate the training classes best (ANOVA F: it has
    no feature importances); one that reads the raw window is watched through the window's
    per-channel means and variances (kml_monitor_channel_moments), since its "features"
    are raw samples."""
    from kiloml.monitor.inputs import is_network, reads_window, scores_and_energy
    from kiloml.nn.logits import LogitsError

    where = {"file": str(project_file), "where": "[monitor]"}
    if features.ndim != 2 or features.shape[1] != n_features:
        raise AssertionError(f"features [N, {n_features}] expected, got {features.shape}")
    smoothed = None
    if oof_scores is not None:
        rows = train[~np.isnan(oof_scores[train, 0])]
        if len(rows) >= 2:
            smoothed = np.asarray(oof_scores[rows], np.float32)
    w = np.ascontiguousarray(windows[train], np.float32)
    energy = None
    if is_network(model):
        try:
            energy = scores_and_energy(model, features[train], n_classes)[1]
        except LogitsError as exc:
            raise KilomlError(f"the monitor's energy score cannot read this network's "
                              f"logits: {exc}", **where) from None
    n_ch = w.shape[2]
    names_ch = channels or [str(c) for c in range(n_ch)]
    if reads_window(model):
        watched = channel_moments_many(w)
        cv = watched[:, n_ch:]
        importances = None if labels is None else separation(watched, labels[train])
        inputs = "channels"
        names = [f"mean({c})" for c in names_ch] + [f"variance({c})" for c in names_ch]
    else:
        watched = features[train]
        cv = channel_variances(w)
        importances = importances_of(getattr(model, "estimator", model))
        if importances is None and labels is not None:  # a network: by class separation
            importances = separation(watched, labels[train])
        inputs = "features"
        names = None  # the report names them from the pipeline's feature names
    try:
        return fit_monitor(watched, cv, section.monitor_config(), importances,
                           n_classes=n_classes, smoothed_train=smoothed, inputs=inputs,
                           energy_train=energy, names=names)
    except ValueError as exc:
        raise KilomlError(f"the monitor cannot be fitted: {exc}", **where) from None
