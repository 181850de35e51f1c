"""The text protocol: one line of numbers per sample, as Edge Impulse's data forwarder
reads a device (values separated by commas or tabs, or else by spaces; lines end with
LF or CRLF).

Like the data forwarder, the first line received is dropped (the capture may have
started in the middle of it) and the number of values of the first sample line fixes the
number of channels (unless --channels names them). Lines that are not numbers before the
first sample (a boot banner) are skipped and counted; after it, a line with another
number of values or a cell that is not a number is an error naming the line and sample.
Values are kept as the device wrote them, so the recording holds its exact text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from kiloml.errors import KilomlError

MAX_LINE_BYTES = 4096
NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
SEPARATOR = re.compile(r"\s*[,\t]\s*")


def split_values(line: str) -> list[str]:
    if "," in line or "\t" in line:
        return SEPARATOR.split(line)
    return line.split()


def is_numbers(cells: list[str]) -> bool:
    return bool(cells) and all(NUMBER.fullmatch(c) for c in cells)


@dataclass
class TextSample:
    values: list[str]
    line: int  # the line's number among those received (the dropped first one is 1)


@dataclass
class TextDecoder:
    channels: int | None = None  # fixed by --channels, else by the first sample line
    source: str = "device"  # the port, in error messages
    buffer: bytearray = field(default_factory=bytearray)
    lines: int = 0  # complete lines received
    samples: int = 0
    skipped_lines: int = 0  # the first (possibly partial) line and banner lines
    first_skipped: str | None = None  # shown when no sample line ever comes

    def feed(self, data: bytes) -> list[TextSample]:
        self.buffer += data
        out: list[TextSample] = []
        while True:
            end = self.buffer.find(b"\n")
            if end < 0:
                if len(self.buffer) > MAX_LINE_BYTES:
                    self._long_line()
                return out
            raw = bytes(self.buffer[:end])
            del self.buffer[:end + 1]
            self.lines += 1
            sample = self._line(raw)
            if sample is not None:
                out.append(sample)

    @property
    def pending(self) -> int:
        """Bytes of a line not yet ended by its newline (dropped if the link ends)."""
        return len(self.buffer)

    def _line(self, raw: bytes) -> TextSample | None:
        text = raw.decode("utf-8", errors="replace").strip()
        if self.lines == 1:  # possibly the tail of a line sent before the capture began
            self.skipped_lines += 1
            return None
        if not text:
            return None
        cells = split_values(text)
        if not self.samples and not (is_numbers(cells) and
                                     (self.channels is None or len(cells) == self.channels)):
            if self.first_skipped is None:
                self.first_skipped = text[:60]
            self.skipped_lines += 1
            return None
        where = f"{self.source}: line {self.lines} (sample {self.samples + 1})"
        if self.channels is None:
            self.channels = len(cells)
        if len(cells) != self.channels:
            raise KilomlError(f"{where}: {len(cells)} values, expected {self.channels} "
                              f"(like the first sample line): '{text[:80]}'")
        for i, cell in enumerate(cells):
            if not NUMBER.fullmatch(cell):
                shown = "an empty value" if not cell else f"'{cell[:30]}'"
                raise KilomlError(f"{where}: value {i + 1} is {shown}, not a number: "
                                  f"'{text[:80]}'")
        self.samples += 1
        return TextSample(cells, self.lines)

    def _long_line(self) -> None:
        if self.samples:
            raise KilomlError(f"{self.source}: line {self.lines + 1} (sample "
                              f"{self.samples + 1}): more than "
                              f"{MAX_LINE_BYTES} bytes without a newline: is the device "
                              f"sending text lines (--protocol text)?")
        self.buffer.clear()  # garbage before the first sample: keep looking
        self.skipped_lines += 1
