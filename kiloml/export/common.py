"""What every export format shares: the run folder read and checked, the library's public
names, the held-out slice the examples stream, and the package folder written whole.

An export copies the run's generated library (``firmware/``) as it is, every file of it
but the library's own CMakeLists.txt (each package brings its build files), so files
added to the library later (new runtime modules, headers) travel without a change here.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kiloml.errors import KilomlError

FIRMWARE_DIR = "firmware"
# The library's own add_subdirectory() build file: replaced by each package's build files.
NOT_SHIPPED = {"CMakeLists.txt"}
EXAMPLE_MAX_SAMPLES = 4000  # raw samples of held-out recordings embedded in an example
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,49}$")


@dataclass(frozen=True)
class LibraryApi:
    """The public names of a generated library (the symbol prefix is configurable)."""

    prefix: str  # "kml": kml_classify, kml_result_t ...
    header: str  # the model header a firmware includes

    @property
    def macro(self) -> str:
        return self.prefix.upper()

    def fn(self, name: str) -> str:
        return f"{self.prefix}_{name}"

    def const(self, name: str) -> str:
        return f"{self.macro}_{name}"

    @property
    def result_t(self) -> str:
        return f"{self.prefix}_result_t"


_PUSH_RE = re.compile(r"\bint32_t\s+([A-Za-z_][A-Za-z0-9_]*)_push_sample\s*\(")


def library_api(firmware: Path, metrics: dict) -> LibraryApi:
    """The prefix and model header of the run's library: metrics.json's library section
    when the run records them, else the header declaring ``<prefix>_push_sample``, else
    kiloml's defaults (kml, kiloml_model.h)."""
    lib = metrics.get("library")
    if isinstance(lib, dict) and isinstance(lib.get("prefix"), str) and \
            isinstance(lib.get("header"), str) and (firmware / lib["header"]).is_file():
        return LibraryApi(lib["prefix"], lib["header"])
    for header in sorted(firmware.glob("*.h")):
        match = _PUSH_RE.search(header.read_text(encoding="utf-8", errors="replace"))
        if match:
            return LibraryApi(match.group(1), header.name)
    return LibraryApi("kml", "kiloml_model.h")


@dataclass(frozen=True)
class PackageMeta:
    """What package registries ask for beyond the library itself."""

    name: str
    version: str
    author: str
    url: str


@dataclass
class HeldOut:
    """Held-out recordings (raw samples, as a firmware pushes them) and what Python decided
    on every window the streaming API reports in them."""

    recordings: list[np.ndarray]  # float32 [n_i, C] each
    window_recording: np.ndarray  # int64 [M]
    window_last_sample: np.ndarray  # int64 [M]: index in its recording
    labels: np.ndarray  # int64 [M]: Python's decisions
    device_scores: np.ndarray | None  # float32 [M, K]: the library's scores, exactly

    @property
    def n_samples(self) -> int:
        return sum(len(r) for r in self.recordings)


def held_out(reference, max_samples: int | None = None,
             max_recordings: int | None = None) -> HeldOut:
    """The reference's streamed recordings, at most ``max_samples`` raw samples in all (the
    last recording taken cut short; windows past the cut are dropped)."""
    recs = reference.stream_recordings
    if max_recordings is not None:
        recs = recs[:max_recordings]
    kept: list[np.ndarray] = []
    room = max_samples if max_samples is not None else sum(len(r) for r in recs)
    for r in recs:
        if room <= 0:
            break
        kept.append(np.ascontiguousarray(r[:room], dtype=np.float32))
        room -= len(kept[-1])
    rec, last = reference.stream_recording, reference.stream_last_sample
    n_kept = np.array([len(r) for r in kept], dtype=np.int64)
    select = rec < len(kept)
    select[select] = last[select] < n_kept[rec[select]]
    scores = reference.stream_device_scores
    return HeldOut(kept, rec[select], last[select], reference.stream_labels[select],
                   None if scores is None else scores[select])


@dataclass
class RunSource:
    """A finished `kiloml run` folder, read for an export."""

    folder: Path
    pipeline: object  # kiloml.pipeline.Pipeline
    metrics: dict
    reference: object  # kiloml.verify.reference.Reference
    api: LibraryApi
    files: list[Path] = field(default_factory=list)  # the library files shipped

    @property
    def firmware(self) -> Path:
        return self.folder / FIRMWARE_DIR

    @property
    def sources(self) -> list[str]:
        return sorted(p.name for p in self.files if p.suffix == ".c")

    @property
    def headers(self) -> list[str]:
        return sorted(p.name for p in self.files if p.suffix == ".h")


