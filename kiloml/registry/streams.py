"""What the devices would decide: a package's C library (its firmware/, as released)
compiled with the host gcc and fed the recordings sample by sample (kml_push_sample, then
kml_decide_latest at every completed window, kml_reset before each recording), as the
verification harness does (kiloml.verify.host)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kiloml.codegen.library import FirmwareLibrary
from kiloml.codegen.prefix import model_source_name
from kiloml.errors import KilomlError
from kiloml.registry.contents import Package
from kiloml.verify.host import build_host, run_stream


@dataclass
class Decisions:
    """One library's decisions on the recordings, in the order it made them."""

    class_names: list[str]
    recording: np.ndarray  # int64 [M]: the recording's index
    sample: np.ndarray  # int64 [M]: the raw sample whose arrival completed the window
    decision: np.ndarray  # int64 [M]: kml_decide_latest's decision (-1: uncertain)
    changed: np.ndarray  # int64 [M]: the decision switched at this window
    top_score: np.ndarray  # float32 [M]: the highest smoothed score (the confidence)


def package_library(package: Package) -> FirmwareLibrary:
    """The package's firmware/ as a library to compile (its own prefix and files)."""
    firmware, prefix = package.firmware, package.pipeline.library_prefix
    if not (firmware / model_source_name(prefix)).is_file():
        raise KilomlError(f"package {package.label} has no {model_source_name(prefix)} in "
                          "its firmware/", file=firmware)
    return FirmwareLibrary(firmware, sorted(firmware.glob("*.c")), sorted(firmware.glob("*.h")),
                           len(package.pipeline.feature_names()), prefix)


def stream_decisions(package: Package, recordings: list[np.ndarray], work: Path) -> Decisions:
    """Every recording ([n, channels] raw float32 samples) streamed through the package's
    library built in ``work``."""
    p = package.pipeline
    exe = build_host(package_library(package), work)
    events = run_stream(exe, recordings, p.n_classes, work, monitor=p.monitor is not None)
    smoothed = events.smoothed.reshape(len(events.decision), p.n_classes)
    return Decisions(list(p.class_names), events.recording.astype(np.int64),
                     events.last_sample.astype(np.int64), events.decision.astype(np.int64),
                     events.changed.astype(np.int64),
                     smoothed.max(axis=1).astype(np.float32))
