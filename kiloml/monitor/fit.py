"""Fit the monitor from the training windows: which features to watch, their training
statistics and quantiles, the channels' flatness floors, and default limits."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from kiloml.monitor.config import MonitorConfig, MonitorParams, MonitorThresholds
from kiloml.monitor.signals import F32_MIN, confidence

F32 = np.float32


def importances_of(model: Any) -> np.ndarray | None:
    """Feature importance from the model: a forest's feature_importances_, |coef| of a
    linear model (summed over classes); None for anything else (networks: fit_for_run
    takes the class separation, kiloml.monitor.fit.separation).
    """
    if hasattr(model, "feature_importances_"):
        return np.asarray(model.feature_importances_, np.float64)
    if hasattr(model, "coef_"):
        coef = np.abs(np.asarray(model.coef_, np.float64))
        return coef.sum(axis=0) if coef.ndim == 2 else coef
    return None


def choose_features(n_features: int, k: int, importances: np.ndarray | None) -> np.ndarray:
    """The k most important (ties: the lower index first), or the first k."""
    k = min(k, n_features)
    if importances is None:
        return np.arange(k, dtype=np.int32)
    imp = np.nan_to_num(np.asarray(importances, np.float64), nan=0.0)
    return np.argsort(-imp, kind="stable")[:k].astype(np.int32)


def window_ood(x: np.ndarray, mean: np.ndarray, inv_sd: np.ndarray, clip: float
               ) -> np.ndarray:
    """The per-window OOD score (mean squared clipped z), vectorized for fitting."""
    with np.errstate(all="ignore"):
        z = (x.astype(np.float64) - mean) * inv_sd
    z = np.where(np.isnan(z), clip, np.clip(z, -clip, clip))
    return (z * z).mean(axis=1)


def separation(x: np.ndarray, labels: np.ndarray) -> np.ndarray | None:
    """The one-way ANOVA F statistic of each column across the classes (between-class
    over within-class variance): how well a candidate input separates the classes; 0 for
    a constant or non-finite column. None with fewer than 2 classes."""
    from sklearn.feature_selection import f_classif

    y = np.asarray(labels)
    x = np.asarray(x, np.float64)
    rows = np.isfinite(x).all(axis=1)
    if len(np.unique(y[rows])) < 2:
        return None
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant columns: F is NaN, said by the 0
        f, _ = f_classif(x[rows], y[rows])
    return np.nan_to_num(f, nan=0.0, posinf=np.finfo(np.float64).max)


def fit_monitor(features_train: np.ndarray, channel_variance_train: np.ndarray,
                config: MonitorConfig, importances: np.ndarray | None = None, *,
                n_classes: int, smoothed_train: np.ndarray | None = None,
                inputs: str = "features", energy_train: np.ndarray | None = None,
                names: list[str] | None = None) -> MonitorParams:
    """``features_train`` [N, F] (the vector the monitored inputs are chosen from: the
    features, or for ``inputs = "channels"`` the windows' channel_moments),
    ``channel_variance_train`` [N, channels] (the raw training windows' per-channel
    variance), ``smoothed_train`` [N, classes] (optional: the decision layer's smoothed
    scores, for the confidence limits), ``energy_train`` [N] (a network's energy score
    per training window: the OOD input becomes the energy), ``names`` of the F columns."""
    x_all = np.asarray(features_train, np.float64)
    if x_all.ndim != 2 or len(x_all) < 2:
        raise ValueError("fit_monitor needs at least 2 training windows of features")
    index = choose_features(x_all.shape[1], config.n_monitored, importances)
    x = x_all[:, index]
    finite = np.isfinite(x).any(axis=0)
    if not finite.all():
        raise ValueError(f"monitored feature {int(index[~finite][0])} has no finite training "
                         "value")
    x = np.where(np.isfinite(x), x, np.nan)  # infinities say nothing about the spread
    mean = np.nanmean(x, axis=0)
    sd = np.nanstd(x, axis=0)
    sd = np.maximum(sd, 1e-6 * np.maximum(np.abs(mean), 1.0))  # constant in training
    inv_sd = (1.0 / sd).astype(F32)
    q_lo, q_hi = config.range_quantiles
    lo, hi = np.nanquantile(x, [q_lo, q_hi], axis=0).astype(F32)
    cv = np.asarray(channel_variance_train, np.float64)
    floor = np.nanquantile(cv, config.stuck_quantile, axis=0) * config.stuck_floor_fraction
    # exactly flat windows (variance 0) are what a frozen sensor gives: always below
    floor = np.where(floor > 0, floor, float(F32_MIN)).astype(F32)
    offset = 0.0
    if energy_train is None:
        ood = window_ood(x, mean, inv_sd.astype(np.float64), config.z_clip)
    else:
        e = np.asarray(energy_train, F32)
        if len(e) != len(x_all) or not np.isfinite(e).all():
            raise ValueError("the energy score needs one finite value per training window")
        offset = float(F32(np.quantile(e.astype(np.float64), config.range_quantiles[0])))
        ood = (e - F32(offset)).astype(np.float64)  # the twin's float32 subtraction
    sd_ood = float(np.std(ood)) or 1.0
    if smoothed_train is not None:
        conf = np.array([confidence(np.asarray(s, F32), F32(1.0 / np.log2(n_classes)))
                         for s in smoothed_train], np.float64)
        top, margin, ent = conf[:, 0], conf[:, 1], conf[:, 2]
        cq = config.confidence_quantile
        init = (float(top.mean()), float(margin.mean()), float(ent.mean()))
        limits = (float(np.quantile(top, cq)), float(np.quantile(margin, cq)),
                  float(np.quantile(ent, 1.0 - cq)))
        sd_top = float(np.std(top)) or config.ph_top_sd
    else:
        init = (1.0, 1.0, 0.0)
        limits = (config.top_limit, config.margin_limit, config.entropy_limit)
        sd_top = config.ph_top_sd
    thresholds = MonitorThresholds(
        z_limit=config.z_limit, var_lo=config.var_lo, var_hi=config.var_hi,
        oor_limit=config.oor_limit, ood_limit=float(np.quantile(ood, config.ood_quantile)),
        top_limit=limits[0], margin_limit=limits[1], entropy_limit=limits[2],
        uncertain_limit=config.uncertain_limit,
        ph_delta=(config.ph_delta_sd * sd_ood, config.ph_delta_sd * sd_top),
        ph_lambda=(config.ph_lambda_sd * sd_ood, config.ph_lambda_sd * sd_top))
    return MonitorParams(
        index=index, mean=mean.astype(F32), inv_sd=inv_sd, lo=lo, hi=hi, floor=floor,
        n_classes=n_classes, stuck_windows=config.stuck_windows, alpha=config.alpha,
        z_clip=config.z_clip, init_top=init[0], init_margin=init[1], init_entropy=init[2],
        thresholds=thresholds, ph_cap=config.ph_cap, ph_min_windows=config.ph_min_windows,
        fit={"windows": len(x_all), "importance": importance_source(inputs, importances,
                                                                   energy_train is not None),
             "ood_train_mean": float(ood.mean())},
        inputs=inputs, ood="energy" if energy_train is not None else "mahalanobis",
        energy_offset=offset, init_ood=1.0 if energy_train is None else float(ood.mean()),
        names=[] if names is None or len(names) != x_all.shape[1]
        else [names[int(i)] for i in index])


def importance_source(inputs: str, importances: np.ndarray | None, energy: bool) -> str:
    if importances is None:
        return "first features" if inputs == "features" else "first channel statistics"
    # a network has no importances: its inputs are chosen by separation
    return "ANOVA F across the classes" if inputs == "channels" or energy else "model"
