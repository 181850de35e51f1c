"""A package's files against its manifest (``kiloml registry verify``): every file
re-hashed, none missing, none extra, the folder named by the manifest's own SHA-256 and
the version file naming that folder (docs/registry.md, Layout)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from kiloml.errors import KilomlError
from kiloml.persist.archive import describe
from kiloml.registry.store import MANIFEST_FILE, SHA256, Registry, check_fields, read_object

MANIFEST_FORMAT = 1
MANIFEST_FIELDS = ("format", "version", "files", "model_id", "interface_hash",
                   "kiloml_version")
CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    try:
        with path.open("rb") as f:
            while block := f.read(CHUNK):
                h.update(block)
    except OSError as exc:
        raise KilomlError(f"cannot read: {exc.strerror or exc}", file=path) from None
    return h.hexdigest()


def package_files(folder: Path) -> list[str]:
    """Every file under ``folder`` but the manifest, as POSIX paths relative to it; a
    symbolic link is refused (a package holds regular files only)."""
    out = []
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            raise KilomlError("is a symbolic link; a package holds regular files only",
                              file=path)
        if path.is_file():
            rel = path.relative_to(folder).as_posix()
            if rel != MANIFEST_FILE:
                out.append(rel)
        elif not path.is_dir():
            raise KilomlError("is not a regular file; a package holds regular files only",
                              file=path)
    return out


def hash_files(folder: Path) -> dict[str, str]:
    """The manifest's ``files``: path -> SHA-256 of every file but the manifest."""
    return {rel: file_sha256(folder / rel) for rel in package_files(folder)}


@dataclass(frozen=True)
class Verified:
    version: str
    package: str  # the SHA-256 the folder is named by
    n_files: int
    n_bytes: int


def verify_version(reg: Registry, version: str) -> Verified:
    """Check one version's package; the first fault is a KilomlError naming the file."""
    info = reg.version_info(version)
    folder = reg.packages / info["package"]
    of = f"the manifest of version {version}"
    if not folder.is_dir():
        raise KilomlError(f"the package version {version} names is missing",
                          file=reg.version_file(version))
    manifest_path = folder / MANIFEST_FILE
    if not manifest_path.is_file():
        raise KilomlError(f"{of} is missing", file=manifest_path)
    if file_sha256(manifest_path) != info["package"]:
        raise KilomlError(f"SHA-256 is not the name of its package folder: {of} was "
                          "changed", file=manifest_path)
    manifest = read_object(manifest_path)
    check_manifest(manifest, manifest_path, version, info)
    files: dict[str, str] = manifest["files"]
    present = set(package_files(folder))
    extra = sorted(present - set(files))
    if extra:
        raise KilomlError(f"is not listed in {of} (an extra file)", file=folder / extra[0])
    n_bytes = 0
    for rel, digest in sorted(files.items()):
        path = folder / rel
        if rel not in present:
            raise KilomlError(f"is listed in {of} but missing", file=path)
        if file_sha256(path) != digest:
            raise KilomlError(f"SHA-256 does not match {of}", file=path)
        n_bytes += path.stat().st_size
    return Verified(version, info["package"], len(files), n_bytes)


def intact_package(reg: Registry, version: str) -> Path:
    """The package folder of ``version``, checked whole first: what the gate, the diff and
    promote read must be what was released."""
    verify_version(reg, version)
    return reg.package_dir(version)


def check_manifest(manifest: dict, path: Path, version: str, info: dict) -> None:
    check_fields(manifest, MANIFEST_FIELDS, path)
    if manifest["format"] != MANIFEST_FORMAT:
        raise KilomlError(f"manifest format {describe(manifest['format'])}; this kiloml "
                          f"reads format {MANIFEST_FORMAT}", file=path, where="format")
    for key in ("version", "model_id", "interface_hash"):
        if manifest[key] != info[key]:
            raise KilomlError(f"{describe(manifest[key])} is not the version file's "
                              f"{describe(info[key])}", file=path, where=key)
    if manifest["version"] != version:
        raise KilomlError(f"is the manifest of {describe(manifest['version'])}, not {version}",
                          file=path, where="version")
    files = manifest["files"]
    if not isinstance(files, dict) or not files:
        raise KilomlError(f"expected an object of paths and SHA-256s, got {describe(files)}",
                          file=path, where="files")
    for rel, digest in files.items():
        parts = rel.split("/")
        if rel.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in rel:
            raise KilomlError(f"{rel!r} is not a plain relative path inside the package",
                              file=path, where="files")
        if not isinstance(digest, str) or not SHA256.fullmatch(digest):
            raise KilomlError(f"expected a SHA-256, got {describe(digest)}", file=path,
                              where=f"files.{rel}")


def verify_aliases(reg: Registry) -> None:
    """Every alias names a released version."""
    for name, version in reg.aliases().items():
        if version is not None and not reg.has_version(version):
            raise KilomlError(f"points at version {version}, which is not released here",
                              file=reg.aliases_file, where=name)
