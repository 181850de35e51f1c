"""Turn the project's [data] section into a list of Recordings."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from scipy import signal

from kiloml.data.csv_ingest import RATE_TOLERANCE, read_csv_recording
from kiloml.data.files import find_files, what_is
from kiloml.data.npy_ingest import read_npy
from kiloml.data.public import load_basic_motions, load_watch
from kiloml.data.recording import MAX_RECORDING_VALUES, Recording
from kiloml.data.splits import pattern_test_groups
from kiloml.data.wav_ingest import read_wav
from kiloml.data.windows import check_window_settings
from kiloml.display import shown_path
from kiloml.errors import KilomlError
from kiloml.progress import track
from kiloml.project import DataConfig, LoadedProject, locate

DEFAULT_GLOBS = {"csv": "**/*.csv", "wav": "**/*.wav", "npy": "**/*.np[yz]"}
DATA_SUFFIXES = {"csv": {".csv", ".tsv", ".txt"}, "wav": {".wav", ".wave"},
                 "npy": {".npy", ".npz"}}


@dataclass
class LoadedData:
    """The project's recordings and what the loading step alone can know about them."""

    recordings: list[Recording]
    # the groups of the files [evaluation] test_pattern matches (None without it)
    test_groups: list[str] | None
    # samples of each recording as read, before [data] pad_to_ms appended zeros
    read_lengths: list[int]


def load_recordings(project: LoadedProject) -> list[Recording]:
    return load_data(project).recordings


def load_data(project: LoadedProject) -> LoadedData:
    """[data] -> recordings; with [evaluation] test_pattern, the test groups of the files
    it matches (checked: some files on each side, no group on both)."""
    cfg = project.config.data
    pattern = project.config.evaluation.test_pattern
    where = "[evaluation] test_pattern"
    if pattern is not None and cfg.source in ("watch", "basic-motions"):
        raise KilomlError(f"the built-in data set '{cfg.source}' has no file paths to match; "
                          f"use test_groups or test_fraction", file=project.path,
                          line=locate(project, ("evaluation",), "test_pattern"), where=where)
    check_window_settings(project)
    test_groups = None
    if cfg.source == "watch":
        recordings = load_watch()
    elif cfg.source == "basic-motions":
        recordings = load_basic_motions()
    else:
        recordings, paths = _load_files(project, cfg)
        if pattern is not None:
            try:
                test_groups = pattern_test_groups(pattern, paths, [r.group for r in recordings])
            except KilomlError as exc:
                exc.file = str(project.path)
                exc.line = locate(project, ("evaluation",), "test_pattern")
                raise
    read_lengths = [r.n_samples for r in recordings]
    if cfg.pad_to_ms is not None:
        recordings = [_pad(project, r, cfg.pad_to_ms) for r in recordings]
    if cfg.channels and cfg.source in ("watch", "basic-motions"):
        known = recordings[0].channels
        for name in cfg.channels:
            if name not in known:
                raise KilomlError(f"channel '{name}' is not in the '{cfg.source}' data set "
                                  f"(channels: {', '.join(known)})", file=project.path,
                                  where="[data] channels")
        recordings = [r.select_channels(list(cfg.channels)) for r in recordings]
    return LoadedData(recordings, test_groups, read_lengths)


