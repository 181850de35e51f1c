"""Cutting recordings into labelled windows, or fitting each recording to one window.

A window is ``window_samples`` consecutive samples; windows start at 0,
``stride_samples``, 2 * ``stride_samples`` ... and only whole windows are kept:
the tail of a recording after the last whole window is dropped, never padded
(this is also what the streaming C API does: it reports a window each time a
whole one is in its ring buffer). With per-sample labels a window takes the
majority label if that label covers at least ``min_label_coverage`` of it;
otherwise the window is dropped (and counted). Unlabeled samples ("") never
make a label.

``[window] mode = "recording"`` makes one window of each whole recording instead
(``fit_recording``): after preprocessing, a recording shorter than ``length_ms`` is
padded after its last sample (zeros, its last sample repeated, or a number), a longer
one cropped (the start, the middle or the end kept) or refused (``crop = "error"``). The
generated ``kml_classify_recording`` applies the same rule in C.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from kiloml.data.order import natural_key, natural_sorted
from kiloml.data.recording import MAX_AUGMENTED_VALUES, Recording
from kiloml.errors import KilomlError
from kiloml.project import DecisionConfig, LoadedProject, Project, RecordingRule, locate


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
    # mode = "recording": the real (not padded) samples at the start of each window
    # (int64 [N]), and how the recordings were fitted (RecordingFit.summary())
    valid: np.ndarray | None = None
    fit: dict | None = None

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def subset(self, index: np.ndarray) -> WindowSet:
        return WindowSet(self.x[index], self.y[index], self.group[index],
                         self.recording[index], self.start[index], self.class_names,
                         self.channels, self.sample_rate_hz, self.window_samples,
                         self.stride_samples,
                         augmented=None if self.augmented is None else self.augmented[index],
                         valid=None if self.valid is None else self.valid[index],
                         fit=self.fit)


def recording_classes(rec: Recording) -> set[str]:
    """The labels a recording holds (unlabeled samples are no class)."""
    if rec.sample_labels is None:
        return {str(rec.label)}
    return {str(v) for v in set(rec.sample_labels.tolist())} - {""}


def data_notes(windows: WindowSet) -> list[str]:
    """Console lines for data a run does not use: recordings skipped as shorter than a
    window (per class) and classes left without a window."""
    notes = []
    if windows.fit is not None:
        f = windows.fit
        notes.append(f"one window per recording, fitted to {f['length_samples']} samples: "
                     f"{f['padded']} padded (pad = {f['pad']!r}), {f['cropped']} cropped "
                     f"(crop = {f['crop']!r}), {f['exact']} of exactly that length")
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


# --- whole recordings ([window] mode = "recording") ------------------------------------


@dataclass(frozen=True)
class Fitted:
    """One recording fitted to the window: the window, the first sample of the recording
    it holds (cropping), and how many of its rows are real samples (the rest is padding)."""

    window: np.ndarray  # float32 [length, C]
    first: int
    valid: int


def crop_start(n_samples: int, length: int, crop: str) -> int:
    """The first sample kept of a recording of ``n_samples`` longer than ``length``."""
    excess = n_samples - length
    return {"start": 0, "center": excess // 2, "end": excess}[crop]


def fit_recording(samples: np.ndarray, length: int, rule: RecordingRule) -> Fitted | None:
    """``samples`` [T, C] (preprocessed) as one window of ``length`` rows by the rule;
    None when the recording is longer and crop = "error" (the C returns -1 then)."""
    n, channels = samples.shape
    if n < 1:
        raise ValueError("a recording has at least one sample")
    if n > length:
        if rule.crop == "error":
            return None
        first = crop_start(n, length, rule.crop)
        return Fitted(np.ascontiguousarray(samples[first:first + length], dtype=np.float32),
                      first, length)
    window = np.empty((length, channels), dtype=np.float32)
    window[:n] = samples
    if rule.pad == "zero":
        window[n:] = 0.0
    elif rule.pad == "edge":
        window[n:] = samples[n - 1]
    else:
        window[n:] = np.float32(rule.pad)
    return Fitted(window, 0, n)


def length_samples(length_ms: float, sample_rate_hz: float) -> int:
    return samples_from_ms(length_ms, sample_rate_hz, "length_ms")


def recording_label(rec: Recording) -> str:
    """The one label of a recording that is one example (per-sample labels must agree)."""
    classes = natural_sorted(recording_classes(rec))
    if len(classes) != 1:
        what = (f"labels {', '.join(repr(c) for c in classes[:5])}" if classes
                else "no labelled sample")
        raise KilomlError(f"in [window] mode = \"recording\" a recording is one example with "
                          f"one label; this one has {what}", file=rec.source)
    return classes[0]


def make_recording_windows(recordings: list[Recording], length_ms: float,
                           rule: RecordingRule, *, refused: str = "error") -> WindowSet:
    """One window per recording, each fitted to ``length_ms`` by ``rule``. A recording the
    rule refuses (longer, crop = "error") is an error, or with ``refused = "skip"`` left
    out as kml_classify_recording would (stress tests that change the length)."""
    rate = recordings[0].sample_rate_hz
    length = length_samples(length_ms, rate)
    values = len(recordings) * length * len(recordings[0].channels)
    if values > MAX_AUGMENTED_VALUES:  # the windows are held together, as float32
        raise KilomlError(f"length_ms = {length_ms:g} makes {len(recordings):,} windows of "
                          f"{length:,} samples x {len(recordings[0].channels)} channels, "
                          f"{values * 4 / 2**30:.1f} GiB of float32 (kiloml holds at most "
                          f"{MAX_AUGMENTED_VALUES * 4 / 2**30:.0f} GiB)",
                          where="[window] length_ms")
    xs, labels, starts, valid, kept = [], [], [], [], []
    counts: Counter[str] = Counter()
    lengths = []
    for i, rec in enumerate(recordings):
        label = recording_label(rec)
        if rec.n_samples < 1:
            raise KilomlError("the recording has no sample", file=rec.source)
        fitted = fit_recording(rec.samples, length, rule)
        if fitted is None and refused == "skip":
            continue
        if fitted is None:
            raise KilomlError(
                f"the recording has {rec.n_samples} samples ({rec.duration_s * 1000:g} ms) "
                f"after preprocessing, more than length_ms = {length_ms:g} ({length} samples), "
                f"and crop = \"error\": set crop = \"start\", \"center\" or \"end\" in "
                f"[window], or a longer length_ms", file=rec.source)
        if not rec.augmented:
            counts["padded" if rec.n_samples < length else
                   "cropped" if rec.n_samples > length else "exact"] += 1
            lengths.append(rec.n_samples)
        xs.append(fitted.window)
        labels.append(label)
        starts.append(fitted.first)
        valid.append(fitted.valid)
        kept.append(i)
    channels = len(recordings[0].channels)
    class_names = natural_sorted(labels)
    index = {name: k for k, name in enumerate(class_names)}
    fit = {"length_samples": length, "length_ms": length * 1000.0 / rate,
           "pad": rule.pad, "crop": rule.crop,
           "padded": counts["padded"], "cropped": counts["cropped"], "exact": counts["exact"],
           "shortest_samples": min(lengths, default=0), "longest_samples": max(lengths, default=0)}
    return WindowSet(
        x=(np.stack(xs).astype(np.float32, copy=False) if xs  # none: all refused, skipped
           else np.zeros((0, length, channels), np.float32)),
        y=np.array([index[v] for v in labels], dtype=np.int64),
        group=np.array([recordings[i].group for i in kept], dtype=str),
        recording=np.array(kept, dtype=np.int64),
        start=np.array(starts, dtype=np.int64),
        class_names=class_names,
        channels=list(recordings[0].channels),
        sample_rate_hz=rate,
        window_samples=length,
        stride_samples=length,  # the streaming API reports a window every length_ms
        augmented=np.array([recordings[i].augmented for i in kept], dtype=bool),
        valid=np.array(valid, dtype=np.int64),
        fit=fit,
    )


def make_project_windows(cfg: Project, recordings: list[Recording]) -> WindowSet:
    """The project's windows: cut by window_ms / stride_ms, or one per recording."""
    w = cfg.window
    if w.mode == "recording":
        assert w.length_ms is not None and w.recording_rule is not None  # the schema's rule
        return make_recording_windows(recordings, w.length_ms, w.recording_rule)
    assert w.window_ms is not None and w.stride_ms is not None
    return make_windows(recordings, w.window_ms, w.stride_ms,
                        min_label_coverage=cfg.data.min_label_coverage,
                        short_recordings=cfg.data.short_recordings)


def check_window_settings(project: LoadedProject) -> None:
    """Settings of other sections that mode = "recording" (or mode = "windows") excludes,
    refused before any data is read."""
    cfg = project.config

    def refuse(section: str, key: str, message: str) -> None:
        raise KilomlError(message, file=project.path, line=locate(project, (section,), key),
                          where=f"[{section}] {key}")

    if cfg.window.mode == "recording":
        for key in ("pad_to_ms", "short_recordings", "min_label_coverage"):
            if getattr(cfg.data, key) != type(cfg.data).model_fields[key].default:
                refuse("data", key, "applies to [window] mode = \"windows\"; in mode = "
                       "\"recording\" every recording is fitted to length_ms by [window] "
                       "pad and crop")
        if cfg.evaluation.per_recording != "none":
            refuse("evaluation", "per_recording", "in [window] mode = \"recording\" every "
                   "window is a whole recording: the per-window results are per recording")
        changed = [k for k in DecisionConfig.model_fields
                   if getattr(cfg.decision, k) != getattr(DecisionConfig(), k)]
        if changed:
            refuse("decision", changed[0], "the decision layer smooths a stream of windows; "
                   "in [window] mode = \"recording\" kml_classify_recording makes one "
                   "decision per recording: leave [decision] out")
