"""A registry folder read and locked (docs/registry.md, Layout and Python API).

A registry may come from someone else (it is plain files, meant for git): every JSON file
is read bounded (kiloml.persist.archive.read_json) and its fields checked before use, and
a fault is one KilomlError naming the file. Writers hold ``Registry.locked()``: an
exclusive ``fcntl.flock`` on ``REG/.lock``, re-entrant within a process."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kiloml.atomic import write_text_atomically
from kiloml.errors import KilomlError
from kiloml.outputs import KINDS, marker_kind
from kiloml.persist.archive import describe, read_json
from kiloml.registry.semver import FORM, is_version, sorted_versions

MARKER_FILE = "kiloml-registry.json"
MARKER = {"kind": "kiloml-registry", "format": 1}
PACKAGES_DIR = "packages"
VERSIONS_DIR = "versions"
GATES_DIR = "gates"
ALIASES_FILE = "aliases.json"
HISTORY_FILE = "history.jsonl"
LOCK_FILE = ".lock"
MANIFEST_FILE = "manifest.json"
ALIASES = ("production", "canary", "previous")
MAX_HISTORY_BYTES = 16 << 20
SHA256 = re.compile(r"[0-9a-f]{64}", re.ASCII)
VERSION_FIELDS = ("version", "package", "released_utc", "notes", "model_id", "interface_hash")

# the flocks this process holds: lock file -> [fd, depth]; a thread lock per file keeps
# other threads out while one holds it (flock alone would let them in: same process)
_held: dict[str, list[int]] = {}
_thread_locks: dict[str, threading.RLock] = {}
_guard = threading.Lock()


def write_json(path: Path, data: object) -> None:
    """A registry JSON file: sorted, indented, written whole or not at all."""
    write_text_atomically(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_object(path: Path) -> dict:
    """A JSON object from a registry file (bounded; one line naming the file otherwise)."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise KilomlError(f"expected a JSON object, got {describe(data)}", file=path)
    return data


def check_fields(data: dict, fields: tuple[str, ...] | list[str], path: Path) -> None:
    """Exactly ``fields``: the first missing or unknown one is named."""
    missing = [k for k in fields if k not in data]
    if missing:
        raise KilomlError(f"has no {missing[0]!r} field", file=path)
    extra = sorted(set(data) - set(fields))
    if extra:
        raise KilomlError(f"unknown field {extra[0]!r}", file=path)