def list_files(project: LoadedProject, cfg: DataConfig) -> tuple[Path, list[Path]]:
    """The data folder and its recording files (sorted), each a regular file. Anything
    else the glob names (a FIFO, a device, a socket, a broken or looping link, a folder
    named like a recording) is an error, never skipped in silence."""
    assert cfg.path is not None
    base = project.resolve(cfg.path)
    if not os.path.lexists(base):
        raise KilomlError("data path not found", file=base, where="[data] path")
    if not base.is_dir():
        kind = what_is(base)
        if kind is not None:
            raise KilomlError(f"the data path is {kind}", file=base, where="[data] path")
        return base.parent, [base]
    pattern = cfg.glob if cfg.glob is not None else DEFAULT_GLOBS[cfg.source]
    parts = Path(pattern).parts
    if not pattern or Path(pattern).is_absolute() or ".." in parts:
        raise KilomlError(f"glob '{pattern}' must be a pattern inside the data folder (no "
                          f"absolute path, no '..')", file=project.path,
                          line=locate(project, ("data",), "glob"), where="[data] glob")
    matches = find_files(base, pattern)
    files = []
    for p in matches:
        kind = what_is(p)
        if kind is None:
            files.append(p)
        elif kind.startswith("a folder"):
            if p.suffix.lower() in DATA_SUFFIXES[cfg.source]:
                raise KilomlError(f"a folder named like a recording matches '{pattern}'; "
                                  f"rename it or narrow [data] glob", file=shown_path(p))
        else:
            raise KilomlError(f"matches '{pattern}' but is {kind}", file=shown_path(p))
    if not files:
        empty = not any(base.iterdir())
        raise KilomlError("the data folder is empty" if empty else
                          f"no files match '{pattern}' in this folder", file=base,
                          where="[data] path")
    if cfg.label_from_folder:
        _check_class_folders(base, files, pattern)
    return base, files


def _check_class_folders(base: Path, files: list[Path], pattern: str) -> None:
    """With label_from_folder, each folder directly in the data folder is a class: one
    holding no recording is a class with no data, said rather than dropped."""
    if not any(f.parent.parent == base for f in files):
        return  # the files are not laid out as <class>/<file>
    used = {f.relative_to(base).parts[0] for f in files if f.parent != base}
    for child in sorted(base.iterdir()):
        if child.name.startswith(".") or child.name in used or not child.is_dir():
            continue
        raise KilomlError(f"the class folder '{child.name}' holds no file matching "
                              f"'{pattern}': add its recordings or remove the folder",
                              file=shown_path(child))


def _from_name(pattern: str | None, relative: str, what: str, display: str) -> str | None:
    if pattern is None:
        return None
    m = re.search(pattern, relative)
    if not m or not m.group(what):
        raise KilomlError(f"file name does not match {what}_pattern '{pattern}'", file=display)
    return m.group(what)


def _load_files(project: LoadedProject, cfg: DataConfig) -> tuple[list[Recording], list[str]]:
    """The recordings and each one's file path below the data folder."""
    base, files = list_files(project, cfg)
    recordings: list[Recording] = []
    paths: list[str] = []
    rates: list[float] = []
    for path in track(files, f"reading {cfg.source.upper()} files"):
        display = shown_path(path)
        relative = path.relative_to(base).as_posix()
        label = _from_name(cfg.label_pattern, relative, "label", display)
        if cfg.label_from_folder:
            label = path.parent.name  # the folder the file sits in names its label
        group = _from_name(cfg.group_pattern, relative, "group", display)
        sample_labels = None
        if cfg.source == "csv":
            samples, rate, channels, sample_labels, column_group = read_csv_recording(
                path, cfg, display, label=label, group=group)
            group = column_group or group
        elif cfg.source == "wav":
            samples, rate = read_wav(path, display)
            channels = _channel_names(cfg, samples.shape[1], display)
            _check_declared_rate(cfg, rate, display)
        else:
            samples, sample_labels, stored_rate = read_npy(path, display)
            channels = _channel_names(cfg, samples.shape[1], display)
            rate = stored_rate or cfg.sample_rate_hz
            if rate is None:
                raise KilomlError("no sample rate: set sample_rate_hz in [data] or store "
                                  "'sample_rate_hz' in the NPZ file", file=display)
            if stored_rate is not None:
                _check_declared_rate(cfg, stored_rate, display)
            if cfg.label_column is not None:
                if sample_labels is None:
                    raise KilomlError("label_column is set but the file has no 'labels' "
                                      "array (NPZ with samples and labels is needed)",
                                      file=display)
            else:
                sample_labels = None
        if sample_labels is not None:
            label = None
        recordings.append(Recording(samples=samples, sample_rate_hz=rate, channels=channels,
                                    group=group or relative, source=display, label=label,
                                    sample_labels=sample_labels))
        rates.append(rate)
        paths.append(relative)
    _check_consistent(recordings, cfg, rates)
    return recordings, paths



