"""The model.kmlb byte layout (docs/blob_format.md): a 136-byte little-endian header, then
a payload of typed, length-prefixed sections. Written whole by :func:`pack`, read back
with every field checked by :func:`unpack` (one KilomlError naming the fault)."""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from kiloml.errors import KilomlError

MAGIC = b"KMLB"
FORMAT_VERSION = 1
HEADER_BYTES = 136
KIND_FOREST = 1
KIND_NETWORK = 2
FLAG_SIGNED = 1
SHA256_AT = 40  # the hash covers header[:40] + payload
SIGNATURE_AT = 72  # the signature covers header[:72] (which holds the hash)
SIGNATURE_BYTES = 64
# magic, version, header bytes, flags, payload bytes, model id, interface, layout,
# counter, kind
_FIELDS = struct.Struct("<4sHHII8sIIII")
_SECTION = struct.Struct("<HHI")
SECTION_OPTIONAL = 1
MAX_COUNTER = 0xFFFFFFFF

# Section tags (kml_blob.c's KML_S_*).
FOREST, TREE_BASE, HEAD, THRESHOLD, LEFT, RIGHT, NAN_LEFT = 1, 2, 3, 4, 5, 6, 7
LEAF_START, ENTRY_CLASS, ENTRY_NUM, ENTRY_VALUE = 8, 9, 10, 11
DECISION, GOLDEN = 16, 32
NN_INT8, NN_WORDS = 48, 49  # a network's weight pool and parameter words
SECTION_NAMES = {FOREST: "forest", TREE_BASE: "tree_base", HEAD: "head",
                 THRESHOLD: "threshold", LEFT: "left", RIGHT: "right", NAN_LEFT: "nan_left",
                 LEAF_START: "leaf_start", ENTRY_CLASS: "entry_class",
                 ENTRY_NUM: "entry_num", ENTRY_VALUE: "entry_value", DECISION: "decision",
                 GOLDEN: "golden", NN_INT8: "nn_int8", NN_WORDS: "nn_words"}

# kml_blob.h's reason codes
REASONS = ["ok", "bad_magic", "bad_version", "bad_interface", "bad_layout", "bad_length",
           "bad_hash", "bad_signature", "unsigned", "downgrade", "bad_payload",
           "selftest_failed", "bad_alignment"]


@dataclass(frozen=True)
class Header:
    model_id: bytes  # 8 bytes (the first 16 hex digits of KML_MODEL_ID)
    interface_hash: int
    layout_hash: int
    counter: int  # anti-rollback
    payload_bytes: int = 0
    signed: bool = False
    kind: int = KIND_FOREST
    sha256: bytes = b""
    signature: bytes = b""


def counter_of(version: str) -> int:
    """The anti-rollback counter of a MAJOR.MINOR.PATCH version: major * 2^20 + minor *
    2^10 + patch (minor and patch below 1024, major below 4096), so newer versions count
    higher."""
    parts = version.split(".")
    if len(parts) != 3 or not all(p.isdigit() and (p == "0" or p[0] != "0") for p in parts):
        raise KilomlError(f"version {version[:40]!r} is not MAJOR.MINOR.PATCH")
    major, minor, patch = (int(p) for p in parts)
    if major >= 4096 or minor >= 1024 or patch >= 1024:
        raise KilomlError(f"version {version} does not fit the blob's anti-rollback counter "
                          "(major < 4096, minor and patch < 1024)")
    return (major << 20) | (minor << 10) | patch


def model_id_bytes(model_id: str) -> bytes:
    """The 8 bytes of KML_MODEL_ID's 16 hex digits."""
    try:
        raw = bytes.fromhex(model_id)
    except ValueError:
        raw = b""
    if len(raw) != 8:
        raise KilomlError(f"model id {model_id[:40]!r} is not 16 hex digits")
    return raw


def section(tag: int, data: bytes, *, optional: bool = False) -> bytes:
    """One section: tag, flags, length, the data, zeros to the next 8-byte boundary."""
    pad = (-len(data)) % 8
    return _SECTION.pack(tag, SECTION_OPTIONAL if optional else 0, len(data)) + data \
        + b"\0" * pad


