"""Windowing in ms, per-window labels, and leak-free grouped splits."""

from __future__ import annotations

import numpy as np
import pytest

from kiloml.data.order import natural_sorted
from kiloml.data.recording import Recording
from kiloml.data.splits import assert_no_leak, make_split
from kiloml.data.windows import data_notes, make_windows, samples_from_ms
from kiloml.errors import DataLeakError, KilomlError
from kiloml.project import EvaluationConfig


def rec(n: int, label: str | None = "a", group: str = "g1", labels=None, channels=2,
        source: str = "r") -> Recording:
    samples = np.arange(n * channels, dtype=np.float32).reshape(n, channels)
    return Recording(samples, 100.0, [f"c{i}" for i in range(channels)], group, source,
                     label=None if labels is not None else label,
                     sample_labels=None if labels is None else np.array(labels, dtype=object))


def test_ms_to_samples() -> None:
    assert samples_from_ms(1000, 50, "window_ms") == 50
    assert samples_from_ms(333, 100, "window_ms") == 33
    with pytest.raises(KilomlError, match="less than one sample"):
        samples_from_ms(1, 100, "stride_ms")


def test_starts_stride_and_dropped_tail() -> None:
    w = make_windows([rec(107)], window_ms=300, stride_ms=250)  # 30 samples every 25
    assert w.window_samples == 30 and w.stride_samples == 25
    assert w.start.tolist() == [0, 25, 50, 75]  # 100..106 is a tail shorter than a window
    assert w.x.shape == (4, 30, 2) and w.x.dtype == np.float32
    np.testing.assert_array_equal(w.x[2], rec(107).samples[50:80])


def test_window_equal_to_recording_gives_one_window() -> None:
    w = make_windows([rec(30)], window_ms=300, stride_ms=100)
    assert w.start.tolist() == [0]


def test_window_longer_than_recording() -> None:
    with pytest.raises(KilomlError, match="a window needs 30 samples"):
        make_windows([rec(20, source="short.csv")], window_ms=300, stride_ms=100)
    w = make_windows([rec(20, source="short.csv"), rec(40)], window_ms=300, stride_ms=100,
                     short_recordings="skip")
    assert w.skipped_recordings == ["short.csv"] and len(w) == 2


def test_majority_label_with_coverage() -> None:
    labels = ["a"] * 10 + ["b"] * 10 + [""] * 10
    w = make_windows([rec(30, labels=labels)], window_ms=100, stride_ms=50,
                     min_label_coverage=0.8)
    # windows of 10 samples every 5: [0,10) a, [5,15) mixed, [10,20) b, [15,25) mixed,
    # [20,30) unlabeled
    assert w.start.tolist() == [0, 10]
    assert [w.class_names[i] for i in w.y] == ["a", "b"]
    assert w.dropped_low_coverage == 3
    w = make_windows([rec(30, labels=labels)], window_ms=100, stride_ms=50,
                     min_label_coverage=0.51)
    assert w.start.tolist() == [0, 10]  # 50/50 mixes never reach 51%


def test_labels_are_sorted_class_names() -> None:
    w = make_windows([rec(30, "walk", "g1"), rec(30, "idle", "g2")], 100, 100)
    assert w.class_names == ["idle", "walk"]
    assert w.y.tolist() == [1, 1, 1, 0, 0, 0]


def many_groups() -> list[Recording]:
    out = []
    for g in range(6):
        for label in ("a", "b"):
            out.append(rec(100, label, f"s{g}", source=f"s{g}-{label}"))
    return out


def test_split_by_group_is_disjoint() -> None:
    w = make_windows(many_groups(), 100, 50)
    split = make_split(w, EvaluationConfig(test_groups=["s5"], cv_folds=3))
    assert set(w.group[split.test]) == {"s5"}
    assert "s5" not in set(w.group[split.train])
    assert len(split.folds) == 3
    for fit, val in split.folds:
        assert not set(w.group[fit]) & set(w.group[val])
        assert not set(w.group[val]) & {"s5"}
    assert sorted(np.concatenate([v for _, v in split.folds]).tolist()) == \
        sorted(split.train.tolist())


