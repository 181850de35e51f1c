"""Cutting recordings into labelled windows.

A window is ``window_samples`` consecutive samples; windows start at 0,
``stride_samples``, 2 * ``stride_samples`` ... and only whole windows are kept:
the tail of a recording after the last whole window is dropped, never padded
(this is also what the streaming C API does: it reports a window each time a
whole one is in its ring buffer). With per-sample labels a window takes the
majority label if that label covers at least ``min_label_coverage`` of it;
otherwise the window is dropped (and counted). Unlabeled samples ("") never
make a label.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from kiloml.data.order import natural_key, natural_sorted
from kiloml.data.recording import Recording
from kiloml.errors import KilomlError


@dataclass
class WindowSet:
    x: np.ndarray  # float32 [N, window_samples, C]
    y: np.ndarray  # int64 [N] class index into class_names
    group: np.ndarray  # str [N]
    recording: np.ndarray  # int64 [N] index into the recordings list
    start: np.ndarray  # int64 [N] first sample of the window in its recording
    class_names: list[str]
    channels: list[str]
    sample_rate_hz: float
    window_samples: int
    stride_samples: int
    dropped_low_coverage: int = 0
    skipped_recordings: list[str] = field(default_factory=list)
    # class -> (recordings skipped as shorter than a window, recordings of the class)
    skipped_per_class: dict[str, tuple[int, int]] = field(default_factory=dict)
    # classes labelled in the recordings but left without a window (label coverage)
    classes_without_windows: list[str] = field(default_factory=list)
    augmented: np.ndarray | None = None  # bool [N]: from an augmented training copy

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def subset(self, index: np.ndarray) -> WindowSet:
        return WindowSet(self.x[index], self.y[index], self.group[index],
                         self.recording[index], self.start[index], self.class_names,
                         self.channels, self.sample_rate_hz, self.window_samples,
                         self.stride_samples,
                         augmented=None if self.augmented is None else self.augmented[index])


def recording_classes(rec: Recording) -> set[str]:
    """The labels a recording holds (unlabeled samples are no class)."""
    if rec.sample_labels is None:
        return {str(rec.label)}
    return {str(v) for v in set(rec.sample_labels.tolist())} - {""}


def data_notes(windows: WindowSet) -> list[str]:
    """Console lines for data a run does not use: recordings skipped as shorter than a
    window (per class) and classes left without a window."""
    notes = []
    if windows.skipped_per_class:
        n = len(windows.skipped_recordings)
        per = ", ".join(f"'{c}' {k} of {total}"
                        for c, (k, total) in windows.skipped_per_class.items())
        notes.append(f"skipped {n} recording{'s' if n != 1 else ''} shorter than a window "
                     f"({windows.window_samples} samples): {per}")
    if windows.classes_without_windows:
        notes.append("no window reaches min_label_coverage for class(es) "
                     f"{', '.join(repr(c) for c in windows.classes_without_windows)}: "
                     "they are not classes of this model")
    return notes


def samples_from_ms(ms: float, sample_rate_hz: float, what: str) -> int:
    exact = ms * sample_rate_hz / 1000.0
    n = round(exact)
    if exact < 1.0 - 1e-9:  # rounding 0.6 samples up to one would not be what was asked
        raise KilomlError(f"{ms:g} ms is less than one sample at {sample_rate_hz:g} Hz",
                          where=f"[window] {what}")
    return n


def window_starts(n_samples: int, window: int, stride: int) -> np.ndarray:
    if n_samples < window:
        return np.zeros(0, dtype=np.int64)
    return np.arange(0, n_samples - window + 1, stride, dtype=np.int64)


def make_windows(recordings: list[Recording], window_ms: float, stride_ms: float, *,
                 min_label_coverage: float = 0.8, short_recordings: str = "error") -> WindowSet:
    rate = recordings[0].sample_rate_hz
    window = samples_from_ms(window_ms, rate, "window_ms")
    stride = samples_from_ms(stride_ms, rate, "stride_ms")
    xs, labels, groups, recs, starts = [], [], [], [], []
    dropped = 0
    skipped: list[str] = []
    recordings_of: Counter[str] = Counter()  # original recordings per class
    skipped_of: Counter[str] = Counter()
    for i, rec in enumerate(recordings):
        classes = recording_classes(rec)
        if not rec.augmented:
            recordings_of.update(classes)
        if rec.n_samples < window:
            if short_recordings == "skip" or rec.augmented:
                if not rec.augmented:  # a copy is as long as its (skipped) original
                    skipped.append(rec.source)
                    skipped_of.update(classes)
                continue
            raise KilomlError(
                f"the recording has {rec.n_samples} samples ({rec.duration_s * 1000:.0f} ms) "
                f"but a window needs {window} samples (window_ms = {window_ms:g}); shorten "
                f"the window or set short_recordings = \"skip\" in [data]", file=rec.source)
        st = window_starts(rec.n_samples, window, stride)
        if rec.sample_labels is None:
            keep = st
            win_labels = [rec.label] * len(st)
        else:
            keep, win_labels = [], []
            for s in st:
                counts = Counter(rec.sample_labels[s:s + window])
                counts.pop("", None)
                if not counts:
                    dropped += 1
                    continue
                top = max(sorted(counts, key=natural_key), key=lambda k: counts[k])
                if counts[top] / window < min_label_coverage:
                    dropped += 1
                    continue
                keep.append(s)
                win_labels.append(top)
            keep = np.asarray(keep, dtype=np.int64)
        if len(keep) == 0:
            continue
        view = np.lib.stride_tricks.sliding_window_view(rec.samples, window, axis=0)
        xs.append(np.ascontiguousarray(view[keep].transpose(0, 2, 1)))
        labels.extend(win_labels)
        groups.extend([rec.group] * len(keep))
        recs.extend([i] * len(keep))
        starts.extend(keep.tolist())
    class_names = natural_sorted(labels)  # "2" before "10"
    lost = [c for c in natural_sorted(skipped_of) if c not in set(class_names)]
    if lost:
        counts = ", ".join(f"'{c}' ({skipped_of[c]} of {recordings_of[c]})" for c in lost[:5])
        raise KilomlError(
            f"short_recordings = \"skip\" leaves class{'es' if len(lost) > 1 else ''} "
            f"{counts} without a recording: every one is shorter than a window of {window} "
            f"samples (window_ms = {window_ms:g}); shorten the window or drop the class",
            where="[data] short_recordings")
    if not xs:
        raise KilomlError("no labelled windows: every window was dropped (check "
                          "min_label_coverage and the label column)", where="[data]")
    index = {name: k for k, name in enumerate(class_names)}
    return WindowSet(
        x=np.concatenate(xs).astype(np.float32, copy=False),
        y=np.array([index[v] for v in labels], dtype=np.int64),
        group=np.array(groups, dtype=str),
        recording=np.array(recs, dtype=np.int64),
        start=np.array(starts, dtype=np.int64),
        class_names=class_names,
        channels=list(recordings[0].channels),
        sample_rate_hz=rate,
        window_samples=window,
        stride_samples=stride,
        dropped_low_coverage=dropped,
        skipped_recordings=skipped,
        skipped_per_class={c: (skipped_of[c], recordings_of[c])
                           for c in natural_sorted(skipped_of)},
        classes_without_windows=[c for c in natural_sorted(recordings_of)
                                 if c not in set(class_names)],
        augmented=np.array([recordings[i].augmented for i in recs], dtype=bool),
    )
