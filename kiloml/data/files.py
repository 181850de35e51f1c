"""Opening the user's files safely: only regular files are read.

A FIFO would block a read forever, a device (/dev/zero) never ends, a socket cannot
be opened, a dangling or looping symbolic link has nothing behind it. Each is one
line naming the file and what it is. The file is opened without blocking and checked
with fstat on the open descriptor, so a path swapped for a FIFO between a check and
the read cannot hang the run either.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import stat
from pathlib import Path
from typing import BinaryIO

from kiloml.errors import KilomlError


def what_is(path: str | Path) -> str | None:
    """None for a regular file (symbolic links followed), else what the path is."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return _stat_failure(Path(path), exc)
    return _kind(mode)


def _kind(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder, not a file"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe), not a file: reading it would wait for a writer"
    if stat.S_ISSOCK(mode):
        return "a socket, not a file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device, not a file"
    return "not a regular file"


def _stat_failure(path: Path, exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "a symbolic link that loops (it leads back to itself)"
    if exc.errno == errno.ENOENT:
        if os.path.lexists(path):
            return f"a broken symbolic link (to {os.readlink(path)!r}, which does not exist)"
        return "not found"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "not readable (permission denied)"
    if exc.errno == errno.ENOTDIR:
        return "not found (a part of the path is a file, not a folder)"
    if exc.errno == errno.ENAMETOOLONG:
        return "a path too long for the file system"
    return f"not readable ({exc.strerror or exc})"


def open_regular(path: str | Path, display: str | Path | None = None) -> BinaryIO:
    """The file opened for binary reading, or a KilomlError saying what it is instead."""
    shown = display if display is not None else path
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a socket (or a FIFO's peer) cannot be opened
            raise KilomlError(what_is(path) or "cannot be opened", file=shown) from None
        raise KilomlError(f"is {_stat_failure(Path(path), exc)}"
                          if exc.errno != errno.ENOENT or os.path.lexists(path)
                          else "file not found", file=shown) from None
    try:
        kind = _kind(os.fstat(fd).st_mode)
        if kind is not None:
            raise KilomlError(f"is {kind}", file=shown)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | Path, display: str | Path | None, limit_bytes: int,
                 what: str = "file") -> bytes:
    """The whole file, if it is a regular file of at most ``limit_bytes``."""
    with open_regular(path, display) as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit_bytes:
            raise KilomlError(f"the {what} is {size:,} bytes, more than kiloml reads "
                              f"({limit_bytes:,})", file=display if display is not None
                              else path)
        try:
            data = f.read(limit_bytes + 1)
        except OSError as exc:
            raise KilomlError(f"cannot read: {exc.strerror or exc}",
                              file=display if display is not None else path) from None
        if len(data) > limit_bytes:  # it grew while being read
            raise KilomlError(f"the {what} is more than kiloml reads ({limit_bytes:,} bytes)",
                              file=display if display is not None else path)
        return data


_BOMS = ((b"\x00\x00\xfe\xff", "UTF-32"), (b"\xff\xfe\x00\x00", "UTF-32"),
         (b"\xfe\xff", "UTF-16"), (b"\xff\xfe", "UTF-16"))


def decode_utf8(raw: bytes, display: str | Path, what: str = "file") -> str:
    """UTF-8 text (a UTF-8 byte-order mark is dropped). Another encoding, NUL bytes or an
    invalid byte is one line with the line and column, saying to save it as UTF-8."""
    for bom, name in _BOMS:
        if raw.startswith(bom):
            raise KilomlError(f"the {what} is {name} text (byte-order mark); save it as UTF-8",
                              file=display)
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    nul = raw.find(b"\x00")
    if nul >= 0:
        line, column = _position(raw, nul)
        hint = ("UTF-16 text without a byte-order mark?" if raw.count(0) > len(raw) // 4
                else "a binary file?")
        raise KilomlError(f"a NUL byte at column {column}: the {what} is not text ({hint}); "
                          f"save it as UTF-8", file=display, line=line)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column = _position(raw, exc.start)
        raise KilomlError(f"byte 0x{raw[exc.start]:02x} at column {column} is not UTF-8 (the "
                          f"{what} looks like Latin-1 / Windows-1252 or another encoding); "
                          f"save it as UTF-8", file=display, line=line) from None


def _position(raw: bytes, offset: int) -> tuple[int, int]:
    """1-based line and column (in bytes) of a byte offset."""
    start = raw.rfind(b"\n", 0, offset) + 1
    return raw.count(b"\n", 0, offset) + 1, offset - start + 1


MAX_DEPTH = 64  # folder levels below the data folder
MAX_ENTRIES = 2_000_000  # directory entries looked at while listing one data folder


def find_files(base: Path, pattern: str) -> list[Path]:
    """Paths below ``base`` whose relative path matches ``pattern`` (glob segments;
    ``**`` is any number of folders), sorted. Symbolic links to folders are followed
    (pathlib's glob silently does not); a link leading back into its own ancestry is an
    error naming it, as is the same file reached twice."""
    segments = tuple(Path(pattern).parts)
    out: list[Path] = []
    seen: dict[str, Path] = {}
    entries = 0
    stack: list[tuple[Path, tuple[str, ...], tuple[str, ...]]] = [
        (base, (), (os.path.realpath(base),))]
    while stack:
        folder, rel, ancestors = stack.pop()
        try:
            listing = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            raise KilomlError(f"cannot list the folder: {exc.strerror or exc}",
                              file=folder) from None
        entries += len(listing)
        if entries > MAX_ENTRIES:
            raise KilomlError(f"more than {MAX_ENTRIES:,} entries below the data folder; "
                              f"point [data] path at the recordings", file=base)
        for entry in listing:
            parts = (*rel, entry.name)
            path = Path(entry.path)
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            if is_dir:
                real = os.path.realpath(path)
                if real in ancestors:
                    raise KilomlError(f"a symbolic link loop: it leads back to "
                                      f"{Path(real)}, a folder above it", file=path)
                if len(parts) < MAX_DEPTH and _may_match_below(parts, segments):
                    stack.append((path, parts, (*ancestors, real)))
            if _match(parts, segments):
                if not is_dir and what_is(path) is None:
                    real = os.path.realpath(path)
                    if real in seen:
                        raise KilomlError(f"the same file as {seen[real]} (through a symbolic "
                                          f"link): a recording must appear once", file=path)
                    seen[real] = path
                out.append(path)
    return sorted(out)


def _match(parts: tuple[str, ...], segments: tuple[str, ...]) -> bool:
    if not segments:
        return not parts
    head, rest = segments[0], segments[1:]
    if head == "**":
        return any(_match(parts[i:], rest) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], head) and _match(parts[1:], rest)


def _may_match_below(parts: tuple[str, ...], segments: tuple[str, ...]) -> bool:
    """Whether a path below the folder ``parts`` can still match."""
    if not segments:
        return False
    head, rest = segments[0], segments[1:]
    if head == "**":
        return True
    if not parts:
        return True
    return fnmatch.fnmatchcase(parts[0], head) and _may_match_below(parts[1:], rest)
