"""Output folders: kiloml replaces or writes into only folders it made itself.

A run, a search and ``kiloml model compile`` each write a folder. A run and a compile
replace theirs whole when they finish, so the folder they are given must never be, hold
or lie inside what the user owns: the data folder, the project folder, a model or profile
file. Every folder kiloml makes carries a marker file (``.kiloml-output``, JSON: what made
it, when, which version), so an existing folder can be recognized as kiloml's before
anything in it is replaced; any other existing folder that is not empty is refused.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kiloml.errors import KilomlError
from kiloml.project import LoadedProject
from kiloml.version import __version__

MARKER_FILE = ".kiloml-output"
KINDS = {"run": "a run folder", "search": "a search folder",
         "model-compile": "a `kiloml model compile` folder",
         "library": "a library folder (kiloml.Library.save)",
         "fleet-simulate": "a `kiloml fleet simulate` folder",
         "diff": "a `kiloml diff` folder"}


@dataclass(frozen=True)
class Protected:
    """Something of the user's that an output folder must leave alone."""

    what: str  # "the data folder", "the project file" ...
    path: Path
    folder: bool  # a folder: an output may not lie inside it either (unless inside_ok)
    inside_ok: bool = False  # the project folder: build/ inside it is the usual place


def _resolved(path: Path) -> Path:
    return Path(os.path.abspath(path)).resolve()


def project_inputs(project: LoadedProject) -> list[Protected]:
    """What a project's output folders must leave alone: the project folder and file, the
    data folder (or file), an imported model and a target profile file."""
    cfg = project.config
    out = [Protected("the project folder", project.root, folder=True, inside_ok=True),
           Protected("the project file", project.path, folder=False)]
    if cfg.data.path:
        data = project.resolve(cfg.data.path)
        folder = not data.is_file()
        out.append(Protected("the data folder" if folder else "the data file", data, folder))
    model_path = getattr(cfg.model, "path", None)
    if model_path:
        out.append(Protected("the model file", project.resolve(model_path), folder=False))
    if cfg.target.name.endswith(".toml"):
        out.append(Protected("the target profile", project.resolve(cfg.target.name),
                             folder=False))
    return out


def marker_kind(folder: Path) -> str | None:
    """What made this folder (a key of KINDS), or None when it is not kiloml's."""
    try:
        info = json.loads((folder / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    kind = info.get("kind") if isinstance(info, dict) else None
    return kind if kind in KINDS else None


def mark(folder: Path, kind: str) -> None:
    """Write the marker into a folder kiloml is making."""
    assert kind in KINDS, kind
    (folder / MARKER_FILE).write_text(json.dumps({
        "kind": kind, "kiloml_version": __version__,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}) + "\n",
        encoding="utf-8")


def check_output_folder(out: Path, kind: str, protected: Sequence[Protected], *,
                        name: str, file: str | Path | None = None,
                        line: int | None = None) -> None:
    """Refuse an output folder that would delete or overwrite what kiloml did not make.
    ``name`` says where the folder was set ("[output] dir", "--out" ...)."""
    target = _resolved(out)
    shown = f"'{out}'"
    for p in protected:
        path = _resolved(p.path)
        problem = None
        if target == path:
            problem = f"is {p.what}"
        elif path.is_relative_to(target):
            problem = f"contains {p.what} ({p.path})"
        elif p.folder and not p.inside_ok and target.is_relative_to(path):
            raise KilomlError(f"{shown} lies inside {p.what} ({p.path}): the next run would "
                              f"read kiloml's own files as input; choose a folder outside it",
                              file=file, line=line, where=name)
        if problem:
            raise KilomlError(f"{shown} {problem}; kiloml replaces its output folder whole "
                              f"and would delete it: choose a folder of its own",
                              file=file, line=line, where=name)
    if not target.exists():
        return
    if not target.is_dir():
        raise KilomlError(f"{shown} exists and is not a folder", file=file, line=line,
                          where=name)
    found = marker_kind(target)
    if found == kind:
        return
    if found is not None:
        raise KilomlError(f"{shown} is {KINDS[found]}, not {KINDS[kind]}; choose another "
                          f"folder", file=file, line=line, where=name)
    try:
        empty = not any(target.iterdir())
    except OSError as exc:
        raise KilomlError(f"{shown} cannot be read: {exc.strerror or exc}", file=file,
                          line=line, where=name) from None
    if not empty:
        raise KilomlError(f"{shown} exists and is not a kiloml output folder (no "
                          f"{MARKER_FILE} in it); kiloml only replaces folders it made: "
                          f"remove it or choose another folder", file=file, line=line,
                          where=name)


def require_kiloml_folder(folder: Path, kind: str, *, what: str) -> None:
    """A folder a command reads and updates (``kiloml verify``, ``stress``, ``check-data``
    on a run folder) must be one kiloml made."""
    if not folder.is_dir():
        raise KilomlError(f"{what} not found; run `kiloml run` first", file=folder)
    if marker_kind(folder) != kind:
        raise KilomlError(f"not {KINDS[kind]} made by kiloml (no {MARKER_FILE}; a folder "
                          f"from an older kiloml must be made again with `kiloml run`)",
                          file=folder)


def check_output_file(path: Path, protected: Sequence[Protected], *, name: str) -> None:
    """An output file named on the command line must not be one of the command's inputs
    nor lie inside a protected folder's files it reads."""
    target = _resolved(path)
    for p in protected:
        folder = _resolved(p.path)
        if target == folder:
            raise KilomlError(f"'{path}' is {p.what}; write the output to another file",
                              where=name)
        if p.folder and not p.inside_ok and target.is_relative_to(folder):
            raise KilomlError(f"'{path}' lies inside {p.what} ({p.path}): it would replace "
                              f"or add to the input; write the output elsewhere", where=name)
    if target.is_dir():
        raise KilomlError(f"'{path}' is a folder; give a file name", where=name)


def make_staging(out: Path, kind: str) -> Path:
    """A new marked folder next to ``out`` to write into; moved into place by
    ``replace_folder`` when everything is written."""
    import tempfile

    parent = _resolved(out).parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp makes it private; the result should not be
    mark(staging, kind)
    return staging


def replace_folder(staging: Path, out: Path, kind: str) -> None:
    """Move a finished staging folder to ``out``, replacing an earlier folder of the same
    kind. The check is repeated here: the folder may have changed while the job ran."""
    out = _resolved(out)
    old = None
    if out.exists():
        if marker_kind(out) != kind and any(out.iterdir()):
            raise KilomlError(f"'{out}' changed while kiloml ran and is no longer "
                              f"{KINDS[kind]}; the results are left in {staging}")
        old = out.with_name(f".{out.name}.old-{time.time_ns()}")
        out.rename(old)
    staging.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
