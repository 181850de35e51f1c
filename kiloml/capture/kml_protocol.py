"""kiloml's capture protocol: frames a device sends, and their decoder.

On the wire every frame is ``COBS(payload + crc) 0x00``: COBS removes every zero byte from
the frame, so 0x00 marks only frame ends and a receiver that lost bytes (or started in the
middle of a frame) resynchronizes at the next zero. ``crc`` is CRC-16/CCITT-FALSE of the
payload (poly 0x1021, init 0xFFFF, not reflected, no final XOR; "123456789" -> 0x29B1),
low byte first. Payloads (little-endian; docs/capture_protocol.md is the specification):

    HELLO  01 | version u8 | channels u8 | rate_hz f32 | per channel: len u8, name,
                                                          len u8, unit
    SAMPLE 02 | seq u32 | t_us u32 | value f32 x channels
    END    03 | samples_sent u32

kiloml/runtime/kml_capture.c is the sender for firmware; ``encode_*`` here are the same
frames in Python (tests and simulators).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from kiloml.crc16 import crc16_ccitt_false

PROTOCOL_VERSION = 1
HELLO, SAMPLE, END = 0x01, 0x02, 0x03
MAX_CHANNELS = 32
MAX_NAME_BYTES = 31  # a channel name or unit, UTF-8
# The longest frame a valid sender writes (a HELLO of 32 channels with 31-byte names and
# units, its CRC and COBS overhead) fits in this; longer runs without a zero are garbage.
MAX_FRAME_BYTES = 4096


def cobs_encode(data: bytes) -> bytes:
    out = bytearray()
    block = bytearray()
    for byte in data:
        if byte == 0:
            out.append(len(block) + 1)
            out += block
            block.clear()
        else:
            block.append(byte)
            if len(block) == 254:
                out.append(255)
                out += block
                block.clear()
    out.append(len(block) + 1)
    out += block
    return bytes(out)


def cobs_decode(data: bytes) -> bytes | None:
    """The decoded bytes, or None when ``data`` is not valid COBS (a zero inside, a block
    code pointing past the end)."""
    out = bytearray()
    i = 0
    while i < len(data):
        code = data[i]
        end = i + code
        if code == 0 or end > len(data):
            return None
        block = data[i + 1:end]
        if 0 in block:
            return None
        out += block
        i = end
        if code < 255 and i < len(data):
            out.append(0)
    return bytes(out)


def frame(payload: bytes) -> bytes:
    """The wire bytes of one frame: COBS of payload and its CRC, then the 0x00 delimiter."""
    return cobs_encode(payload + struct.pack("<H", crc16_ccitt_false(payload))) + b"\x00"


@dataclass(frozen=True)
class Hello:
    channels: list[str]
    units: list[str]
    rate_hz: float
    version: int = PROTOCOL_VERSION


@dataclass(frozen=True)
class Sample:
    seq: int
    t_us: int
    values: bytes  # the float32 values as sent (little-endian), kept bit for bit


@dataclass(frozen=True)
class End:
    samples_sent: int


Message = Hello | Sample | End


def encode_hello(hello: Hello) -> bytes:
    body = bytearray(struct.pack("<BBBf", HELLO, hello.version, len(hello.channels),
                                 hello.rate_hz))
    for name, unit in zip(hello.channels, hello.units, strict=True):
        for text in (name, unit):
            raw = text.encode("utf-8")
            body += bytes([len(raw)]) + raw
    return b"\x00" + frame(bytes(body))  # a leading zero: the receiver starts clean


def encode_sample(seq: int, t_us: int, values: bytes) -> bytes:
    return frame(struct.pack("<BII", SAMPLE, seq & 0xFFFFFFFF, t_us & 0xFFFFFFFF) + values)


def encode_end(samples_sent: int) -> bytes:
    return frame(struct.pack("<BI", END, samples_sent & 0xFFFFFFFF))


class FrameError(ValueError):
    """A frame whose CRC, COBS or layout is wrong (counted as corrupt, not fatal)."""


def parse_payload(payload: bytes) -> Message:
    if not payload:
        raise FrameError("empty frame")
    kind = payload[0]
    if kind == HELLO:
        return _parse_hello(payload)
    if kind == SAMPLE:
        if len(payload) < 9 or (len(payload) - 9) % 4:
            raise FrameError(f"sample frame of {len(payload)} bytes")
        seq, t_us = struct.unpack_from("<II", payload, 1)
        return Sample(seq, t_us, payload[9:])
    if kind == END:
        if len(payload) != 5:
            raise FrameError(f"end frame of {len(payload)} bytes")
        return End(struct.unpack_from("<I", payload, 1)[0])
    raise FrameError(f"unknown frame type 0x{kind:02x}")


def _parse_hello(payload: bytes) -> Hello:
    try:
        _, version, n, rate = struct.unpack_from("<BBBf", payload, 0)
        at = 7
        texts = []
        for _ in range(2 * n):
            size = payload[at]
            raw = payload[at + 1:at + 1 + size]
            if len(raw) != size:
                raise FrameError("hello frame cut short")
            texts.append(raw.decode("utf-8"))
            at += 1 + size
    except (struct.error, IndexError, UnicodeDecodeError) as exc:
        raise FrameError(f"malformed hello frame ({exc})") from None
    if at != len(payload):
        raise FrameError("hello frame has bytes after its last channel")
    return Hello(texts[0::2], texts[1::2], rate, version)


class FrameDecoder:
    """Bytes in (any chunking), messages out. Bytes before the first zero are skipped
    (the receiver may have started mid-frame; a sender's HELLO begins with a zero, so a
    clean start loses nothing); afterwards every bad frame is counted in ``corrupt``."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.synced = False
        self.corrupt = 0
        self.skipped_bytes = 0  # before the first delimiter

    def feed(self, data: bytes) -> list[Message]:
        out: list[Message] = []
        self.buffer += data
        while True:
            end = self.buffer.find(0)
            if end < 0:
                if len(self.buffer) > MAX_FRAME_BYTES:  # no delimiter for too long
                    if self.synced:
                        self.corrupt += 1
                    else:
                        self.skipped_bytes += len(self.buffer)
                    self.buffer.clear()
                    self.synced = True  # everything from here on is counted
                return out
            chunk = bytes(self.buffer[:end])
            del self.buffer[:end + 1]
            if not self.synced:
                self.synced = True
                self.skipped_bytes += len(chunk)
                continue
            if not chunk:
                continue  # an empty frame: a sender's resynchronizing zero
            message = self._decode(chunk)
            if message is None:
                self.corrupt += 1
            else:
                out.append(message)

    @property
    def pending(self) -> int:
        """Bytes of a frame not yet ended by its delimiter (dropped if the link ends)."""
        return len(self.buffer)

    @staticmethod
    def _decode(chunk: bytes) -> Message | None:
        body = cobs_decode(chunk)
        if body is None or len(body) < 3:
            return None
        payload, crc = body[:-2], struct.unpack("<H", body[-2:])[0]
        if crc16_ccitt_false(payload) != crc:
            return None
        try:
            return parse_payload(payload)
        except FrameError:
            return None
