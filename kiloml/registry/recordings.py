"""The recordings a behaviour diff streams through both libraries: the baseline package's
held-out streams (its reference.npz), or a folder of recordings read as the package's
project reads its data ([data] of its project.toml, with the folder as the path)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kiloml.data.csv_ingest import RATE_TOLERANCE
from kiloml.data.recording import Recording
from kiloml.data.sources import load_data
from kiloml.errors import KilomlError
from kiloml.project import LoadedProject
from kiloml.registry.contents import Package

WHERE = "--recordings"


@dataclass
class Streams:
    """Recordings end to end, each fed to a library from its first sample."""

    source: str  # what they are, for the report
    names: list[str]
    groups: list[str]
    samples: list[np.ndarray]  # float32 [n, channels]: raw samples, as the device reads
    channels: list[str]
    rate_hz: float

    @property
    def lengths(self) -> list[int]:
        return [len(s) for s in self.samples]

    @property
    def seconds(self) -> float:
        return float(sum(self.lengths)) / self.rate_hz


def held_out_streams(package: Package) -> Streams:
    """The held-out recordings ``package``'s run streamed in its verification, in load
    order, named and grouped as metrics.json ``held_out_streams`` records them (runs of
    an older kiloml record none: numbered, their group the test group when there was one,
    else "held-out")."""
    p = package.pipeline
    samples = package.reference.stream_recordings
    recorded = package.metrics.get("held_out_streams")
    if isinstance(recorded, list) and len(recorded) == len(samples) and all(
            isinstance(r, dict) and isinstance(r.get("source"), str)
            and isinstance(r.get("group"), str) for r in recorded):
        names, groups = [r["source"] for r in recorded], [r["group"] for r in recorded]
    else:
        tests = package.metrics.get("evaluation", {}).get("test_groups", [])
        group = str(tests[0]) if isinstance(tests, list) and len(tests) == 1 else "held-out"
        names, groups = [f"held-out {i}" for i in range(len(samples))], [group] * len(samples)
    return Streams(f"the held-out streams of {package.label} (its reference.npz)", names,
                   groups, samples, list(p.channels), float(p.input_rate_hz))


def folder_streams(package: Package, folder: Path) -> Streams:
    """Every recording in ``folder``, read with ``package``'s [data] settings (format,
    timestamps, labels, groups), its channels those the library reads."""
    folder = Path(folder)
    if not folder.is_dir():
        raise KilomlError("not a folder" if folder.exists() else "folder not found",
                          file=folder, where=WHERE)
    loaded = package.project()
    cfg = loaded.config
    if cfg.data.source not in ("csv", "wav", "npy"):
        raise KilomlError(f"package {package.label}'s project reads the built-in data set "
                          f"'{cfg.data.source}', not files: there is no file format to read "
                          f"{folder} with", where=WHERE)
    data = cfg.data.model_copy(update={"path": str(folder.resolve())})
    # the folder is read for its recordings; which of them would be test data is moot
    evaluation = cfg.evaluation.model_copy(update={"test_pattern": None})
    project = LoadedProject(config=cfg.model_copy(update={"data": data,
                                                           "evaluation": evaluation}),
                            path=loaded.path, root=loaded.root)
    try:
        recordings = load_data(project).recordings
    except KilomlError as exc:
        if exc.where == "[data] path":
            exc.where = WHERE
        raise
    p = package.pipeline
    rate = float(p.input_rate_hz)
    chosen = [_library_channels(r, list(p.channels), rate) for r in recordings]
    names = [_name(r.source, folder) for r in chosen]
    return Streams(f"the recordings in {folder}", names, [r.group for r in chosen],
                   [r.samples for r in chosen], list(p.channels), rate)


def _library_channels(r: Recording, channels: list[str], rate_hz: float) -> Recording:
    missing = [c for c in channels if c not in r.channels]
    if missing:
        raise KilomlError(f"has channels {', '.join(r.channels)}; the libraries read "
                          f"{', '.join(channels)} ({', '.join(missing)} missing)",
                          file=r.source, where=WHERE)
    off = abs(r.sample_rate_hz - rate_hz) / rate_hz
    if off > RATE_TOLERANCE:
        raise KilomlError(f"sampled at {r.sample_rate_hz:g} Hz; the libraries read "
                          f"{rate_hz:g} Hz", file=r.source, where=WHERE)
    return r if r.channels == channels else r.select_channels(channels)


def _name(source: str, folder: Path) -> str:
    """The recording's path inside the folder (its shown path when it lies elsewhere)."""
    try:
        return Path(source).resolve().relative_to(folder.resolve()).as_posix()
    except ValueError:
        return source
