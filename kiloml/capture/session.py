"""The capture loop: read the port until the recording is long enough, the device ends
it, stops sending or vanishes; decode samples and count what the link did to them."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from kiloml.capture.kml_protocol import (
    MAX_CHANNELS,
    End,
    FrameDecoder,
    Hello,
    Sample,
)
from kiloml.capture.text_protocol import TextDecoder
from kiloml.errors import KilomlError

Protocol = Literal["text", "kml"]
RATE_TOLERANCE = 0.05  # the same 5% `kiloml run` allows between timestamps and the rate
U32 = 1 << 32
# A channel name becomes a CSV header cell that `kiloml run` reads back: no separators,
# quotes or spaces at the ends, and not a name it would take as the timestamp column.
CHANNEL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-+()\[\]/ ]*[A-Za-z0-9_.\-+()\[\]/]|"
                          r"[A-Za-z0-9_]")


@dataclass
class Settings:
    port: str
    protocol: Protocol
    seconds: float
    rate_hz: float | None = None  # --rate-hz: checked against what arrives
    channels: list[str] | None = None  # --channels
    timeout_s: float = 5.0  # no sample for this long: the device stopped


EndReason = Literal["duration", "end frame", "vanished", "stalled"]


@dataclass
class Capture:
    settings: Settings
    channels: list[str] = field(default_factory=list)
    units: list[str] | None = None  # kml: the device's
    device_rate_hz: float | None = None  # kml: the rate its hello declares
    rows: list[list[str]] = field(default_factory=list)  # text: the cells as sent
    values: list[bytes] = field(default_factory=list)  # kml: float32 LE per sample
    seq: list[int] = field(default_factory=list)  # kml
    t_us: list[int] = field(default_factory=list)  # kml, unwrapped past 2^32
    arrival_s: list[float] = field(default_factory=list)  # host clock, from the start
    bytes_received: int = 0
    corrupt_frames: int = 0  # kml: CRC, COBS or layout wrong
    dropped_frames: int = 0  # kml: sequence numbers that never arrived
    out_of_order_frames: int = 0  # kml: a sequence number at or before the last one
    before_hello_frames: int = 0  # kml: samples before the first hello (discarded)
    repeated_hellos: int = 0
    samples_sent: int | None = None  # kml: the END frame's count
    skipped_lines: int = 0  # text: the first line and banner lines
    partial_bytes: int = 0  # an unfinished line or frame when the capture ended
    end: EndReason = "duration"
    end_detail: str = ""
    elapsed_s: float = 0.0

    @property
    def n_samples(self) -> int:
        return len(self.arrival_s)


def check_channel_names(names: list[str], where: str) -> None:
    if not names:
        raise KilomlError(f"{where}: no channel names")
    if len(names) > MAX_CHANNELS:
        raise KilomlError(f"{where}: {len(names)} channels; at most {MAX_CHANNELS}")
    from kiloml.data.csv_ingest import TIMESTAMP_NAME

    for name in names:
        if not CHANNEL_NAME.fullmatch(name):
            raise KilomlError(f"{where}: channel name '{name}' is not usable as a CSV column "
                              f"(letters, digits and _ . - + ( ) [ ] / and inner spaces)")
        if name == "t" or TIMESTAMP_NAME.match(name):
            raise KilomlError(f"{where}: channel name '{name}' is what `kiloml run` takes for "
                              f"the timestamp column (the recording's own is 't'): rename it")
    seen = {n for n in names if names.count(n) > 1}
    if seen:
        raise KilomlError(f"{where}: channel name '{sorted(seen)[0]}' appears twice")


class Session:
    """One capture from an open port (see port.open_port); ``run`` returns the Capture or
    raises a KilomlError when nothing usable came."""

    def __init__(self, settings: Settings, handle: Any,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.handle = handle
        self.clock = clock
        self.capture = Capture(settings)
        self.text = TextDecoder(len(settings.channels) if settings.channels else None,
                                source=settings.port)
        self.frames = FrameDecoder()
        self.hello: Hello | None = None
        self.start = 0.0
        self.done = False

    def run(self) -> Capture:
        import serial

        cap = self.capture
        self.start = self.clock()
        last_progress = self.start
        while not self.done:
            try:
                waiting = self.handle.in_waiting
                data = self.handle.read(max(1, min(waiting, 65536)))
            except (serial.SerialException, OSError) as exc:
                self._ended("vanished", f"the port closed or failed ({exc})")
                break
            now = self.clock()
            if data:
                cap.bytes_received += len(data)
                before = cap.n_samples
                self._feed(data, now - self.start)
                if cap.n_samples > before:
                    last_progress = now
            if not self.done and now - last_progress > self.settings.timeout_s:
                if not cap.n_samples:
                    raise self._nothing_came()
                self._ended("stalled", f"no sample for {self.settings.timeout_s:g} s")
        cap.elapsed_s = self.clock() - self.start
        cap.partial_bytes = self.frames.pending if self.settings.protocol == "kml" \
            else self.text.pending
        cap.corrupt_frames = self.frames.corrupt
        cap.skipped_lines = self.text.skipped_lines
        if not cap.n_samples:
            raise self._nothing_came()
        if not cap.channels:  # text: --channels, else named after the first line's count
            cap.channels = list(self.settings.channels or
                                [f"ch{i}" for i in range(self.text.channels or 0)])
        return cap

    def _ended(self, reason: EndReason, detail: str) -> None:
        self.capture.end = reason
        self.capture.end_detail = detail
        self.done = True

    def _feed(self, data: bytes, at: float) -> None:
        if self.settings.protocol == "text":
            for sample in self.text.feed(data):
                self.capture.rows.append(sample.values)
                self.capture.arrival_s.append(at)
                self._check_length()
                if self.done:
                    return
        else:
            for message in self.frames.feed(data):
                self._message(message, at)
                if self.done:
                    return

    def _check_length(self) -> None:
        cap, s = self.capture, self.settings
        if s.protocol == "kml":
            rate = cap.device_rate_hz or 0.0
            span = cap.seq[-1] - cap.seq[0] + 1  # frames dropped on the way count too
            if span >= max(1, round(s.seconds * rate)):
                self._ended("duration", f"{s.seconds:g} s of samples")
        elif s.rate_hz is not None:
            if cap.n_samples >= max(1, round(s.seconds * s.rate_hz)):
                self._ended("duration", f"{s.seconds:g} s of samples at {s.rate_hz:g} Hz")
        elif cap.arrival_s[-1] - cap.arrival_s[0] >= s.seconds:
            self._ended("duration", f"{s.seconds:g} s of arrivals")

    def _message(self, message: Hello | Sample | End, at: float) -> None:
        cap = self.capture
        if isinstance(message, Hello):
            self._on_hello(message)
        elif isinstance(message, End):
            cap.samples_sent = message.samples_sent
            if cap.seq:
                cap.dropped_frames += max(0, message.samples_sent - 1 - cap.seq[-1])
            self._ended("end frame", f"the device sent its end frame after "
                                     f"{message.samples_sent} samples")
        elif self.hello is None:
            cap.before_hello_frames += 1
        elif len(message.values) != 4 * len(cap.channels):
            self.frames.corrupt += 1  # a valid CRC but not this device's layout
        else:
            self._on_sample(message, at)

    def _on_hello(self, hello: Hello) -> None:
        cap, s = self.capture, self.settings
        if self.hello is not None:
            if hello != self.hello:
                raise KilomlError(f"the device sent a different hello frame mid-capture "
                                  f"(channels {', '.join(hello.channels)} at "
                                  f"{hello.rate_hz:g} Hz, before: "
                                  f"{', '.join(self.hello.channels)} at "
                                  f"{self.hello.rate_hz:g} Hz): it restarted or changed "
                                  f"its settings; capture again")
            cap.repeated_hellos += 1
            return
        check_channel_names(hello.channels, "the device's hello frame")
        if not (math.isfinite(hello.rate_hz) and hello.rate_hz > 0):
            raise KilomlError(f"the device's hello frame declares a sample rate of "
                              f"{hello.rate_hz:g} Hz")
        if s.rate_hz is not None and abs(hello.rate_hz - s.rate_hz) > RATE_TOLERANCE * s.rate_hz:
            raise KilomlError(f"the device declares {hello.rate_hz:g} Hz in its hello frame, "
                              f"--rate-hz says {s.rate_hz:g}")
        names = hello.channels
        if s.channels is not None:
            if len(s.channels) != len(names):
                raise KilomlError(f"--channels names {len(s.channels)} channels, the device "
                                  f"sends {len(names)} ({', '.join(names)})")
            names = list(s.channels)
        self.hello = hello
        cap.channels = names
        cap.units = list(hello.units)
        cap.device_rate_hz = hello.rate_hz

    def _on_sample(self, sample: Sample, at: float) -> None:
        cap = self.capture
        if cap.seq:
            step = (sample.seq - cap.seq[-1]) % U32
            if step == 0 or step >= U32 // 2:
                cap.out_of_order_frames += 1
                return
            cap.dropped_frames += step - 1
            last_raw = cap.t_us[-1] % U32
            t = cap.t_us[-1] + (sample.t_us - last_raw) % U32
            seq = cap.seq[-1] + step
        else:
            t, seq = sample.t_us, sample.seq
        cap.seq.append(seq)
        cap.t_us.append(t)
        cap.values.append(sample.values)
        cap.arrival_s.append(at)
        self._check_length()

    def _nothing_came(self) -> KilomlError:
        cap, s = self.capture, self.settings
        port = s.port
        waited = f"{s.timeout_s:g} s"
        if cap.end == "vanished" and self.done:
            return KilomlError(f"{port}: the device vanished before sending a sample "
                               f"({cap.end_detail}); nothing was written")
        if not cap.bytes_received:
            return KilomlError(f"{port}: no data from the device in {waited} (timeout): is "
                               f"it running and sending, and on this port?")
        if s.protocol == "text":
            first = self.text.first_skipped
            want = f" of {len(s.channels)} values" if s.channels else ""
            shown = f" (the first: '{first}')" if first else ""
            return KilomlError(f"{port}: {cap.bytes_received} bytes and {self.text.lines} "
                               f"lines in {waited}, none a line of numbers{want}{shown}: "
                               f"check --baud and --protocol")
        if self.hello is not None:
            return KilomlError(f"{port}: a hello frame but no sample frame in {waited}: is "
                               f"the device calling kml_capture_sample?")
        if cap.before_hello_frames:
            return KilomlError(f"{port}: {cap.before_hello_frames} sample frames in {waited} "
                               f"but no hello frame: the device must send one first "
                               f"(kml_capture_hello) and repeat it now and then")
        return KilomlError(f"{port}: {cap.bytes_received} bytes in {waited} but no valid kml "
                           f"frame ({self.frames.corrupt} corrupt): check --baud and "
                           f"--protocol")
