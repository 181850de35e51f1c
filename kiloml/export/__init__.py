"""`kiloml export`: a run's verified library as a firmware package (CMake, Arduino,
PlatformIO, Zephyr), with its examples, README and parity evidence."""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from pathlib import Path

from kiloml.errors import KilomlError

# format -> module of kiloml.export that makes its files
FORMATS = {"cmake": "cmake", "arduino": "arduino", "platformio": "platformio",
           "zephyr": "zephyr"}
VERSION_RE = re.compile(r"^\d+\.\d+\.\d+$")
DEFAULT_AUTHOR = "kiloml export (set --author)"


@dataclass
class ExportOutcome:
    out: Path
    format: str
    name: str
    n_files: int
    n_windows: int  # held-out windows the examples carry
    n_samples: int


def export_run(run_dir: Path, fmt: str, out: Path, *, name: str | None = None,
               version: str = "0.1.0", author: str = DEFAULT_AUTHOR,
               url: str | None = None) -> ExportOutcome:
    """Write the run's library as a ``fmt`` package into ``out`` (new or empty). ``url``
    defaults to a placeholder on example.com (a reserved documentation domain): the
    registries require one, and kiloml cannot know where the package will live."""
    from kiloml.export.common import (
        EXAMPLE_MAX_SAMPLES,
        PackageMeta,
        check_export_folder,
        held_out,
        package_name,
        read_run,
        write_package,
    )

    if fmt not in FORMATS:
        raise KilomlError(f"unknown export format '{fmt}'; choose one of "
                          f"{', '.join(FORMATS)}", where="--format")
    if not VERSION_RE.match(version):
        raise KilomlError(f"'{version}' is not a version MAJOR.MINOR.PATCH",
                          where="--package-version")
    check_export_folder(out)  # before the (slower) reading of the run
    run = read_run(run_dir)
    package = package_name(run, name)
    data = held_out(run.reference, EXAMPLE_MAX_SAMPLES)
    module = importlib.import_module(f"kiloml.export.{FORMATS[fmt]}")
    if any(c in author for c in "\n\r") or (url is not None and any(c in url for c in " \n\r")):
        raise KilomlError("--author and --url must be one line (a URL without spaces)",
                          where="--author" if "\n" in author else "--url")
    meta = PackageMeta(package, version, author, url or f"https://example.com/{package}")
    files = module.files(run, meta, data)
    write_package(out, files)
    return ExportOutcome(out, fmt, package, len(files), len(data.labels), data.n_samples)
