"""WAV recordings: integer PCM of 1 to 32 bits or float, mono or multichannel, scaled to
[-1, 1).

The RIFF structure is checked here before scipy reads the samples: the form, every
chunk's size against the bytes that follow it, the format chunk (channels, rate,
bit depth, frame size) and the data chunk. A malformed header is one line naming the
field, not a scipy exception, and a size field that claims more than the file holds
is never allocated.
"""

from __future__ import annotations

import os
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from scipy.io import wavfile

from kiloml.data.files import open_regular
from kiloml.data.recording import MAX_RECORDING_VALUES
from kiloml.errors import KilomlError

# Full-scale value of each integer sample type as scipy returns it (left-justified:
# 24-bit PCM comes back in int32, so it shares the 32-bit scale; 12-bit in int16).
_FULL_SCALE = {np.dtype(np.int16): 32768.0, np.dtype(np.int32): 2147483648.0}

PCM, IEEE_FLOAT, EXTENSIBLE = 0x0001, 0x0003, 0xFFFE
_NAMED_FORMATS = {0x0002: "ADPCM", 0x0006: "A-law", 0x0007: "mu-law", 0x0011: "IMA ADPCM",
                  0x0055: "MP3"}
MAX_CHANNELS = 1024
MAX_CHUNKS = 10_000  # a WAV has a handful; a million tiny chunks is not a recording


@dataclass
class WavFormat:
    tag: int  # PCM or IEEE_FLOAT (an extensible header's sub-format)
    channels: int
    rate_hz: int
    block_align: int
    bits: int
    frames: int


def read_wav(path: Path, display: str) -> tuple[np.ndarray, float]:
    """Samples [T, C] float32 in [-1, 1) and the sample rate in Hz."""
    with open_regular(path, display) as f:
        size = os.fstat(f.fileno()).st_size
        header = check_wav_header(f, size, display)
        f.seek(0)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", wavfile.WavFileWarning)
                rate, data = wavfile.read(f)
        except (ValueError, EOFError, OSError, IndexError, struct.error, TypeError) as exc:
            raise KilomlError(f"not a readable WAV file: {exc}", file=display) from None
    data = data.astype(data.dtype.newbyteorder("="), copy=False)  # RIFX is big-endian
    if data.ndim == 1:
        data = data[:, None]
    if data.shape[0] == 0:
        raise KilomlError("the WAV file holds no samples", file=display)
    if data.shape[1] != header.channels:
        raise KilomlError(f"the samples have {data.shape[1]} channels, the header says "
                          f"{header.channels}", file=display)
    if data.dtype == np.uint8:
        samples = (data.astype(np.float32) - 128.0) / 128.0
    elif data.dtype in _FULL_SCALE:
        samples = (data.astype(np.float64) / _FULL_SCALE[data.dtype]).astype(np.float32)
    elif data.dtype.kind == "f":
        with np.errstate(over="ignore"):
            samples = data.astype(np.float32)
        bad = np.argwhere(~np.isfinite(samples))
        if len(bad):
            t, c = bad[0]
            raise KilomlError(f"sample {t} of channel {c} is not finite (or too large for "
                              f"float32)", file=display)
    else:
        raise KilomlError(f"unsupported WAV sample type {data.dtype}", file=display)
    return samples, float(rate)


