"""Talk to a device running the replay firmware: hello, then every held-out recording
sample by sample (one answer per sample, so a device without a receive FIFO keeps up),
and the parity of its decisions with the Python reference's."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kiloml.errors import KilomlError
from kiloml.replay import protocol

FIRMWARE = "examples/replay of `kiloml export --format cmake`"


class LineReader:
    """Lines from a pyserial port whose read() returns after a short timeout."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.buffer = bytearray()

    def line(self, timeout_s: float) -> str | None:
        deadline = time.monotonic() + timeout_s
        while True:
            end = self.buffer.find(b"\n")
            if end >= 0:
                text = self.buffer[:end].decode("ascii", errors="replace").strip()
                del self.buffer[:end + 1]
                return text
            if time.monotonic() > deadline:
                return None
            try:
                waiting = self.handle.in_waiting
                chunk = self.handle.read(max(1, waiting))
            except Exception as exc:  # pyserial raises SerialException / OSError
                raise KilomlError(f"the device's port failed while replaying: "
                                  f"{str(exc).strip() or type(exc).__name__}") from None
            self.buffer += chunk


@dataclass
class Replayed:
    recording: list[int] = field(default_factory=list)
    last_sample: list[int] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    scores: list[np.ndarray] = field(default_factory=list)
    samples_sent: int = 0


def hello(reader: LineReader, port: str, baud: int, timeout_s: float
          ) -> protocol.DeviceInterface:
    reader.handle.write(protocol.HELLO)
    reader.handle.flush()
    deadline = time.monotonic() + timeout_s
    seen = []
    while (left := deadline - time.monotonic()) > 0:
        line = reader.line(left)
        if line is None:
            break
        interface = protocol.parse_hello(line)
        if interface is not None:
            return interface
        seen.append(line)  # boot messages, or another program on the port
    if seen:
        raise KilomlError(f"the device on '{port}' answered the hello with "
                          f"{seen[-1][:60]!r}, not '{protocol.HELLO_TAG} 1 ...': it does not "
                          f"run the replay firmware ({FIRMWARE})")
    raise KilomlError(f"no reply from the device on '{port}' within {timeout_s:g} s (sent "
                      f"the hello 'H' at {baud} baud): is the replay firmware ({FIRMWARE}) "
                      f"running, at this baud rate?")


def stream(reader: LineReader, recordings: list[np.ndarray], classes: int,
           timeout_s: float) -> Replayed:
    out = Replayed()
    handle = reader.handle
    total = sum(len(r) for r in recordings)
    for r, samples in enumerate(recordings):
        handle.write(protocol.RESET)
        answer = reader.line(timeout_s)
        if answer != "Z":
            raise _stopped(out.samples_sent, total, r, 0, timeout_s, answer, "the reset 'Z'")
        for i, sample in enumerate(samples):
            handle.write(protocol.sample_frame(sample))
            answer = reader.line(timeout_s)
            if answer is None:
                raise _stopped(out.samples_sent, total, r, i, timeout_s, None, "a sample")
            parsed = protocol.parse_answer(answer, classes)
            if isinstance(parsed, str):
                raise _stopped(out.samples_sent, total, r, i, timeout_s, parsed, "a sample")
            out.samples_sent += 1
            if parsed is not None:
                out.recording.append(r)
                out.last_sample.append(i)
                out.labels.append(parsed.label)
                out.scores.append(parsed.scores)
    return out


def _stopped(sent: int, total: int, r: int, i: int, timeout_s: float, answer: str | None,
             what: str) -> KilomlError:
    where = f"after {sent:,} of {total:,} samples (recording {r}, sample {i})"
    if answer is None:
        return KilomlError(f"the device stopped answering {where}: no reply to {what} "
                           f"within {timeout_s:g} s")
    return KilomlError(f"the device answered {answer[:60]!r} to {what} {where}; expected "
                       f"'-' or '<label> <score bits>...'")


def parity(held, replayed: Replayed, class_names: list[str]) -> dict:
    """Decisions equal / total (a window counts when the device reported it after the same
    sample with the same label), windows at the same samples, scores bit for bit, and the
    first difference (like `kiloml verify`'s streaming parity)."""
    ref = list(zip(held.window_recording.tolist(), held.window_last_sample.tolist(),
                   held.labels.tolist(), strict=True))
    dev = list(zip(replayed.recording, replayed.last_sample, replayed.labels, strict=True))

    def where(w: tuple[int, int, int] | None) -> str:
        if w is None:
            return "no window"
        r, i, label = w
        name = f" '{class_names[label]}'" if 0 <= label < len(class_names) else ""
        return f"{label}{name} after sample {i} of recording {r}"
    equal = sum(1 for a, b in zip(ref, dev, strict=False) if a == b)
    first = None
    for k in range(max(len(ref), len(dev))):
        a = ref[k] if k < len(ref) else None
        b = dev[k] if k < len(dev) else None
        if a != b:
            first = {"window": k, "python": where(a), "device": where(b)}
            break
    windows_equal = [w[:2] for w in ref] == [w[:2] for w in dev]
    bit_exact = None
    if held.device_scores is not None and windows_equal and ref:
        got = np.stack(replayed.scores).astype(np.float32)
        bit_exact = bool(np.array_equal(got.view(np.int32),
                                        held.device_scores.astype(np.float32).view(np.int32)))
    return {"n": len(ref), "n_reported": len(dev), "decisions_equal": equal,
            "all_decisions_equal": equal == len(ref) == len(dev),
            "windows_equal": windows_equal, "device_scores_bit_exact": bit_exact,
            "first_difference": first}