def read_run(folder: Path) -> RunSource:
    """The run folder with its library checked byte for byte against what its pipeline
    generates (so the parity evidence the package carries is about these files)."""
    from kiloml.outputs import require_kiloml_folder
    from kiloml.persist.pipeline_state import PIPELINE_FILE, load_pipeline
    from kiloml.results import METRICS_FILE, read_metrics
    from kiloml.verify.command import generated_library
    from kiloml.verify.reference import REFERENCE_FILE, Reference

    folder = Path(folder)
    if not folder.is_dir():
        raise KilomlError("not found: give the output folder of `kiloml run` (its [output] "
                          "dir)", file=folder)
    require_kiloml_folder(folder, "run", what="the run folder")
    needed = [folder / PIPELINE_FILE, folder / METRICS_FILE, folder / "verify" / REFERENCE_FILE,
              folder / FIRMWARE_DIR]
    missing = [p for p in needed if not p.exists()]
    if missing:
        raise KilomlError(f"not a complete run folder ({missing[0].name} is missing); run "
                          f"`kiloml run` again", file=folder)
    pipeline = load_pipeline(folder / PIPELINE_FILE)
    reference = Reference.load(folder / "verify" / REFERENCE_FILE, pipeline)
    metrics = read_metrics(folder)
    with tempfile.TemporaryDirectory(prefix="kiloml-export-") as tmp:
        generated_library(pipeline, folder / FIRMWARE_DIR, Path(tmp) / FIRMWARE_DIR)
    files = sorted(p for p in (folder / FIRMWARE_DIR).iterdir()
                   if p.is_file() and p.name not in NOT_SHIPPED)
    api = library_api(folder / FIRMWARE_DIR, metrics)
    return RunSource(folder, pipeline, metrics, reference, api, files)


def package_name(run: RunSource, name: str | None) -> str:
    """A name valid as a CMake package and target, an Arduino, PlatformIO and Zephyr
    library: letters, digits and underscores, starting with a letter."""
    if name is not None:
        if not NAME_RE.match(name):
            raise KilomlError(f"'{name}' is not a package name: letters, digits and "
                              f"underscores, starting with a letter, at most 50",
                              where="--name")
        return name
    base = re.sub(r"[^A-Za-z0-9_]+", "_", run.pipeline.name).strip("_") or "model"
    if not base[0].isalpha():
        base = f"model_{base}"
    return base[:50]


def check_export_folder(out: Path) -> None:
    """An export goes into a new or empty folder: a package holds nothing else."""
    if out.exists():
        if not out.is_dir():
            raise KilomlError(f"'{out}' exists and is not a folder", where="--out")
        if any(out.iterdir()):
            raise KilomlError(f"'{out}' exists and is not empty; kiloml export writes a "
                              f"package into a new or empty folder", where="--out")


def write_package(out: Path, files: dict[str, str | bytes | Path]) -> None:
    """Write ``files`` (relative path -> text, bytes or a file to copy) into a staging
    folder beside ``out``, then move it into place: nothing half-written on an error."""
    check_export_folder(out)
    out = Path(out).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        for rel, content in sorted(files.items()):
            target = staging / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, Path):
                shutil.copyfile(content, target)
            elif isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content, encoding="utf-8")
        staging.chmod(0o755)
        check_export_folder(out)  # again: it may have changed meanwhile
        if out.exists():
            out.rmdir()  # empty (checked)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def umbrella_header(run: RunSource, name: str) -> str:
    """``<name>.h``: the header Arduino and PlatformIO find a library by."""
    from kiloml.codegen.library import SPDX_LINE

    guard = f"{name.upper()}_H"
    return (f"{SPDX_LINE}\n/* The {name} library (kiloml project {run.pipeline.name}): the model "
            f"API is in {run.api.header}. */\n#ifndef {guard}\n#define {guard}\n\n"
            f'#include "{run.api.header}"\n\n#endif /* {guard} */\n')


def library_files(run: RunSource, folder: str) -> dict[str, Path]:
    return {f"{folder}/{p.name}": p for p in run.files}


def board_files(folder: str) -> dict[str, Path]:
    from kiloml.board import mps2_files

    return {f"{folder}/{p.name}": p for p in mps2_files()}
