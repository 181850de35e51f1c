"""Generic values as JSON: what a scikit-learn estimator's state or a free-form record
(calibration notes, template sizes) holds, exactly and with nothing executable.

JSON covers None, bool, int, str, lists and objects with string keys; tagged objects
(one key starting with "$") cover the rest: ``$float`` (NaN, inf), ``$tuple``, ``$np``
(a numpy scalar: dtype name and value), ``$array`` (a member of the .npz) and the tags
a caller registers (``objects``). Anything else is refused when saving and loading.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from kiloml.persist.archive import ARRAY_TAG, ArrayBook, Document, describe
from kiloml.persist.fields import FLOAT_TAG, NON_FINITE, encode_float

TUPLE_TAG = "$tuple"
SCALAR_TAG = "$np"
SCALAR_KINDS = "biuf"  # numpy scalars allowed: bool, signed, unsigned, float
MAX_DEPTH = 64

# tag -> decode(payload, where) for objects a caller allows (estimators, trees ...)
Decoders = dict[str, Callable[[object, str], object]]
# value -> JSON, or None when the value is not the encoder's
Encoder = Callable[[object, str], object | None]


def encode(value: object, book: ArrayBook, key: str, objects: Encoder | None = None,
           depth: int = 0) -> object:
    """``key`` names arrays in the archive (unique per value)."""
    if depth > MAX_DEPTH:
        raise ValueError(f"{key}: nested too deeply to save")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return encode_float(value)
    if isinstance(value, np.ndarray):
        return book.put(key, value)
    if isinstance(value, np.generic):
        if value.dtype.kind not in SCALAR_KINDS:
            raise TypeError(f"{key}: numpy scalar of dtype {value.dtype} cannot be saved")
        item = value.item()
        return {SCALAR_TAG: [value.dtype.name, encode_float(item) if isinstance(item, float)
                             else item]}
    if isinstance(value, (list, tuple)):
        items = [encode(v, book, f"{key}.{i}", objects, depth + 1) for i, v in enumerate(value)]
        return {TUPLE_TAG: items} if isinstance(value, tuple) else items
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str) or k.startswith("$"):
                raise TypeError(f"{key}: dictionary key {k!r} cannot be saved")
            out[k] = encode(v, book, f"{key}.{k}", objects, depth + 1)
        return out
    if objects is not None:
        encoded = objects(value, key)
        if encoded is not None:
            return encoded
    raise TypeError(f"{key}: a {type(value).__name__} cannot be saved")


def decode(data: object, doc: Document, where: str, objects: Decoders | None = None,
           depth: int = 0) -> object:
    if depth > MAX_DEPTH:
        raise doc.error(where, "nested too deeply")
    if data is None or isinstance(data, (bool, int, str)):
        return data
    if isinstance(data, float):
        if not math.isfinite(data):
            raise doc.error(where, f"{data!r} is not a finite number")
        return data
    if isinstance(data, list):
        return [decode(v, doc, f"{where}[{i}]", objects, depth + 1) for i, v in enumerate(data)]
    if not isinstance(data, dict):
        raise doc.error(where, f"unexpected {describe(data)}")
    tags = [k for k in data if k.startswith("$")]
    if not tags:
        return {k: decode(v, doc, f"{where}.{k}", objects, depth + 1) for k, v in data.items()}
    if len(data) != 1:
        raise doc.error(where, f"a tagged value ({tags[0]}) has other keys")
    tag, payload = tags[0], data[tags[0]]
    if tag == FLOAT_TAG:
        if not isinstance(payload, str) or payload not in NON_FINITE:
            raise doc.error(where, f"{describe(payload)} is not nan, inf or -inf")
        return NON_FINITE[payload]
    if tag == TUPLE_TAG:
        if not isinstance(payload, list):
            raise doc.error(where, f"a tuple needs a list, got {describe(payload)}")
        return tuple(decode(v, doc, f"{where}[{i}]", objects, depth + 1)
                     for i, v in enumerate(payload))
    if tag == ARRAY_TAG:
        return doc.array(data, where)
    if tag == SCALAR_TAG:
        return _scalar(payload, doc, where)
    if objects is not None and tag in objects:
        return objects[tag](payload, where)
    raise doc.error(where, f"unknown type tag {tag[:40]!r}")


def _scalar(payload: object, doc: Document, where: str) -> np.generic:
    if not (isinstance(payload, list) and len(payload) == 2 and isinstance(payload[0], str)):
        raise doc.error(where, f"a numpy scalar is [dtype, value], got {describe(payload)}")
    name, value = payload
    try:
        dtype = np.dtype(name)
    except TypeError:
        raise doc.error(where, f"unknown dtype {name[:40]!r}") from None
    if dtype.kind not in SCALAR_KINDS or dtype.name != name:
        raise doc.error(where, f"dtype {name[:40]!r} is not a plain number type")
    if isinstance(value, dict) and dtype.kind == "f":
        value = decode(value, doc, where)
    if isinstance(value, bool) != (dtype.kind == "b") or not isinstance(value, (int, float)) \
            or (dtype.kind in "iu" and not isinstance(value, int)):
        raise doc.error(where, f"{describe(value)} is not a {name}")
    if dtype.kind in "iu" and not np.iinfo(dtype).min <= value <= np.iinfo(dtype).max:
        raise doc.error(where, f"{value} does not fit {name}")
    return dtype.type(value)
