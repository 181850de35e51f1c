"""The .npy format read safely: the header checked before the data, never pickle.

``numpy.load`` parses the header with Python's tokenizer and allocates what the
header declares: a damaged or hostile file surfaces as TokenError, MemoryError,
OverflowError or a numpy warning, and an object array needs pickle. Here the
header is parsed inside one guarded step, object dtypes are refused from the header,
the shape must be non-negative whole numbers, and the data the header declares is
compared with the bytes available before anything is allocated. Each caller adds its
own dtype and rank policy (recordings, model inputs, saved pipelines) and names its
file; ``NpyError`` carries only what is wrong.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from kiloml.errors import KilomlError

__all__ = ["NpyError", "NpyHeader", "read_data", "read_header", "read_npy_array"]

MAX_HEADER_BYTES = 10_000


class NpyError(Exception):
    """What is wrong with an .npy stream, for the caller to name its file."""


@dataclass(frozen=True)
class NpyHeader:
    shape: tuple[int, ...]
    fortran: bool
    dtype: np.dtype
    count: int  # elements
    data_bytes: int


def read_header(stream: BinaryIO) -> NpyHeader:
    """The header of the .npy at the stream's position (the stream is left at the data)."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(stream)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a Python 2 header: numpy warns, then parses it
            if version == (1, 0):
                shape, fortran, dtype = fmt.read_array_header_1_0(
                    stream, max_header_size=MAX_HEADER_BYTES)
            elif version == (2, 0):
                shape, fortran, dtype = fmt.read_array_header_2_0(
                    stream, max_header_size=MAX_HEADER_BYTES)
            else:
                raise NpyError(f"NPY format version {version[0]}.{version[1]} is not "
                               f"supported (1.0 and 2.0 are)")
    except NpyError:
        raise
    except Exception as exc:  # numpy's header parser: ValueError, TokenError, ... on bad bytes
        text = str(exc).strip()
        reason = text.splitlines()[0][:120] if text else type(exc).__name__
        raise NpyError(f"not a valid .npy file: {reason}") from None
    if dtype.hasobject:
        raise NpyError(f"holds Python objects (dtype {dtype}), which only pickle can load; "
                       f"kiloml never unpickles: save numbers")
    if not isinstance(shape, tuple) or any(
            not isinstance(d, int) or isinstance(d, bool) for d in shape):
        raise NpyError(f"the header declares an invalid shape {shape}")
    if any(d < 0 for d in shape):
        raise NpyError(f"the header declares a negative dimension {shape}")
    count = math.prod(shape)
    return NpyHeader(shape, bool(fortran), dtype, count, count * dtype.itemsize)


def read_data(stream: BinaryIO, header: NpyHeader, available: int, *,
              exact: bool = True, native: bool = False) -> np.ndarray:
    """The array after ``header``: ``available`` bytes follow the header (all of them
    data when ``exact``); a C-ordered writable copy, in the stored dtype or (``native``)
    in the machine's byte order."""
    need = header.data_bytes
    if need > available or (exact and need != available):
        raise NpyError(f"the header declares shape {list(header.shape)} of {header.dtype} "
                       f"({need:,} bytes of data), the file holds {max(available, 0):,}")
    data = stream.read(need)
    if len(data) != need:
        raise NpyError(f"{len(data):,} of the {need:,} bytes the header declares (truncated?)")
    # a writable buffer of its own, viewed in place: a copy field by field would leave a
    # structured dtype's padding bytes undefined (and a saved file would not round-trip)
    flat = np.frombuffer(bytearray(data), dtype=header.dtype, count=header.count)
    array = flat.reshape(header.shape, order="F" if header.fortran else "C")
    if native and not header.dtype.isnative:
        array = array.astype(header.dtype.newbyteorder("="))
    return array if array.flags.c_contiguous else np.ascontiguousarray(array)


def read_npy_array(path: str | Path, display: str | Path | None = None) -> np.ndarray:
    """The numeric (or bool) array in ``path``; KilomlError naming ``display`` otherwise."""
    path = Path(path)
    shown = display if display is not None else path
    try:
        if not path.is_file():  # a FIFO or a device would block or never end
            raise KilomlError("file not found" if not path.exists() else
                              "not a regular file", file=shown)
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            header = read_header(f)
            dtype = header.dtype
            if dtype.fields is not None or dtype.subdtype is not None or \
                    dtype.kind not in "biuf":
                raise KilomlError(f"the array has dtype {dtype}; a numeric (or bool) array "
                                  f"is needed", file=shown)
            return read_data(f, header, size - f.tell(), native=True)
    except NpyError as exc:
        raise KilomlError(str(exc), file=shown) from None
    except OSError as exc:
        raise KilomlError(f"cannot read: {exc.strerror or exc}", file=shown) from None