@dataclass(frozen=True)
class Registry:
    """One registry folder. Make it with ``Registry.open`` or ``Registry.create``."""

    path: Path

    # --- opening and creating ---------------------------------------------------

    @classmethod
    def open(cls, path: str | Path) -> Registry:
        """An existing registry; a KilomlError when ``path`` is not one."""
        path = Path(path)
        marker = path / MARKER_FILE
        if not path.is_dir():
            raise KilomlError("no registry here (no such folder)" if not path.exists()
                              else "not a kiloml registry (not a folder)", file=path)
        if not marker.is_file():
            raise KilomlError(f"not a kiloml registry (no {MARKER_FILE})", file=path)
        data = read_object(marker)
        if data.get("kind") != MARKER["kind"]:
            raise KilomlError(f"not a kiloml registry (kind = {describe(data.get('kind'))})",
                              file=marker, where="kind")
        if data.get("format") != MARKER["format"]:
            raise KilomlError(f"registry format {describe(data.get('format'))}; this kiloml "
                              f"reads format {MARKER['format']}", file=marker, where="format")
        return cls(path)

    @classmethod
    def create(cls, path: str | Path) -> Registry:
        """A new registry in a missing or empty folder. Made beside it and renamed into
        place, so a concurrent creator of the same registry finds it whole (and opens it)."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise KilomlError("exists and is not a folder; a registry is a folder", file=path)
        if (path / MARKER_FILE).exists():
            raise KilomlError("is already a kiloml registry", file=path)
        _refuse_not_empty(path)
        _refuse_inside_output(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.creating-", dir=path.parent))
        except OSError as exc:
            raise KilomlError(f"cannot create the registry: {exc.strerror or exc}",
                              file=path) from None
        try:
            umask = os.umask(0)
            os.umask(umask)
            staging.chmod(0o777 & ~umask)  # mkdtemp's folder is private; a registry is not
            for sub in (PACKAGES_DIR, VERSIONS_DIR, GATES_DIR):
                (staging / sub).mkdir()
            write_json(staging / ALIASES_FILE, {name: None for name in ALIASES})
            write_text_atomically(staging / HISTORY_FILE, "")
            write_json(staging / MARKER_FILE, MARKER)
            try:
                os.rename(staging, path)  # replaces a missing or empty folder, atomically
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                if (path / MARKER_FILE).exists():  # made by another writer meanwhile
                    return cls.open(path)
                _refuse_not_empty(path)
                raise
        except OSError as exc:
            raise KilomlError(f"cannot create the registry: {exc.strerror or exc}",
                              file=path) from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return cls(path)

    @classmethod
    def open_or_create(cls, path: str | Path) -> Registry:
        """The registry at ``path``, made first when the folder is missing or empty."""
        path = Path(path)
        if (path / MARKER_FILE).exists():
            return cls.open(path)
        return cls.create(path)

    # --- files --------------------------------------------------------------------

    @property
    def packages(self) -> Path:
        return self.path / PACKAGES_DIR

    def version_file(self, version: str) -> Path:
        return self.path / VERSIONS_DIR / f"{version}.json"

    def gate_file(self, version: str) -> Path:
        return self.path / GATES_DIR / f"{version}.json"

    @property
    def aliases_file(self) -> Path:
        return self.path / ALIASES_FILE

    @property
    def history_file(self) -> Path:
        return self.path / HISTORY_FILE

    # --- versions -------------------------------------------------------------------

    def versions(self) -> list[str]:
        """Every released version, ascending."""
        folder = self.path / VERSIONS_DIR
        try:
            names = [p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json")]
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise KilomlError(f"cannot read: {exc.strerror or exc}", file=folder) from None
        return sorted_versions(n for n in names if is_version(n))

    def has_version(self, version: str) -> bool:
        return is_version(version) and self.version_file(version).is_file()

    def version_info(self, version: str) -> dict:
        """versions/<X.Y.Z>.json, every field checked."""
        self.require_version(version)
        path = self.version_file(version)
        info = read_object(path)
        check_fields(info, VERSION_FIELDS, path)
        if info["version"] != version:
            raise KilomlError(f"names version {describe(info['version'])}, not {version}",
                              file=path, where="version")
        if not isinstance(info["package"], str) or not SHA256.fullmatch(info["package"]):
            raise KilomlError(f"expected a SHA-256 (64 lower-case hex digits), got "
                              f"{describe(info['package'])}", file=path, where="package")
        for key in ("released_utc", "model_id", "interface_hash"):
            if not isinstance(info[key], str):
                raise KilomlError(f"expected a string, got {describe(info[key])}", file=path,
                                  where=key)
        if info["notes"] is not None and not isinstance(info["notes"], str):
            raise KilomlError(f"expected a string or null, got {describe(info['notes'])}",
                              file=path, where="notes")
        return info

    def require_version(self, version: str) -> None:
        """A KilomlError unless ``version`` is released here (the error lists them)."""
        if not is_version(version):
            raise KilomlError(f"{version!r} is not a version ({FORM})")
        if not self.version_file(version).is_file():
            known = self.versions()
            listed = ", ".join(known[-10:]) if known else "none yet"
            raise KilomlError(f"no version {version} in this registry (its versions: "
                              f"{listed})", file=self.path)

    def package_dir(self, version: str) -> Path:
        """REG/packages/<sha>/ of a version (KilomlError if unknown or gone)."""
        folder = self.packages / self.version_info(version)["package"]
        if not folder.is_dir():
            raise KilomlError(f"the package of version {version} is missing (`kiloml "
                              "registry verify` checks a registry)", file=folder)
        return folder

    def manifest(self, version: str) -> dict:
        """The manifest.json of a version's package (its fields checked by integrity)."""
        return read_object(self.package_dir(version) / MANIFEST_FILE)

    # --- aliases ------------------------------------------------------------------

    def aliases(self) -> dict[str, str | None]:
        """production, canary and previous: a version or None."""
        path = self.aliases_file
        if not path.exists():
            return {name: None for name in ALIASES}
        data = read_object(path)
        out: dict[str, str | None] = {}
        for name in ALIASES:
            value = data.get(name)
            if value is not None and not (isinstance(value, str) and is_version(value)):
                raise KilomlError(f"expected a version or null, got {describe(value)}",
                                  file=path, where=name)
            out[name] = value
        extra = sorted(set(data) - set(ALIASES))
        if extra:
            raise KilomlError(f"unknown alias {extra[0]!r} (the aliases are "
                              f"{', '.join(ALIASES)})", file=path)
        return out

    def resolve(self, name: str) -> str:
        """A version, or an alias name, to a released version."""
        if name in ALIASES:
            version = self.aliases()[name]
            if version is None:
                raise KilomlError(f"the alias {name} points at no version yet",
                                  file=self.path)
            self.require_version(version)
            return version
        if not is_version(name):
            raise KilomlError(f"{name!r} is neither a version ({FORM}) nor an alias "
                              f"({', '.join(ALIASES)})")
        self.require_version(name)
        return name

    def history(self) -> list[dict]:
        """history.jsonl: one alias change per line, oldest first."""
        path = self.history_file
        try:
            if path.stat().st_size > MAX_HISTORY_BYTES:
                raise KilomlError(f"larger than {MAX_HISTORY_BYTES >> 20} MB", file=path)
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as exc:
            raise KilomlError(f"cannot read: {exc}", file=path) from None
        out = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except ValueError as exc:
                raise KilomlError(f"not valid JSON: {exc}", file=path, line=number) from None
            if not isinstance(entry, dict) or entry.get("alias") not in ALIASES:
                raise KilomlError("expected an object with an alias (production, canary, "
                                  "previous)", file=path, line=number)
            out.append(entry)
        return out

    # --- gate results -------------------------------------------------------------

    def gate_result(self, version: str) -> dict | None:
        """gates/<X.Y.Z>.json: the latest gate result of a version, or None (not gated)."""
        self.require_version(version)
        path = self.gate_file(version)
        if not path.exists():
            return None
        result = read_object(path)
        if not isinstance(result.get("passed"), bool):
            raise KilomlError(f"expected true or false, got {describe(result.get('passed'))}",
                              file=path, where="passed")
        if result.get("version", version) != version:
            raise KilomlError(f"is the gate result of {describe(result.get('version'))}, not "
                              f"{version}", file=path, where="version")
        return result

    def write_gate_result(self, version: str, result: dict) -> None:
        """Replace the latest gate result of a released version (under the lock)."""
        if not isinstance(result.get("passed"), bool):
            raise ValueError("a gate result has a boolean 'passed'")
        if result.get("version", version) != version:
            raise ValueError(f"a gate result of {result.get('version')} written for {version}")
        with self.locked():
            self.require_version(version)
            (self.path / GATES_DIR).mkdir(exist_ok=True)
            write_json(self.gate_file(version), result)

    # --- the writers' lock ----------------------------------------------------------

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive against every other writer of this registry (processes and threads);
        re-entrant in the thread that holds it."""
        lock = self.path / LOCK_FILE
        key = os.path.realpath(lock)
        with _guard:
            thread_lock = _thread_locks.setdefault(key, threading.RLock())
        with thread_lock:
            entry = _held.get(key)
            if entry is None:
                try:
                    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
                except OSError as exc:
                    raise KilomlError(f"cannot open the registry's lock: "
                                      f"{exc.strerror or exc}", file=lock) from None
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                except BaseException:
                    os.close(fd)
                    raise
                entry = _held[key] = [fd, 0]
            entry[1] += 1
            try:
                yield
            finally:
                entry[1] -= 1
                if entry[1] == 0:
                    del _held[key]
                    os.close(entry[0])  # releases the flock


def require_usable(path: str | Path) -> None:
    """``path`` is a registry, or a folder one can be made in (missing or empty): checked
    before a release does any work, so a refused folder costs nothing."""
    path = Path(path)
    if (path / MARKER_FILE).exists():
        Registry.open(path)
        return
    if path.exists() and not path.is_dir():
        raise KilomlError("exists and is not a folder; a registry is a folder", file=path)
    _refuse_not_empty(path)
    _refuse_inside_output(path)


def _refuse_inside_output(path: Path) -> None:
    """A registry is never made inside a folder kiloml replaces whole (a run's output)."""
    here = Path(os.path.abspath(path)).resolve()
    for folder in (here, *here.parents):
        kind = marker_kind(folder)
        if kind is not None:
            raise KilomlError(f"lies inside {KINDS[kind]} ({folder}), which kiloml replaces "
                              "whole: the registry would be deleted with it; choose a folder "
                              "outside it", file=path)


def _refuse_not_empty(path: Path) -> None:
    try:
        empty = not path.exists() or not any(path.iterdir())
    except OSError as exc:
        raise KilomlError(f"cannot be read: {exc.strerror or exc}", file=path) from None
    if not empty:
        raise KilomlError(f"exists, is not empty and is not a kiloml registry (no "
                          f"{MARKER_FILE}); give a new or empty folder", file=path)
