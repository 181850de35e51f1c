"""A bounds-checked flatbuffer reader: tables, scalars, strings and vectors.

flatbuffers' generated Python accessors trust the file: an offset or a vector
length damaged in a user's file surfaces as an IndexError, a struct.error, a
huge allocation, or garbage. This reader checks every step the way the C++
``flatbuffers::Verifier`` does before it reads: the table's vtable lies inside
the file and is well-formed, a field lies inside its table, an offset lands
inside the file, a vector's elements end before the file does. Every element
read is charged to a budget proportional to the file size, so a file whose
tables overlap cannot make the walk quadratic.

Errors are ``FlatbufferError`` naming the path of the table (given by the
caller, e.g. ``subgraph 0 tensor 12``), the field and what is wrong, with the
byte offset.
"""

from __future__ import annotations

import struct

import numpy as np

__all__ = ["Flatbuffer", "FlatbufferError", "Table"]

_U16 = struct.Struct("<H")
_I32 = struct.Struct("<i")
_U32 = struct.Struct("<I")


class FlatbufferError(Exception):
    """Structural damage in a flatbuffer (an offset, a length or a table outside the file)."""


class Flatbuffer:
    """The file's bytes and the read budget shared by all tables read from it."""

    def __init__(self, data: bytes, budget: int | None = None) -> None:
        self.data = data
        self.size = len(data)
        # Each element read costs one unit; a sane file reads little twice.
        self.budget = budget if budget is not None else 4 * len(data) + 4096

    def charge(self, n: int, path: str) -> None:
        self.budget -= n + 1
        if self.budget < 0:
            raise FlatbufferError(f"{path}: tables overlap (the file reads more elements than "
                                  "it holds; corrupt offsets)")

    def root(self, path: str) -> Table:
        if self.size < 8:
            raise FlatbufferError(f"{path}: the file has only {self.size} bytes")
        offset = _U32.unpack_from(self.data, 0)[0]
        return Table(self, offset, path, "root table offset")


