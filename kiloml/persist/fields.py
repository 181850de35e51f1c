"""Reading one JSON object of a saved document field by field, each checked for its type
and range, every fault a KilomlError naming the file and the field's path
(``pipeline.features[1].offset``). Unknown fields are refused too: what kiloml did not
write is not read."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
from pydantic import BaseModel, ValidationError

from kiloml.persist.archive import Document, describe

T = TypeVar("T")
FLOAT_TAG = "$float"
NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def encode_float(value: float) -> float | dict:
    """A float as JSON: itself when finite (json writes the shortest repr, which reads
    back to the same double), else a tag."""
    value = float(value)
    if math.isfinite(value):
        return value
    return {FLOAT_TAG: "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}


class Fields:
    """A JSON object at ``where`` in ``doc``."""

    def __init__(self, data: object, where: str, doc: Document) -> None:
        if not isinstance(data, dict):
            raise doc.error(where, f"expected an object, got {describe(data)}")
        self.data: dict = data
        self.where = where
        self.doc = doc
        self.seen: set[str] = set()

    def path(self, name: str | int) -> str:
        if isinstance(name, int):
            return f"{self.where}[{name}]"
        return f"{self.where}.{name}" if self.where else name

    def error(self, name: str, message: str) -> Exception:
        return self.doc.error(self.path(name), message)

    def raw(self, name: str) -> Any:
        self.seen.add(name)
        if name not in self.data:
            raise self.error(name, "missing")
        return self.data[name]

    def has(self, name: str) -> bool:
        return name in self.data

    def is_null(self, name: str) -> bool:
        return self.raw(name) is None

    def done(self) -> None:
        """Refuse fields nobody read."""
        extra = sorted(set(self.data) - self.seen)
        if extra:
            raise self.error(str(extra[0]), "unknown field")

    # --- scalars -------------------------------------------------------------------

    def int(self, name: str, lo: int | None = None, hi: int | None = None) -> int:
        return check_int(self.raw(name), self.path(name), self.doc, lo, hi)

    def float(self, name: str, lo: float | None = None, hi: float | None = None, *,
              finite: bool = True, above: float | None = None) -> float:
        return check_float(self.raw(name), self.path(name), self.doc, lo, hi,
                           finite=finite, above=above)

    def bool(self, name: str) -> bool:
        value = self.raw(name)
        if not isinstance(value, bool):
            raise self.error(name, f"expected true or false, got {describe(value)}")
        return value

    def str(self, name: str, choices: Sequence[str] | None = None,
            max_length: int = 10_000) -> str:
        value = self.raw(name)
        if not isinstance(value, str):
            raise self.error(name, f"expected a string, got {describe(value)}")
        if len(value) > max_length:
            raise self.error(name, f"a string of {len(value)} characters, more than "
                                   f"{max_length}")
        if choices is not None and value not in choices:
            raise self.error(name, f"{value[:40]!r} is not one of {', '.join(choices)}")
        return value

    def strings(self, name: str, max_items: int = 1_000_000) -> list[str]:
        value = self.raw(name)
        if not isinstance(value, list) or len(value) > max_items:
            raise self.error(name, f"expected a list of strings, got {describe(value)}")
        for i, v in enumerate(value):
            if not isinstance(v, str):
                raise self.doc.error(f"{self.path(name)}[{i}]",
                                     f"expected a string, got {describe(v)}")
        return list(value)

    def ints(self, name: str, lo: int | None = None, hi: int | None = None,
             max_items: int = 1_000_000) -> list[int]:
        value = self.raw(name)
        if not isinstance(value, list) or len(value) > max_items:
            raise self.error(name, f"expected a list of whole numbers, got {describe(value)}")
        return [check_int(v, f"{self.path(name)}[{i}]", self.doc, lo, hi)
                for i, v in enumerate(value)]

    # --- nested --------------------------------------------------------------------

    def object(self, name: str) -> Fields:
        return Fields(self.raw(name), self.path(name), self.doc)

    def objects(self, name: str, max_items: int = 1_000_000) -> list[Fields]:
        value = self.raw(name)
        if not isinstance(value, list) or len(value) > max_items:
            raise self.error(name, f"expected a list of objects, got {describe(value)}")
        return [Fields(v, f"{self.path(name)}[{i}]", self.doc) for i, v in enumerate(value)]

    def optional(self, name: str, read: Callable[[str], T]) -> T | None:
        """None for null, else ``read(name)``."""
        return None if self.is_null(name) else read(name)

    def array(self, name: str, dtype: str | Sequence[str],
              shape: Sequence[int | None] | None = None, *, finite: bool = False
              ) -> np.ndarray:
        """The array the field refers to, of exactly this dtype (little-endian as written)
        and shape (None: any length on that axis; shape None: any)."""
        a = self.doc.array(self.raw(name), self.path(name))
        dtypes = [dtype] if isinstance(dtype, str) else list(dtype)
        if not any(a.dtype == np.dtype(d) for d in dtypes):  # byte order, fields included
            raise self.error(name, f"array of dtype {a.dtype.str}, expected "
                                   f"{' or '.join(_dtype_name(d) for d in dtypes)}")
        if shape is not None and (a.ndim != len(shape) or any(
                want is not None and got != want for got, want in zip(a.shape, shape,
                                                                      strict=True))):
            want = "[" + ", ".join("N" if s is None else str(s) for s in shape) + "]"
            raise self.error(name, f"array of shape {list(a.shape)}, expected {want}")
        if finite and a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            raise self.error(name, "array holds NaN or infinite values")
        return a

    def config(self, name: str, cls: type[BaseModel]) -> Any:
        """A pydantic section (saved with model_dump(mode="json")), validated."""
        value = self.raw(name)
        if not isinstance(value, dict):
            raise self.error(name, f"expected an object, got {describe(value)}")
        try:
            return cls.model_validate(value)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in first.get("loc", ()))
            where = self.path(name) + (f".{loc}" if loc else "")
            raise self.doc.error(where, first.get("msg", "invalid")) from None


def _dtype_name(dtype) -> str:
    d = np.dtype(dtype)
    return f"records ({', '.join(d.names)})" if d.names else d.name


def check_int(value: object, where: str, doc: Document, lo: int | None = None,
              hi: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise doc.error(where, f"expected a whole number, got {describe(value)}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise doc.error(where, f"{value} is outside [{lo if lo is not None else '-inf'}, "
                               f"{hi if hi is not None else 'inf'}]"[:200])
    return value


def check_float(value: object, where: str, doc: Document, lo: float | None = None,
                hi: float | None = None, *, finite: bool = True,
                above: float | None = None) -> float:
    if isinstance(value, dict) and set(value) == {FLOAT_TAG} and not finite and \
            isinstance(value[FLOAT_TAG], str) and value[FLOAT_TAG] in NON_FINITE:
        return NON_FINITE[value[FLOAT_TAG]]
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise doc.error(where, f"expected a number, got {describe(value)}")
    out = float(value)
    if not math.isfinite(out):
        raise doc.error(where, f"{value!r} is not a finite number")
    if (lo is not None and out < lo) or (hi is not None and out > hi) or (
            above is not None and not out > above):
        bound = f"above {above:g}" if above is not None else \
            f"in [{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
        raise doc.error(where, f"{out:g} is not {bound}")
    return out
