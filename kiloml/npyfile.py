"""Read one numeric array from an .npy file, checking the header before reading the data.

``numpy.load`` parses the header with Python's tokenizer and allocates what the
header declares: a damaged or hostile file surfaces as TokenError, MemoryError,
OverflowError or a numpy warning, and an object array needs pickle. Here the
header is parsed inside one guarded step, the dtype must be a plain number or
bool (never objects, strings, structured or datetime), the shape non-negative,
and the data the header declares must be exactly the bytes the file holds before
anything is allocated. Pickle is never used.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from kiloml.errors import KilomlError

__all__ = ["read_npy_array"]

_MAX_HEADER_BYTES = 10_000


def read_npy_array(path: str | Path, display: str | Path | None = None) -> np.ndarray:
    """The array in ``path`` (a writable copy); KilomlError naming ``display`` otherwise."""
    path = Path(path)
    shown = display if display is not None else path
    try:
        if not path.is_file():  # a FIFO or a device would block or never end
            raise KilomlError("file not found" if not path.exists() else
                              "not a regular file", file=shown)
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            shape, fortran, dtype = _header(f, shown)
            count = 1
            for d in shape:
                count *= d
            need = count * dtype.itemsize
            have = size - f.tell()
            if need != have:
                raise KilomlError(f"the header declares shape {list(shape)} of {dtype} "
                                  f"({need:,} bytes of data), the file holds {have:,}",
                                  file=shown)
            data = f.read(need)
    except OSError as exc:
        raise KilomlError(f"cannot read: {exc.strerror or exc}", file=shown) from None
    if len(data) != need:
        raise KilomlError("the file changed while it was read", file=shown)
    flat = np.frombuffer(data, dtype=dtype, count=count)
    native = dtype.newbyteorder("=")
    return np.array(flat.reshape(shape, order="F" if fortran else "C"), dtype=native, order="C")


def _header(f, shown: str | Path) -> tuple[tuple[int, ...], bool, np.dtype]:
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(
                f, max_header_size=_MAX_HEADER_BYTES)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(
                f, max_header_size=_MAX_HEADER_BYTES)
        else:
            raise KilomlError(f"NPY format version {version[0]}.{version[1]} is not supported "
                              "(1.0 and 2.0 are)", file=shown)
    except KilomlError:
        raise
    except Exception as exc:  # numpy's header parser: ValueError, TokenError, ... on bad bytes
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else \
            type(exc).__name__
        raise KilomlError(f"not a valid .npy file: {reason}", file=shown) from None
    if dtype.hasobject:
        raise KilomlError("the array holds Python objects (it would need pickle, which "
                          "kiloml never loads); save a numeric array", file=shown)
    if dtype.fields is not None or dtype.subdtype is not None or dtype.kind not in "biuf":
        raise KilomlError(f"the array has dtype {dtype}; a numeric (or bool) array is needed",
                          file=shown)
    if not isinstance(shape, tuple) or any(not isinstance(d, int) or d < 0 for d in shape):
        raise KilomlError(f"the header declares an invalid shape {shape}", file=shown)
    return shape, bool(fortran), dtype