class Table:
    """One table: ``pos`` in the file, its vtable checked on construction."""

    __slots__ = ("fb", "obj_len", "path", "pos", "vt_len", "vtable")

    def __init__(self, fb: Flatbuffer, pos: int, path: str, what: str = "table") -> None:
        self.fb, self.pos, self.path = fb, pos, path
        size = fb.size
        if not 0 <= pos <= size - 4:
            raise FlatbufferError(f"{path}: {what} points to byte {pos}, outside the file "
                                  f"({size} bytes)")
        vtable = pos - _I32.unpack_from(fb.data, pos)[0]
        if not 0 <= vtable <= size - 4:
            raise FlatbufferError(f"{path}: the table at byte {pos} has its vtable at byte "
                                  f"{vtable}, outside the file ({size} bytes)")
        vt_len, obj_len = _U16.unpack_from(fb.data, vtable)[0], _U16.unpack_from(
            fb.data, vtable + 2)[0]
        if vt_len < 4 or vt_len % 2 or vtable + vt_len > size:
            raise FlatbufferError(f"{path}: the vtable at byte {vtable} declares {vt_len} bytes "
                                  f"(file of {size} bytes)")
        if obj_len < 4 or pos + obj_len > size:
            raise FlatbufferError(f"{path}: the table at byte {pos} declares {obj_len} bytes, "
                                  f"past the end of the file ({size} bytes)")
        self.vtable, self.vt_len, self.obj_len = vtable, vt_len, obj_len
        fb.charge(vt_len // 2, path)
        # Every field, read or not, starts after the table's vtable offset and inside the
        # table (what the C++ Verifier checks field by field; readers that trust the file,
        # TFLM among them, would read any of them).
        for slot in range(4, vt_len, 2):
            offset = _U16.unpack_from(fb.data, vtable + slot)[0]
            if offset and not 4 <= offset < obj_len:
                raise FlatbufferError(f"{path}: field {slot // 2 - 2} is at offset {offset}, "
                                      f"outside its table of {obj_len} bytes")

    def _error(self, field: str, message: str) -> FlatbufferError:
        return FlatbufferError(f"{self.path}: field '{field}': {message}")

    def _slot(self, slot: int, width: int, field: str) -> int:
        """The field's byte position in the file, or 0 when absent (the default applies)."""
        if slot + 2 > self.vt_len:
            return 0
        offset = _U16.unpack_from(self.fb.data, self.vtable + slot)[0]
        if offset == 0:
            return 0
        if offset + width > self.obj_len:
            raise self._error(field, f"at offset {offset} + {width} bytes, outside its table of "
                              f"{self.obj_len} bytes")
        return self.pos + offset

    def has(self, slot: int) -> bool:
        return self._slot(slot, 1, "?") != 0

    def scalar(self, slot: int, fmt: str, default: float | int | bool, field: str
               ) -> float | int | bool:
        """A scalar field (``struct`` format letter: b B h i I q Q f d ?)."""
        codec = struct.Struct("<" + fmt)
        at = self._slot(slot, codec.size, field)
        if not at:
            return default
        return codec.unpack_from(self.fb.data, at)[0]

    def _target(self, slot: int, field: str) -> int | None:
        """Follow the uoffset stored in the field; None when the field is absent."""
        at = self._slot(slot, 4, field)
        if not at:
            return None
        target = at + _U32.unpack_from(self.fb.data, at)[0]
        if target > self.fb.size - 4:
            raise self._error(field, f"offset at byte {at} points to byte {target}, outside the "
                              f"file ({self.fb.size} bytes)")
        return target

    def table(self, slot: int, field: str, path: str) -> Table | None:
        target = self._target(slot, field)
        return None if target is None else Table(self.fb, target, path, f"field '{field}'")

    def _vector(self, slot: int, width: int, field: str) -> tuple[int, int]:
        """(position of the first element, element count); (0, 0) when absent."""
        start = self._target(slot, field)
        if start is None:
            return 0, 0
        n = _U32.unpack_from(self.fb.data, start)[0]
        end = start + 4 + n * width
        if end > self.fb.size:
            raise self._error(field, f"a vector of {n} entries of {width} bytes at byte {start} "
                              f"runs past the end of the file ({self.fb.size} bytes)")
        self.fb.charge(n, self.path)
        return start + 4, n

    def length(self, slot: int, width: int, field: str) -> int:
        return self._vector(slot, width, field)[1]

    def numbers(self, slot: int, dtype: str, field: str) -> np.ndarray:
        """A vector of scalars as a (read-only) little-endian numpy array; empty if absent."""
        dt = np.dtype(dtype).newbyteorder("<")
        start, n = self._vector(slot, dt.itemsize, field)
        if not n:
            return np.zeros(0, dt)
        return np.frombuffer(self.fb.data, dt, n, start)

    def raw(self, slot: int, field: str) -> bytes:
        start, n = self._vector(slot, 1, field)
        return self.fb.data[start:start + n]

    def string(self, slot: int, field: str) -> str:
        return self.raw(slot, field).decode("utf-8", errors="replace")

    def tables(self, slot: int, field: str, path: str) -> TableVector:
        """A vector of tables; ``path`` is formatted with the element index ({i})."""
        start, n = self._vector(slot, 4, field)
        return TableVector(self, start, n, field, path)


class TableVector:
    """A checked vector of tables; elements are read (and verified) on access."""

    def __init__(self, owner: Table, start: int, n: int, field: str, path: str) -> None:
        self.owner, self.start, self.n, self.field, self.path = owner, start, n, field, path

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Table:
        if not 0 <= i < self.n:
            raise IndexError(i)
        at = self.start + 4 * i
        target = at + _U32.unpack_from(self.owner.fb.data, at)[0]
        path = self.path.format(i=i)
        if target > self.owner.fb.size - 4:
            raise FlatbufferError(f"{path}: the offset at byte {at} points to byte {target}, "
                                  f"outside the file ({self.owner.fb.size} bytes)")
        return Table(self.owner.fb, target, path, f"element {i} of '{self.field}'")