def test_automatic_test_groups_are_whole_groups() -> None:
    w = make_windows(many_groups(), 100, 50)
    split = make_split(w, EvaluationConfig(test_fraction=0.34, seed=3))
    assert len(split.test_groups) == 2
    assert set(w.group[split.test]) == set(split.test_groups)
    again = make_split(w, EvaluationConfig(test_fraction=0.34, seed=3))
    assert again.test_groups == split.test_groups


def test_unknown_test_group() -> None:
    w = make_windows(many_groups(), 100, 50)
    with pytest.raises(KilomlError, match="test group 's9' is not in the data"):
        make_split(w, EvaluationConfig(test_groups=["s9"]))


def test_leak_check_raises_on_shared_group_or_recording() -> None:
    w = make_windows(many_groups(), 100, 50)
    a = np.flatnonzero(w.group == "s0")
    b = np.flatnonzero(w.group == "s1")
    assert_no_leak(w, a, b, "ok")
    with pytest.raises(DataLeakError, match="group"):
        assert_no_leak(w, a, np.concatenate([b, a[:1]]), "bad")
    w.group[:] = np.arange(len(w)).astype(str)  # every window its own group...
    with pytest.raises(DataLeakError, match="recording"):
        assert_no_leak(w, a[:2], a[2:], "bad")  # ...but one recording on both sides


# --- natural order of class and group names ---------------------------------------


def test_natural_key_orders_numbers_by_value_and_text_part_by_part() -> None:
    names = ["10", "2", "1", "-1", "0.5", "01", "s10", "s2", "s1", "b", "a", "x²"]
    assert natural_sorted(names) == ["-1", "0.5", "01", "1", "2", "10", "a", "b", "s1", "s2",
                                     "s10", "x²"]
    for shuffled in (names[::-1], names[3:] + names[:3]):  # total: no input-order ties
        assert natural_sorted(shuffled) == natural_sorted(names)
    long = "9" * 5000  # int() refuses > 4300 digits; the key never converts runs
    assert natural_sorted([f"s{long}", "s2"]) == ["s2", f"s{long}"]


def test_numeric_labels_sort_naturally_in_windows_and_splits() -> None:
    recs = [rec(100, str(c), f"{g}", source=f"{g}-{c}") for c in range(1, 13)
            for g in (2, 10, 1)]
    w = make_windows(recs, 100, 50)
    assert w.class_names == [str(c) for c in range(1, 13)]
    assert all(w.class_names[k] == recs[r].label for k, r in zip(w.y, w.recording, strict=True))
    split = make_split(w, EvaluationConfig(test_groups=["10"], cv_folds=2))
    assert split.test_groups == ["10"]


def test_classes_without_windows_and_skipped_recordings_are_noted() -> None:
    labels = ["a"] * 28 + ["x"] * 2  # 'x' never covers 80% of a 10-sample window
    recs = [rec(30, labels=labels, group="g1", source="r1"),
            rec(5, "b", "g2", source="short-b"), rec(30, "b", "g3", source="long-b")]
    w = make_windows(recs, 100, 100, short_recordings="skip")
    assert w.class_names == ["a", "b"] and w.classes_without_windows == ["x"]
    assert w.skipped_recordings == ["short-b"] and w.skipped_per_class == {"b": (1, 2)}
    notes = data_notes(w)
    assert notes[0] == "skipped 1 recording shorter than a window (10 samples): 'b' 1 of 2"
    assert "min_label_coverage for class(es) 'x'" in notes[1]
    with pytest.raises(KilomlError, match=r"leaves class 'b' \(1 of 1\) without a recording"):
        make_windows(recs[:2], 100, 100, short_recordings="skip")
