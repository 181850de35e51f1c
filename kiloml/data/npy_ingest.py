"""NPY and NPZ recordings.

NPY: one array [T] or [T, C]. NPZ: an array ``samples`` [T] or [T, C] (or the
archive's only array), optionally ``labels`` [T] (one label per sample) and
``sample_rate_hz`` (a scalar).

Every array header is read and checked before its data: never pickle (object
arrays are refused), no structured or complex dtypes, the rank, and the bytes the
declared shape needs against the bytes the file (or the archive member) holds, so a
truncated file whose header claims 10^12 elements is an error, not an allocation.
"""

from __future__ import annotations

import os
import struct
import tokenize
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from kiloml.data.files import open_regular
from kiloml.data.recording import MAX_RECORDING_VALUES
from kiloml.errors import KilomlError
from kiloml.npyfile import NpyError, read_data, read_header

MAX_ARRAY_BYTES = 8 * MAX_RECORDING_VALUES  # any one array, whatever its dtype
MAX_MEMBERS = 64  # arrays in one NPZ archive
# what numpy's header parser (ast / tokenize), zipfile and zlib raise on damaged input
_READ_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, struct.error,
                RuntimeError, NotImplementedError, SyntaxError, LookupError, TypeError,
                tokenize.TokenError, OverflowError, MemoryError, RecursionError,
                UnicodeDecodeError)


def read_npy(path: Path, display: str) -> tuple[np.ndarray, np.ndarray | None, float | None]:
    """Samples [T, C] float32, per-sample labels or None, and the stored rate or None."""
    labels = rate = None
    with open_regular(path, display) as f:
        size = os.fstat(f.fileno()).st_size
        magic = f.read(6)
        f.seek(0)
        try:
            if magic == b"\x93NUMPY":
                samples = _read_array(f, size, display, "the array", "samples")
            elif magic[:2] == b"PK":
                samples, labels, rate = _read_npz(f, display)
            else:
                raise KilomlError(f"not an NPY or NPZ file: it starts with {magic!r}",
                                  file=display)
        except KilomlError:
            raise
        except _READ_ERRORS as exc:
            raise KilomlError(f"not a readable NPY/NPZ file: {type(exc).__name__}: {exc}",
                              file=display) from None
    if samples.ndim == 1:
        samples = samples[:, None]
    if samples.ndim != 2:
        raise KilomlError(f"samples have shape {samples.shape}; [T] or [T, C] is needed",
                          file=display)
    if samples.shape[0] == 0 or samples.shape[1] == 0:
        raise KilomlError(f"the array holds no samples (shape {samples.shape})", file=display)
    with np.errstate(over="ignore", invalid="ignore"):
        samples32 = samples.astype(np.float32)
    bad = np.argwhere(~np.isfinite(samples32))
    if len(bad):
        t, c = bad[0]
        raise KilomlError(f"sample {t} of channel {c} is not finite (or too large for float32)",
                          file=display)
    if labels is not None and len(labels) != len(samples32):
        raise KilomlError(f"'labels' has {len(labels)} entries for {len(samples32)} samples",
                          file=display)
    return samples32, labels, rate


def _read_npz(f: BinaryIO, display: str) -> tuple[np.ndarray, np.ndarray | None, float | None]:
    with zipfile.ZipFile(f) as archive:
        members = {i.filename.removesuffix(".npy"): i for i in archive.infolist()
                   if not i.is_dir()}
        if len(members) > MAX_MEMBERS:
            raise KilomlError(f"the NPZ archive holds {len(members)} arrays (at most "
                              f"{MAX_MEMBERS})", file=display)
        if "samples" in members:
            key = "samples"
        elif len(members) == 1:
            key = next(iter(members))
        else:
            raise KilomlError(f"NPZ needs an array named 'samples' (has: "
                              f"{', '.join(sorted(members)) or 'nothing'})", file=display)

        def member(name: str, role: str) -> np.ndarray:
            info = members[name]
            with archive.open(info) as stream:
                return _read_array(stream, info.file_size, display, f"array '{name}'", role)

        samples = member(key, "samples")
        labels = rate = None
        if "labels" in members and key != "labels":
            labels = _labels(member("labels", "labels"), display)
        if "sample_rate_hz" in members and key != "sample_rate_hz":
            value = member("sample_rate_hz", "rate")
            with np.errstate(invalid="ignore"):
                ok = value.size == 1 and value.dtype.kind in "fiu" and \
                    bool(np.isfinite(value).all()) and float(value.reshape(-1)[0]) > 0
            if not ok:
                raise KilomlError("'sample_rate_hz' must be one positive number", file=display)
            rate = float(value.reshape(-1)[0])
    return samples, labels, rate


def _labels(values: np.ndarray, display: str) -> np.ndarray:
    if values.ndim != 1:
        raise KilomlError(f"'labels' has shape {values.shape}; one label per sample [T] is "
                          f"needed", file=display)
    if values.dtype.kind == "S":
        try:
            text = [v.decode("utf-8") for v in values.tolist()]
        except UnicodeDecodeError:
            raise KilomlError("'labels' holds bytes that are not UTF-8 text",
                              file=display) from None
    else:
        text = [str(v) for v in values.tolist()]
    return np.array([s.strip() for s in text], dtype=object)


# what each role accepts: samples are numbers, labels text or integers, the rate a number
_KINDS = {"samples": "fiub", "labels": "USiub", "rate": "fiub"}


def _read_array(stream: BinaryIO, available: int, display: str, what: str,
                role: str) -> np.ndarray:
    """One .npy array from a stream holding ``available`` bytes, header checked first."""
    try:
        header = read_header(stream)
    except NpyError as exc:
        raise KilomlError(f"{what}: {exc}", file=display) from None
    header_bytes = stream.tell() if stream.seekable() else None
    shape, dtype = header.shape, header.dtype
    if dtype.names is not None or dtype.subdtype is not None:
        raise KilomlError(f"{what} has a structured dtype {dtype}; a plain numeric array is "
                          f"needed", file=display)
    if dtype.kind not in _KINDS[role]:
        needed = "text or integer labels" if role == "labels" else "a numeric array"
        raise KilomlError(f"{what} has dtype {dtype}; {needed} is needed", file=display)
    if len(shape) > 2 or (role != "rate" and len(shape) == 0):
        raise KilomlError(f"{what} has shape {shape}; [T] or [T, C] is needed", file=display)
    need = header.data_bytes
    if need > MAX_ARRAY_BYTES or header.count > MAX_RECORDING_VALUES:
        raise KilomlError(f"{what}: the header declares shape {shape} ({need:,} bytes), more "
                          f"than kiloml holds for one recording", file=display)
    have = available - header_bytes if header_bytes is not None else available
    if need > have:
        raise KilomlError(f"{what}: the header declares shape {shape} of {dtype} ({need:,} "
                          f"bytes), the file holds {max(have, 0):,} after the header "
                          f"(truncated?)", file=display)
    try:
        return read_data(stream, header, have, exact=False)
    except NpyError as exc:
        raise KilomlError(f"{what}: {exc}", file=display) from None
