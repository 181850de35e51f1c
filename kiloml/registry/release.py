"""`kiloml release`: a finished run as an immutable, content-addressed package of a
registry (docs/registry.md, Layout).

Under the registry's lock: the package is written into a staging folder inside
packages/, hashed (manifest.json lists every other file's SHA-256), renamed to its
manifest's SHA-256, and only then is versions/<X.Y.Z>.json written (atomically). A crash
leaves no version, only an unreferenced folder that the next release removes."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from kiloml.errors import KilomlError
from kiloml.persist.pipeline_state import PIPELINE_FILE
from kiloml.registry.card import CARD_JSON, CARD_MD, card_markdown, model_card
from kiloml.registry.integrity import MANIFEST_FORMAT, file_sha256, hash_files
from kiloml.registry.run_folder import FIRMWARE_DIR, PIPELINE_ARRAYS, FinishedRun, read_run
from kiloml.registry.semver import parse_version
from kiloml.registry.store import (
    MANIFEST_FILE,
    MARKER_FILE,
    SHA256,
    Registry,
    require_usable,
    write_json,
)
from kiloml.results import METRICS_FILE

PROJECT_FILE = "project.toml"
REFERENCE_FILE = "reference.npz"
STAGING_PREFIX = ".staging-"
MAX_NOTES = 4000
FILE_MODE = 0o444  # a package is never edited: its files are read-only


@dataclass(frozen=True)
class Released:
    registry: Path
    version: str
    package: str  # the SHA-256 of its manifest, the package folder's name
    folder: Path
    n_files: int
    device_parity: bool
    blob: str | None = None  # "signed" / "unsigned" when the package holds model.kmlb


BLOB_FILE = "model.kmlb"


def parameter_blob(run_dir: Path, version: str, signing_key: Path | None) -> bytes | None:
    """model.kmlb of the run (docs/blob_format.md), signed when a key is given, its
    anti-rollback counter from the version; None when the library takes no blob. Made
    before anything is written, so a bad key or version refuses the release whole."""
    from kiloml.blob.build import blob_bytes
    from kiloml.blob.format import counter_of

    try:
        counter = counter_of(version)
        blob = blob_bytes(run_dir, signing_key=signing_key, counter=counter)
    except KilomlError as exc:
        exc.where = exc.where or ("--signing-key" if signing_key is not None else "--version")
        raise
    if blob is None and signing_key is not None:
        raise KilomlError("the run's library takes no parameter blob (a table-style forest "
                          "built with [library] updatable = true does): nothing to sign",
                          where="--signing-key")
    return blob


def add_extra_files(staging: Path, blob: bytes | None) -> None:
    """Files a package holds beyond the run's own, written into ``staging`` before it is
    hashed: the parameter blob, when the library takes one."""
    if blob is not None:
        (staging / BLOB_FILE).write_bytes(blob)


def release(run_dir: str | Path, registry: str | Path, version: str, *,
            notes: str | None = None, project: str | Path | None = None,
            allow_no_device_parity: bool = False, signing_key: str | Path | None = None
            ) -> Released:
    """Release the run in ``run_dir`` as ``version`` of ``registry`` (made when missing).
    Every refusal is a KilomlError raised before anything is written."""
    parse_version(version)
    if notes is not None and len(notes) > MAX_NOTES:
        raise KilomlError(f"{len(notes):,} characters; at most {MAX_NOTES:,}", where="--notes")
    registry = Path(registry)
    require_usable(registry)
    if (registry / MARKER_FILE).exists():
        _refuse_existing(Registry.open(registry), version)
    run = read_run(Path(run_dir), None if project is None else Path(project),
                   allow_no_device_parity=allow_no_device_parity)
    blob = parameter_blob(run.folder, version,
                          None if signing_key is None else Path(signing_key))
    reg = Registry.open_or_create(registry)
    with reg.locked():
        _refuse_existing(reg, version)  # again: another release may have made it meanwhile
        remove_unreferenced(reg)
        released = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        try:
            staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=reg.packages))
        except OSError as exc:
            raise KilomlError(f"cannot write: {exc.strerror or exc}", file=reg.packages) from None
        try:
            n_files = write_package(run, staging, version, notes, released, blob)
            package = file_sha256(staging / MANIFEST_FILE)
            folder = reg.packages / package
            if folder.exists():  # a crashed release of this very package: unreferenced
                shutil.rmtree(folder)
            os.rename(staging, folder)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        write_json(reg.version_file(version), {
            "version": version, "package": package, "released_utc": released,
            "notes": notes, "model_id": run.model_id, "interface_hash": run.interface_hash})
    signed = signing_key is not None
    return Released(reg.path, version, package, folder, n_files, run.device_parity,
                    None if blob is None else "signed" if signed else "unsigned")


def _refuse_existing(reg: Registry, version: str) -> None:
    if reg.has_version(version):
        raise KilomlError(f"version {version} already exists (released "
                          f"{reg.version_info(version)['released_utc']}); a version is "
                          "never replaced: release a new one", file=reg.path)


def write_package(run: FinishedRun, staging: Path, version: str, notes: str | None,
                  released: str, blob: bytes | None = None) -> int:
    """Every file of the package into ``staging``, the manifest last; returns how many
    files the manifest lists."""
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp makes it private
    firmware = staging / FIRMWARE_DIR
    firmware.mkdir()
    for name in run.firmware_files:
        shutil.copyfile(run.firmware / name, firmware / name)
    for source, name in ((run.folder / METRICS_FILE, METRICS_FILE),
                         (run.reference, REFERENCE_FILE),
                         (run.folder / PIPELINE_FILE, PIPELINE_FILE),
                         (run.folder / PIPELINE_ARRAYS, PIPELINE_ARRAYS),
                         (run.project.path, PROJECT_FILE)):
        shutil.copyfile(source, staging / name)
    card = model_card(run.metrics, version=version, notes=notes, released_utc=released,
                      model_id=run.model_id, interface_hash=run.interface_hash)
    write_json(staging / CARD_JSON, card)
    (staging / CARD_MD).write_text(card_markdown(card), encoding="utf-8")
    add_extra_files(staging, blob)
    files = hash_files(staging)
    write_json(staging / MANIFEST_FILE, {
        "format": MANIFEST_FORMAT, "version": version, "files": files,
        "model_id": run.model_id, "interface_hash": run.interface_hash,
        "kiloml_version": run.metrics.get("kiloml_version")})
    for path in staging.rglob("*"):
        if path.is_file():
            path.chmod(FILE_MODE)
    return len(files)


def remove_unreferenced(reg: Registry) -> None:
    """Under the lock: staging folders of crashed releases, and packages no version names
    (a crash between the rename and the version file). Nothing is removed beyond staging
    folders while a version file cannot be read."""
    try:
        entries = list(reg.packages.iterdir())
    except FileNotFoundError:
        reg.packages.mkdir(parents=True)
        return
    for path in entries:
        if path.name.startswith(STAGING_PREFIX) and path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
    try:
        named = {reg.version_info(v)["package"] for v in reg.versions()}
    except KilomlError:
        return
    for path in entries:
        if SHA256.fullmatch(path.name) and path.is_dir() and path.name not in named:
            shutil.rmtree(path, ignore_errors=True)
