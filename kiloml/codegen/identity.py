"""Model identity: ``<prefix>_model_info``, the model id and the interface hash.

model id: the first 16 hex digits of the SHA-256 of the library's generated content. Hashed:
every file the library folder holds except ``README.md``, in the order of their names, each
as ``name NUL length NUL bytes`` (length in decimal ASCII), with the identity blocks removed
(the lines from the one holding ``kiloml:identity begin`` to the one holding
``kiloml:identity end``, which carry the id itself and the creation time). The same model,
settings and kiloml version give the same id on any machine and at any time.

interface hash: the first 8 hex digits of the SHA-256 of the interface firmware is written
against, as canonical JSON (sorted keys, no spaces): the channels in order and their units
(null: not declared), the input sample rate, the decimation, the window's rate, samples and
stride, the classes in order and how a recording is fed (``windows`` or ``recording``).
It changes when a firmware's feeding code or its use of the class indices has to.

creation time: UTC ISO-8601 (``2025-01-31T12:00:00Z``), from ``SOURCE_DATE_EPOCH`` when set
(reproducible builds), else the clock.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import struct
from pathlib import Path

from kiloml.errors import KilomlError

INFO_SECTION = ".kml_model_info"
MAGIC = b"KMLINFO\0"
LAYOUT = 1
# char magic[8]; uint32 layout, interface_hash; char model_id[20], prefix[36],
# kiloml_version[32], created_utc[24], project[64]
RECORD = struct.Struct("<8sII20s36s32s24s64s")
BEGIN, END = "kiloml:identity begin", "kiloml:identity end"
_BLOCK = re.compile(rf"^[^\n]*{BEGIN}.*?{END}[^\n]*\n", re.S | re.M)
_CREATED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
ID_HEX = 16
EXCLUDED = ("README.md",)


def strip_identity(text: str) -> str:
    return _BLOCK.sub("", text)


def model_id(files: dict[str, bytes]) -> str:
    h = hashlib.sha256()
    for name in sorted(files):
        if name in EXCLUDED:
            continue
        data = files[name]
        if name.endswith((".c", ".h")):
            data = strip_identity(data.decode("utf-8")).encode("utf-8")
        h.update(f"{name}\0{len(data)}\0".encode() + data)
    return h.hexdigest()[:ID_HEX]


def interface(pipeline) -> dict:
    units = getattr(pipeline, "channel_units", None)
    return {
        "channels": list(pipeline.channels),
        "units": list(units) if units else [None] * pipeline.n_channels,
        "input_sample_rate_hz": float(pipeline.input_rate_hz),
        "decimation": int(pipeline.decimation),
        "window_rate_hz": float(pipeline.sample_rate_hz),
        "window_samples": int(pipeline.window_samples),
        "stride_samples": int(pipeline.stride_samples),
        "classes": list(pipeline.class_names),
        "feeding": "windows" if pipeline.recording is None else "recording",
    }


def interface_hash(pipeline) -> int:
    text = json.dumps(interface(pipeline), sort_keys=True, separators=(",", ":"))
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:8], 16)


def created_utc(explicit: str | None = None) -> str:
    if explicit is not None:
        if not _CREATED.match(explicit):
            raise KilomlError(f"creation time {explicit[:40]!r} is not YYYY-MM-DDTHH:MM:SSZ")
        return explicit
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch is not None and epoch.strip():
        try:
            seconds = int(epoch)
        except ValueError:
            raise KilomlError(f"SOURCE_DATE_EPOCH {epoch[:40]!r} is not a whole number of "
                              "seconds") from None
        when = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    else:
        when = datetime.datetime.now(datetime.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def created_in(header: Path, prefix: str) -> str | None:
    """The creation time an existing library's header records (None: none readable)."""
    try:
        text = header.read_text()
    except (OSError, UnicodeDecodeError):
        return None
    m = re.search(rf'^#define {re.escape(prefix.upper())}_CREATED_UTC "([^"\n]*)"', text, re.M)
    return m.group(1) if m and _CREATED.match(m.group(1)) else None


def _c_chars(value: str, size: int) -> str:
    text = value.encode("ascii", "replace")[:size - 1].decode("ascii")
    return json.dumps(text)  # a valid C literal for printable ASCII


def header_api() -> str:
    """The struct and macros of the model header (kml_ names; renamed per prefix)."""
    return """
/* Identity of this library (kml_model_info, also in the ELF section ".kml_model_info").
 * A firmware written against this interface checks it at compile time:
 *   #if !KML_INTERFACE_IS(0x01234567u)
 *   #error "the model's interface (channels, units, rates, window, classes) changed"
 *   #endif
 */
typedef struct {
    char magic[8];            /* "KMLINFO" */
    uint32_t layout;          /* 1: this layout */
    uint32_t interface_hash;  /* KML_INTERFACE_HASH */
    char model_id[20];        /* KML_MODEL_ID: 16 hex digits of the content's SHA-256 */
    char prefix[36];          /* the library prefix */
    char kiloml_version[32];
    char created_utc[24];     /* KML_CREATED_UTC */
    char project[64];
} kml_model_info_t;

extern const kml_model_info_t kml_model_info;
#define KML_INTERFACE_IS(hash) (KML_INTERFACE_HASH == (hash))
"""


