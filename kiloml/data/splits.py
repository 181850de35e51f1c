"""Evaluation splits that cannot leak: by group (subject), never by window.

A held-out test set of whole groups, plus grouped k-fold cross-validation on
the rest. Every split passes through ``assert_no_leak``, which raises if a group
or a recording is on both sides.

The test groups are ``[evaluation] test_groups``, a seeded draw of ``test_fraction`` of
the groups, or the groups of the files ``test_pattern`` matches (the data set's own
split, ``pattern_test_groups``). With test_pattern a group must lie wholly on one side:
a group with files on both sides is an error naming it and a file of each side (its
recordings would otherwise train and test the same subject). Without group_pattern or
group_column every file is its own group, so the cross-validation is by recording.
"""

from __future__ import annotations

import re
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


def pattern_test_groups(pattern: str, paths: list[str], groups: list[str]) -> list[str]:
    """The test groups of ``test_pattern``: the groups of the files whose path (below the
    data folder) it matches. Every file of a test group must match it, and it must leave
    files on both sides. Errors have where="[evaluation] test_pattern"."""
    where = "[evaluation] test_pattern"
    regex = re.compile(pattern)
    matched = [regex.search(p) is not None for p in paths]
    n = sum(matched)
    if n == 0:
        shown = ", ".join(paths[:3]) + (" ..." if len(paths) > 3 else "")
        raise KilomlError(f"'{pattern}' matches none of the {len(paths)} files (paths below "
                          f"[data] path, e.g. {shown}): there would be no test set",
                          where=where)
    if n == len(paths):
        raise KilomlError(f"'{pattern}' matches every one of the {len(paths)} files: none is "
                          f"left for training", where=where)
    test_file: dict[str, str] = {}
    train_file: dict[str, str] = {}
    for path, group, is_test in zip(paths, groups, matched, strict=True):
        (test_file if is_test else train_file).setdefault(group, path)
    both = natural_sorted(set(test_file) & set(train_file))
    if both:
        g = both[0]
        more = f" ({len(both)} groups are, e.g. this one)" if len(both) > 1 else ""
        raise KilomlError(f"group '{g}' has files on both sides{more}: '{test_file[g]}' "
                          f"matches, '{train_file[g]}' does not; a group is held out whole "
                          f"(else the same subject trains and tests): change the pattern, or "
                          f"leave group_pattern / group_column out (each file its own group)",
                          where=where)
    return natural_sorted(test_file)


def choose_test_groups(windows: WindowSet, cfg: EvaluationConfig) -> list[str]:
    if cfg.test_pattern is not None:
        # the pattern reads file paths, which only the loading step has (load_data)
        raise RuntimeError("with test_pattern, make_split needs the test groups of "
                           "load_data(...).test_groups")
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
    if not len(test):
        raise KilomlError(f"the test groups ({', '.join(test_groups[:5])}) have no window: "
                          "their recordings are all shorter than a window",
                          where="[evaluation]")
    if len(windows.class_names) < 2:
        raise KilomlError(f"the data has one class ('{windows.class_names[0]}'): a classifier "
                          "needs at least two; check the label setting (label_column, "
                          "label_pattern or label_from_folder)", where="[data]")
    for k, name in enumerate(windows.class_names):
        if not np.any(windows.y[train] == k):
            key = ("test_groups" if cfg.test_groups is not None else
                   "test_pattern" if cfg.test_pattern is not None else "test_fraction")
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
