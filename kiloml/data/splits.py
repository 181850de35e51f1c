"""Evaluation splits that cannot leak: by group (subject), never by window.

A held-out test set of whole groups, plus grouped k-fold cross-validation on
the rest. Every split passes through ``assert_no_leak``, which raises if a group
or a recording is on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import GroupKFold

from kiloml.data.order import natural_key, natural_sorted
from kiloml.data.windows import WindowSet
from kiloml.errors import DataLeakError, KilomlError
from kiloml.project import EvaluationConfig


@dataclass
class Split:
    train: np.ndarray  # window indices
    test: np.ndarray
    test_groups: list[str]
    folds: list[tuple[np.ndarray, np.ndarray]]  # (train, validation) indices into the windows
    # why there are fewer folds than cv_folds asks for (none: cross-validation impossible)
    cv_note: str | None = None


def assert_no_leak(windows: WindowSet, a: np.ndarray, b: np.ndarray, what: str) -> None:
    """Raise DataLeakError if any group or recording has windows in both ``a`` and ``b``."""
    shared_groups = set(windows.group[a]) & set(windows.group[b])
    if shared_groups:
        raise DataLeakError(f"{what}: group(s) {sorted(shared_groups)[:5]} on both sides")
    shared_recs = set(windows.recording[a].tolist()) & set(windows.recording[b].tolist())
    if shared_recs:
        raise DataLeakError(f"{what}: recording(s) {sorted(shared_recs)[:5]} on both sides")
    if len(np.intersect1d(a, b)):
        raise DataLeakError(f"{what}: the same window on both sides")


def choose_test_groups(windows: WindowSet, cfg: EvaluationConfig) -> list[str]:
    groups = natural_sorted(windows.group.tolist())
    if cfg.test_groups is not None:
        missing = [g for g in cfg.test_groups if g not in groups]
        if missing:
            shown = ", ".join(groups[:20]) + (" ..." if len(groups) > 20 else "")
            raise KilomlError(f"test group '{missing[0]}' is not in the data (groups: {shown})",
                              where="[evaluation] test_groups")
        if len(set(cfg.test_groups)) == len(groups):
            raise KilomlError("every group is a test group: none is left for training",
                              where="[evaluation] test_groups")
        return list(cfg.test_groups)
    if len(groups) < 2:
        raise KilomlError("the data has a single group, so no group can be held out for test; "
                          "set group_column or group_pattern in [data]",
                          where="[evaluation]")
    n_test = max(1, round(cfg.test_fraction * len(groups)))
    n_test = min(n_test, len(groups) - 1)
    rng = np.random.default_rng(cfg.seed)
    # Prefer a draw that leaves every class with training windows.
    best = None
    for _ in range(200):
        pick = sorted(rng.choice(groups, size=n_test, replace=False).tolist(), key=natural_key)
        train_classes = set(windows.y[~np.isin(windows.group, pick)].tolist())
        if best is None:
            best = pick
        if len(train_classes) == len(windows.class_names):
            return pick
    return best  # type: ignore[return-value]


def make_split(windows: WindowSet, cfg: EvaluationConfig,
               test_groups: list[str] | None = None) -> Split:
    """Test groups (given, or chosen), then grouped folds on the rest. Windows of
    augmented copies train but never validate or test."""
    test_groups = test_groups if test_groups is not None else choose_test_groups(windows, cfg)
    augmented = windows.augmented if windows.augmented is not None else \
        np.zeros(len(windows), dtype=bool)
    is_test = np.isin(windows.group, test_groups)
    train = np.flatnonzero(~is_test)
    test = np.flatnonzero(is_test & ~augmented)
    assert_no_leak(windows, train, test, "test split")
    if len(windows.class_names) < 2:
        raise KilomlError(f"the data has one class ('{windows.class_names[0]}'): a classifier "
                          "needs at least two; check the label setting (label_column, "
                          "label_pattern or label_from_folder)", where="[data]")
    for k, name in enumerate(windows.class_names):
        if not np.any(windows.y[train] == k):
            key = "test_groups" if cfg.test_groups is not None else "test_fraction"
            raise KilomlError(f"class '{name}' has no training windows: all of them are in the "
                              f"test groups {', '.join(test_groups)}; hold out fewer or other "
                              f"groups", where=f"[evaluation] {key}")
    folds: list[tuple[np.ndarray, np.ndarray]] = []
    train_groups = natural_sorted(windows.group[train].tolist())
    n_folds, note = cv_folds(cfg, train_groups)
    if n_folds >= 2:
        splitter = GroupKFold(n_splits=n_folds, shuffle=True, random_state=cfg.seed)
        for fit_idx, val_idx in splitter.split(train, groups=windows.group[train]):
            val = train[val_idx]
            fold = (train[fit_idx], val[~augmented[val]])
            assert_no_leak(windows, fold[0], fold[1], f"cross-validation fold {len(folds)}")
            folds.append(fold)
    return Split(train=train, test=test, test_groups=test_groups, folds=folds, cv_note=note)


def cv_folds(cfg: EvaluationConfig, train_groups: list[str]) -> tuple[int, str | None]:
    """The number of grouped folds and, when it is not what cv_folds asks for, why.

    A fold validates on whole groups, so there are at most as many folds as training
    groups. cv_folds written in the project and larger than that cannot work: refused.
    The default (5) shrinks to the groups there are; below two, no cross-validation."""
    asked, n = cfg.cv_folds, len(train_groups)
    shown = ", ".join(train_groups[:10]) + (" ..." if n > 10 else "")
    if asked == 0:
        return 0, "cv_folds = 0: no cross-validation"
    if n >= asked:
        return asked, None
    if "cv_folds" in cfg.model_fields_set:
        fix = f"set cv_folds = {n} or 0" if n >= 2 else "set cv_folds = 0"
        raise KilomlError(f"cv_folds = {asked} needs {asked} training groups, the training set "
                          f"has {n} ({shown}); {fix}, hold out fewer test groups, or give "
                          f"the recordings more groups (group_pattern / group_column in [data])",
                          where="[evaluation] cv_folds")
    if n >= 2:
        return n, f"{n}-fold instead of the default {asked}: {n} training groups ({shown})"
    return 0, (f"no cross-validation: the training set is one group ({shown}), and folds "
               f"validate on whole groups; give the recordings more groups (group_pattern / "
               f"group_column in [data]) or hold out fewer test groups")