def header_block(mid: str, ihash: int, created: str, version: str) -> str:
    return (f"/* {BEGIN} (not part of the content KML_MODEL_ID hashes) */\n"
            f'#define KML_MODEL_ID "{mid}"\n'
            f"#define KML_INTERFACE_HASH 0x{ihash:08x}u\n"
            f'#define KML_CREATED_UTC "{created}"\n'
            f'#define KML_KILOML_VERSION "{version}"\n'
            f"/* {END} */\n")


def source_block(prefix: str, project: str, version: str) -> str:
    return f"""
/* The identity record, in its own section. With --gc-sections the linker keeps it when
 * the firmware reads kml_model_info or its linker script says KEEP(*({INFO_SECTION})). */
#if defined(__GNUC__) && defined(__ELF__)
#define KML_INFO_SECTION __attribute__((section("{INFO_SECTION}"), used))
#else
#define KML_INFO_SECTION
#endif
/* {BEGIN} */
KML_INFO_SECTION const kml_model_info_t kml_model_info = {{
    "KMLINFO", {LAYOUT}u, KML_INTERFACE_HASH, KML_MODEL_ID, {_c_chars(prefix, 36)},
    {_c_chars(version, 32)}, KML_CREATED_UTC, {_c_chars(project, 64)}}};
/* {END} */
"""


# --- reading it back ------------------------------------------------------------------


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("ascii", "replace")


def parse_records(data: bytes) -> list[dict]:
    """Every identity record in a section's bytes (several models: one after another)."""
    out = []
    offset = 0
    while offset + RECORD.size <= len(data):
        if data[offset:offset + 8] != MAGIC:
            offset += 4
            continue
        _, layout, ihash, mid, prefix, version, created, project = \
            RECORD.unpack_from(data, offset)
        out.append({"prefix": _text(prefix), "model_id": _text(mid),
                    "interface_hash": f"0x{ihash:08x}", "kiloml_version": _text(version),
                    "created_utc": _text(created), "project": _text(project),
                    "layout": layout})
        offset += RECORD.size
    return out


def elf_section(path: Path, name: str) -> bytes | None:
    """The bytes of section ``name`` of a little-endian ELF file (32 or 64 bit)."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[5] != 1:
        raise KilomlError("not a little-endian ELF file", file=path)
    wide = data[4] == 2
    if wide:
        shoff, = struct.unpack_from("<Q", data, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    else:
        shoff, = struct.unpack_from("<I", data, 0x20)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x2E)

    def header(i: int) -> tuple[int, int, int, int]:
        base = shoff + i * shentsize
        if wide:
            n, kind, _, _, off, size = struct.unpack_from("<IIQQQQ", data, base)
        else:
            n, kind, _, _, off, size = struct.unpack_from("<IIIIII", data, base)
        return n, kind, off, size

    try:
        _, _, str_off, _ = header(shstrndx)
        for i in range(shnum):
            n, kind, off, size = header(i)
            end = data.index(b"\0", str_off + n)
            if data[str_off + n:end].decode("ascii", "replace") == name:
                return b"" if kind == 8 else data[off:off + size]  # SHT_NOBITS: none
    except (struct.error, ValueError):
        raise KilomlError("a truncated or damaged ELF file", file=path) from None
    return None


def read_info(path: Path) -> list[dict]:
    """The identity records of an ELF (a firmware, an object) or a library folder."""
    path = Path(path)
    if path.is_dir():
        return [library_info(path)]
    if not path.is_file():
        raise KilomlError("no such file or folder", file=path)
    section = elf_section(path, INFO_SECTION)
    if section is None:
        raise KilomlError(f"no {INFO_SECTION} section (no kiloml library linked, or one "
                          "older than model identity)", file=path)
    return parse_records(section)


def library_info(directory: Path) -> dict:
    """A library folder's identity from its header, and whether its content still hashes to
    the id it records."""
    headers = sorted(directory.glob("*_model.h"))
    if not headers:
        raise KilomlError("no kiloml model header (*_model.h) here", file=directory)
    text = headers[0].read_text()
    m = re.search(r'^#define (\w+)_MODEL_ID "([0-9a-f]+)"', text, re.M)
    h = re.search(r"^#define \w+_INTERFACE_HASH (0x[0-9a-f]+)u", text, re.M)
    c = re.search(r'^#define \w+_CREATED_UTC "([^"]*)"', text, re.M)
    v = re.search(r'^#define \w+_KILOML_VERSION "([^"]*)"', text, re.M)
    if not (m and h):
        raise KilomlError("the header records no model id (a library older than model "
                          "identity)", file=headers[0])
    files = {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}
    prefix = m.group(1).lower()
    return {"prefix": "kml" if prefix == "kml" else prefix, "model_id": m.group(2),
            "interface_hash": h.group(1), "kiloml_version": v.group(1) if v else None,
            "created_utc": c.group(1) if c else None, "header": headers[0].name,
            "content_matches_id": model_id(files) == m.group(2)}
