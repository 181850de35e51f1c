"""The two files of a saved document: ``<name>.json`` (structure, format name and version)
and ``<name>.npz`` (the arrays it refers to as ``{"$array": key}``).

Reading bounds everything: the JSON's size and nesting, the archive's member count and
sizes, each member's declared shape against its bytes; object arrays are refused before
any byte of them is read (numpy would need pickle for them). Every fault is a
KilomlError naming the file, and the field where known.
"""

from __future__ import annotations

import json
import os
import stat
import zipfile
import zlib
from pathlib import Path

import numpy as np

from kiloml.atomic import write_atomically, write_text_atomically
from kiloml.errors import KilomlError
from kiloml.npyfile import NpyError, read_data, read_header

MAX_JSON_BYTES = 256 << 20
MAX_ARRAY_BYTES = 4 << 30  # all members of one archive, uncompressed
MAX_MEMBERS = 1_000_000
ARRAY_TAG = "$array"


class ArrayBook:
    """The arrays of one document: collected by key while saving, served by key (with
    their dtype and shape checked) while loading."""

    def __init__(self, arrays: dict[str, np.ndarray] | None = None,
                 file: Path | None = None) -> None:
        self.arrays: dict[str, np.ndarray] = dict(arrays or {})
        self.file = file

    def put(self, key: str, value: np.ndarray) -> dict:
        a = np.asarray(value)
        a = a if a.flags.c_contiguous else a.copy(order="C")  # 0-d stays 0-d
        if a.dtype.hasobject:
            raise TypeError(f"{key}: an object array cannot be saved without pickle")
        if key in self.arrays:
            raise ValueError(f"{key}: saved twice")
        self.arrays[key] = a
        return {ARRAY_TAG: key}


class Document:
    """A loaded document: its file (for errors) and its arrays."""

    def __init__(self, file: Path, book: ArrayBook) -> None:
        self.file = file
        self.book = book

    def error(self, where: str, message: str) -> KilomlError:
        return KilomlError(message, file=self.file, where=where or None)

    def array(self, value: object, where: str) -> np.ndarray:
        if not (isinstance(value, dict) and len(value) == 1 and isinstance(
                value.get(ARRAY_TAG), str)):
            raise self.error(where, f"expected an array reference {{\"{ARRAY_TAG}\": key}}, "
                                    f"got {describe(value)}")
        key = value[ARRAY_TAG]
        if key not in self.book.arrays:
            name = self.book.file.name if self.book.file is not None else "the archive"
            raise self.error(where, f"refers to array '{key}', which {name} does not hold")
        return self.book.arrays[key]


def describe(value: object) -> str:
    """A short name of a JSON value's kind for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"[:60]
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return "an object" + (f" with {sorted(value)[:3]}" if value else " (empty)")
    return type(value).__name__


# --- writing -----------------------------------------------------------------------


def write_document(json_path: Path, document: dict, book: ArrayBook) -> Path:
    """The archive next to ``json_path`` (same stem, .npz) first, then the JSON, each
    written to a temporary file and renamed: a reader sees the old pair or the new."""
    npz_path = json_path.with_suffix(".npz")
    write_atomically(npz_path, lambda f: np.savez_compressed(f, **book.arrays))
    write_text_atomically(json_path, json.dumps(document, indent=1, allow_nan=False) + "\n")
    return npz_path


# --- reading -----------------------------------------------------------------------


def _regular_file(path: Path, limit: int) -> None:
    try:
        st = os.stat(path)
    except OSError as exc:
        raise KilomlError(f"cannot read: {exc.strerror or exc}", file=path) from None
    if not stat.S_ISREG(st.st_mode):
        raise KilomlError("not a regular file", file=path)
    if st.st_size > limit:
        raise KilomlError(f"{st.st_size} bytes, more than the {limit} a saved document may "
                          "have", file=path)


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not JSON (kiloml writes non-finite numbers as tags)")


def read_json(path: Path) -> object:
    """A JSON file, bounded in size and nesting."""
    _regular_file(path, MAX_JSON_BYTES)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise KilomlError(f"cannot read: {exc.strerror or exc}", file=path) from None
    except UnicodeDecodeError as exc:
        raise KilomlError(f"not UTF-8 text (byte {exc.start})", file=path) from None
    try:
        return json.loads(text, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        raise KilomlError(f"not valid JSON: {exc.msg}", file=path, line=exc.lineno) from None
    except (ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise KilomlError(f"not valid JSON: {reason}"[:200], file=path) from None


def read_document(json_path: Path, fmt: str, version: int) -> tuple[dict, Document]:
    """The document's top-level object (its ``format`` and ``version`` checked) and its
    arrays (from the .npz beside it)."""
    data = read_json(json_path)
    if not isinstance(data, dict):
        raise KilomlError(f"expected a JSON object, got {describe(data)}", file=json_path)
    if data.get("format") != fmt:
        raise KilomlError(f"not a {fmt} file (format = {describe(data.get('format'))})",
                          file=json_path, where="format")
    got = data.get("version")
    if not isinstance(got, int) or isinstance(got, bool):
        raise KilomlError(f"expected a whole number, got {describe(got)}", file=json_path,
                          where="version")
    if got != version:
        raise KilomlError(f"format version {got}; this kiloml reads version {version}: use "
                          "the kiloml that wrote it, or run `kiloml run` again",
                          file=json_path, where="version")
    npz_path = json_path.with_suffix(".npz")
    return data, Document(json_path, ArrayBook(read_npz(npz_path), npz_path))


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every member of an .npz archive, never unpickling: object dtypes are refused from
    the member's header, and each member's bytes must match its declared shape."""
    _regular_file(path, MAX_ARRAY_BYTES)
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_MEMBERS:
                raise KilomlError(f"{len(infos)} members, more than {MAX_MEMBERS}", file=path)
            total = sum(i.file_size for i in infos)
            if total > MAX_ARRAY_BYTES:
                raise KilomlError(f"declares {total} bytes of arrays, more than "
                                  f"{MAX_ARRAY_BYTES}", file=path)
            arrays: dict[str, np.ndarray] = {}
            for info in infos:
                if not info.filename.endswith(".npy"):
                    raise KilomlError("not an .npy member", file=path, where=info.filename)
                key = info.filename[:-4]
                if key in arrays:
                    raise KilomlError("member appears twice", file=path, where=info.filename)
                with zf.open(info) as f:
                    arrays[key] = _read_member(f, info, path)
            return arrays
    except KilomlError:
        raise
    except (OSError, EOFError, ValueError, SyntaxError, RecursionError, MemoryError,
            NotImplementedError, RuntimeError, zipfile.BadZipFile, zlib.error) as exc:
        if isinstance(exc, FileNotFoundError):
            raise KilomlError("file not found", file=path) from None
        reason = str(exc).split("\n")[0][:120] or type(exc).__name__
        raise KilomlError(f"not a readable .npz archive ({type(exc).__name__}: {reason})",
                          file=path) from None


def _read_member(f, info: zipfile.ZipInfo, path: Path) -> np.ndarray:
    """One member; structured dtypes are allowed (scikit-learn's tree nodes), objects not."""
    try:
        header = read_header(f)
        return read_data(f, header, info.file_size - f.tell(), exact=True)
    except NpyError as exc:
        raise KilomlError(str(exc), file=path, where=info.filename) from None