def check_wav_header(f: BinaryIO, file_size: int, display: str) -> WavFormat:
    """Walk the RIFF chunks of an open WAV file; the format and the number of frames."""
    def fail(message: str) -> KilomlError:
        return KilomlError(message, file=display)

    head = f.read(12)
    if len(head) < 12:
        raise fail(f"{file_size} bytes: too short for a WAV header (12 bytes of RIFF)")
    form, order = head[:4], "<"
    if form == b"RIFX":
        order = ">"
    elif form not in (b"RIFF", b"RF64"):
        raise fail(f"not a WAV file: it starts with {head[:4]!r}, not 'RIFF'")
    if head[8:12] != b"WAVE":
        raise fail(f"not a WAV file: the RIFF form is {head[8:12]!r}, not 'WAVE'")
    (riff_size,) = struct.unpack(order + "I", head[4:8])
    data_size_64 = None
    if form == b"RF64":
        ds64 = f.read(36)
        if len(ds64) < 36 or ds64[:4] != b"ds64":
            raise fail("RF64 file without its ds64 chunk")
        (ds64_size,) = struct.unpack("<I", ds64[4:8])
        riff_64, data_size_64 = struct.unpack("<QQ", ds64[8:24])
        if ds64_size < 28 or 20 + ds64_size > file_size:
            raise fail(f"RF64 ds64 chunk of {ds64_size} bytes does not fit the file")
        f.seek(20 + ds64_size + (ds64_size & 1))
        declared = riff_64 + 8
    else:
        declared = riff_size + 8
    if declared > file_size:
        raise fail(f"the RIFF header says the file has {declared:,} bytes, it has "
                   f"{file_size:,} (truncated?)")
    # scipy walks the chunks the RIFF size covers: so does this check (a data chunk past
    # a too-small RIFF size would be a chunk scipy never reads)
    end = min(declared, file_size)
    fmt: WavFormat | None = None
    for _ in range(MAX_CHUNKS):
        at = f.tell()
        if at + 8 > end:
            break
        chunk = f.read(8)
        name = chunk[:4]
        (size,) = struct.unpack(order + "I", chunk[4:8])
        if name == b"data" and data_size_64 is not None and size == 0xFFFFFFFF:
            size = data_size_64
        shown = name.decode("latin-1")
        if size > file_size - at - 8:
            raise fail(f"chunk '{shown}' at byte {at} declares {size:,} bytes, only "
                       f"{file_size - at - 8:,} follow (truncated?)")
        if at + 8 + size > end:
            raise fail(f"chunk '{shown}' at byte {at} ends at byte {at + 8 + size:,}, past "
                       f"the {declared:,} bytes the RIFF header declares")
        if name == b"fmt ":
            fmt = _format_chunk(f.read(size), order, fail)
        elif name == b"data":
            if fmt is None:
                raise fail("the data chunk comes before the 'fmt ' chunk")
            if size % fmt.block_align:
                raise fail(f"data chunk of {size:,} bytes is not a whole number of "
                           f"{fmt.block_align}-byte frames")
            fmt.frames = size // fmt.block_align
            if fmt.frames == 0:
                raise fail("the WAV file holds no samples (empty data chunk)")
            if fmt.frames * fmt.channels > MAX_RECORDING_VALUES:
                raise fail(f"{fmt.frames:,} frames x {fmt.channels} channels is more than "
                           f"kiloml holds for one recording ({MAX_RECORDING_VALUES:,} values)")
            return fmt
        else:
            f.seek(size, os.SEEK_CUR)
        if size & 1:  # chunks are padded to an even length
            f.seek(1, os.SEEK_CUR)
    else:
        raise fail(f"more than {MAX_CHUNKS:,} chunks before the data chunk")
    raise fail("no 'fmt ' chunk" if fmt is None else "no data chunk: the file holds no samples")


def _format_chunk(body: bytes, order: str, fail) -> WavFormat:
    if len(body) < 16:
        raise fail(f"the 'fmt ' chunk has {len(body)} bytes, at least 16 are needed")
    tag, channels, rate, byte_rate, block_align, bits = struct.unpack(order + "HHIIHH",
                                                                      body[:16])
    if tag == EXTENSIBLE:
        if len(body) < 40:
            raise fail(f"an extensible 'fmt ' chunk needs 40 bytes, it has {len(body)}")
        (valid_bits,) = struct.unpack(order + "H", body[18:20])
        (tag,) = struct.unpack(order + "H", body[24:26])  # the sub-format GUID's first field
        if valid_bits > bits:
            raise fail(f"the extensible header's valid bits ({valid_bits}) exceed the "
                       f"sample container ({bits} bits)")
    if tag not in (PCM, IEEE_FLOAT):
        what = _NAMED_FORMATS.get(tag, "compressed")
        raise fail(f"WAV format 0x{tag:04x} ({what}) is not supported: integer PCM or "
                   f"IEEE float only")
    if channels == 0:
        raise fail("the header says 0 channels")
    if channels > MAX_CHANNELS:
        raise fail(f"the header says {channels:,} channels (at most {MAX_CHANNELS})")
    if rate == 0:
        raise fail("the header says a sample rate of 0 Hz")
    if tag == PCM and not 1 <= bits <= 32:
        raise fail(f"{bits}-bit integer PCM is not supported (1 to 32 bits)")
    if tag == IEEE_FLOAT and bits not in (32, 64):
        raise fail(f"{bits}-bit floating point is not a WAV float format (32 or 64 bits)")
    container = -(-bits // 8)
    if block_align == 0 or block_align % channels or block_align // channels < container:
        raise fail(f"frame size (block align) {block_align} bytes does not hold {channels} "
                   f"channel(s) of {bits}-bit samples")
    per_sample = block_align // channels
    if (tag == IEEE_FLOAT and per_sample != bits // 8) or per_sample > 4 + 4 * (tag != PCM) \
            or (bits <= 8 and per_sample != 1):  # scipy reads 8-bit and less as one byte
        raise fail(f"{per_sample}-byte samples for {bits}-bit "
                   f"{'float' if tag == IEEE_FLOAT else 'PCM'} are not supported")
    if tag == PCM and byte_rate != rate * block_align:
        raise fail(f"the byte rate {byte_rate:,} is not rate x frame size "
                   f"({rate:,} x {block_align})")
    return WavFormat(tag, channels, rate, block_align, bits, 0)