def sections(payload: bytes) -> list[tuple[int, int, bytes]]:
    """(tag, flags, data) of each section, in order."""
    out, pos = [], 0
    while pos < len(payload):
        if len(payload) - pos < _SECTION.size:
            raise KilomlError(f"blob payload: a section header cut at byte {pos}")
        tag, flags, n = _SECTION.unpack_from(payload, pos)
        pos += _SECTION.size
        if n > len(payload) - pos:
            raise KilomlError(f"blob payload: section {tag} says {n} bytes, "
                              f"{len(payload) - pos} remain")
        out.append((tag, flags, payload[pos:pos + n]))
        pos += n + (-n) % 8
    return out


def _signed_part(head: bytes, payload: bytes) -> bytes:
    return head[:SHA256_AT] + payload


def pack(header: Header, payload: bytes, signing_key=None) -> bytes:
    """Header + payload; ``signing_key`` (an Ed25519 private key object) signs it."""
    if not 0 <= header.counter <= MAX_COUNTER:
        raise KilomlError(f"blob counter {header.counter} is not a uint32")
    fields = _FIELDS.pack(MAGIC, FORMAT_VERSION, HEADER_BYTES,
                          FLAG_SIGNED if signing_key is not None else 0, len(payload),
                          header.model_id, header.interface_hash, header.layout_hash,
                          header.counter, header.kind)
    digest = hashlib.sha256(fields + payload).digest()
    signature = b"\0" * SIGNATURE_BYTES
    if signing_key is not None:
        from kiloml.blob.keys import sign
        signature = sign(signing_key, fields + digest)
    return fields + digest + signature + payload


def unpack(blob: bytes, *, what: str = "blob") -> tuple[Header, bytes]:
    """The header and payload of a blob, with magic, version, lengths and hash checked
    (the signature is checked by :func:`verify_signature`)."""
    if len(blob) < 8 or blob[:4] != MAGIC:
        raise KilomlError(f"{what} is not a kiloml parameter blob (no KMLB magic)")
    version, header_bytes = struct.unpack_from("<HH", blob, 4)
    if version != FORMAT_VERSION or header_bytes != HEADER_BYTES:
        raise KilomlError(f"{what} has format version {version} (header {header_bytes} "
                          f"bytes); this kiloml reads version {FORMAT_VERSION}")
    if len(blob) < HEADER_BYTES:
        raise KilomlError(f"{what} is truncated: {len(blob)} bytes, the header alone is "
                          f"{HEADER_BYTES}")
    (_, _, _, flags, n, model_id, interface, layout, counter,
     kind) = _FIELDS.unpack_from(blob, 0)
    if flags & ~FLAG_SIGNED:
        raise KilomlError(f"{what} has unknown flags 0x{flags:08x}")
    if len(blob) < HEADER_BYTES + n:
        raise KilomlError(f"{what} is truncated: its header says {HEADER_BYTES + n} bytes, "
                          f"it has {len(blob)}")
    payload = blob[HEADER_BYTES:HEADER_BYTES + n]
    digest = blob[SHA256_AT:SIGNATURE_AT]
    if hashlib.sha256(_signed_part(blob, payload)).digest() != digest:
        raise KilomlError(f"{what}: the SHA-256 does not match its content (a changed byte)")
    header = Header(model_id=model_id, interface_hash=interface, layout_hash=layout,
                    counter=counter, payload_bytes=n, signed=bool(flags & FLAG_SIGNED),
                    kind=kind, sha256=digest, signature=blob[SIGNATURE_AT:HEADER_BYTES])
    return header, payload


def verify_signature(blob: bytes, public_key: bytes) -> bool:
    """Whether the blob is signed by ``public_key`` (32 raw bytes)."""
    from kiloml.blob.keys import verify
    header, _ = unpack(blob)
    return header.signed and verify(public_key, header.signature, blob[:SIGNATURE_AT])
