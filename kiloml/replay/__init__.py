"""`kiloml replay`: hardware in the loop. The run's held-out recordings go to a device
running the exported library's replay firmware, sample by sample over a serial port; its
decisions come back and are compared with the Python reference's."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from kiloml.errors import KilomlError

REPLAY_FILE = "replay.json"  # in the run's verify/ folder
DEFAULT_TIMEOUT_S = 5.0


@dataclass
class ReplayOutcome:
    result: dict
    path: Path

    @property
    def ok(self) -> bool:
        return bool(self.result["all_decisions_equal"])


def replay_run(run_dir: Path, port: str, baud: int = 115200, *,
               timeout_s: float = DEFAULT_TIMEOUT_S,
               max_recordings: int | None = None) -> ReplayOutcome:
    from kiloml.atomic import write_text_atomically
    from kiloml.capture.port import open_port
    from kiloml.export.common import held_out, read_run
    from kiloml.replay import session

    if timeout_s <= 0:
        raise KilomlError(f"--timeout {timeout_s:g}: give a positive number of seconds")
    if max_recordings is not None and max_recordings < 1:
        raise KilomlError(f"--recordings {max_recordings}: give at least 1")
    run = read_run(Path(run_dir))
    p = run.pipeline
    held = held_out(run.reference, max_recordings=max_recordings)
    handle = open_port(port, baud)
    try:
        reader = session.LineReader(handle)
        device = session.hello(reader, port, baud, timeout_s)
        want = (p.n_channels, p.n_classes, p.window_samples, p.stride_samples)
        got = (device.channels, device.classes, device.window, device.stride)
        if got != want:
            raise KilomlError(f"the device runs another model: {got[0]} channels, {got[1]} "
                              f"classes, windows of {got[2]} every {got[3]} samples; the run's "
                              f"has {want[0]}, {want[1]}, {want[2]} every {want[3]}")
        start = time.monotonic()
        replayed = session.stream(reader, held.recordings, p.n_classes, timeout_s)
        seconds = time.monotonic() - start
    finally:
        handle.close()
    result = session.parity(held, replayed, list(p.class_names))
    result.update({"port": port, "baud": baud, "n_recordings": len(held.recordings),
                   "n_samples": replayed.samples_sent, "seconds": round(seconds, 3),
                   "samples_per_s": round(replayed.samples_sent / seconds, 1) if seconds else
                   None})
    path = run.folder / "verify" / REPLAY_FILE
    write_text_atomically(path, json.dumps(result, indent=1) + "\n")
    return ReplayOutcome(result, path)