def _channel_names(cfg: DataConfig, n_channels: int, display: str) -> list[str]:
    if cfg.channels is None:
        return [f"ch{i}" for i in range(n_channels)]
    if len(cfg.channels) != n_channels:
        raise KilomlError(f"the file has {n_channels} channels but [data] channels names "
                          f"{len(cfg.channels)}", file=display)
    return list(cfg.channels)


def _check_declared_rate(cfg: DataConfig, rate: float, display: str) -> None:
    if cfg.sample_rate_hz is None or cfg.resample:
        return
    off = abs(rate - cfg.sample_rate_hz) / cfg.sample_rate_hz
    if off > RATE_TOLERANCE:
        raise KilomlError(f"the file says {rate:g} Hz, {off:.0%} off the declared "
                          f"sample_rate_hz = {cfg.sample_rate_hz:g}", file=display)


def _check_consistent(recordings: list[Recording], cfg: DataConfig, rates: list[float]) -> None:
    first = recordings[0]
    for r in recordings[1:]:
        if r.channels != first.channels:
            raise KilomlError(f"channels {r.channels} differ from {first.channels} in "
                              f"{first.source}", file=r.source)
    reference = cfg.sample_rate_hz or float(np.median(rates))
    for r in recordings:
        off = abs(r.sample_rate_hz - reference) / reference
        if cfg.resample and off > 1e-6:
            _resample(r, reference)
            continue
        if off > RATE_TOLERANCE:
            raise KilomlError(f"sample rate {r.sample_rate_hz:.4g} Hz is {off:.0%} off the "
                              f"{reference:.4g} Hz of the other recordings", file=r.source)
        r.sample_rate_hz = reference


def _resample(r: Recording, rate_hz: float) -> None:
    """Polyphase resampling (scipy) of a recording to rate_hz, in place: a data
    conversion before training, not part of the firmware."""
    ratio = Fraction(rate_hz / r.sample_rate_hz).limit_denominator(1000)
    y = signal.resample_poly(r.samples.astype(np.float64), ratio.numerator,
                             ratio.denominator, axis=0)
    if r.sample_labels is not None:
        idx = np.minimum((np.arange(len(y)) * r.sample_rate_hz / rate_hz).astype(int),
                         r.n_samples - 1)
        r.sample_labels = r.sample_labels[idx]
    r.samples = y.astype(np.float32)
    r.sample_rate_hz = rate_hz


def _pad(project: LoadedProject, r: Recording, pad_to_ms: float) -> Recording:
    """Zeros after a recording shorter than pad_to_ms (unlabeled if labels are per sample)."""
    n = round(pad_to_ms * r.sample_rate_hz / 1000.0)
    if r.n_samples >= n:
        return r
    if n * len(r.channels) > MAX_RECORDING_VALUES:
        raise KilomlError(f"pad_to_ms = {pad_to_ms:g} pads {r.source} to {n:,} samples at "
                          f"{r.sample_rate_hz:g} Hz, more than kiloml holds for one recording "
                          f"({MAX_RECORDING_VALUES:,} values)", file=project.path,
                          line=locate(project, ("data",), "pad_to_ms"), where="[data] pad_to_ms")
    samples = np.zeros((n, len(r.channels)), dtype=np.float32)
    samples[:r.n_samples] = r.samples
    labels = None
    if r.sample_labels is not None:
        labels = np.full(n, "", dtype=object)
        labels[:r.n_samples] = r.sample_labels
    return Recording(samples, r.sample_rate_hz, list(r.channels), r.group, r.source, r.label,
                     labels, r.augmented)
