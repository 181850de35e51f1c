"""A device on a pseudo-terminal for the capture tests: the test writes the device's bytes
to the master side from a thread, `kiloml capture` opens the slave like a serial port."""

from __future__ import annotations

import os
import select
import threading
import time
import tty
from pathlib import Path


class PtyDevice:
    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        os.set_blocking(self.master, False)
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None
        self.master_closed = False
        self.started_at: float | None = None

    def opened_by_capture(self) -> bool:
        """True once a second descriptor of this process points at the slave (ours is the
        first): the capture has opened the port."""
        count = 0
        for fd in os.listdir("/proc/self/fd"):
            try:
                if os.readlink(f"/proc/self/fd/{fd}") == self.path:
                    count += 1
            except OSError:
                continue
        return count >= 2

    def play(self, chunks: list[bytes], rate_hz: float, *, close_after: bytes | None = None,
             wait_open: bool = True) -> None:
        """Send one chunk every 1/rate_hz seconds (on an absolute schedule) once the capture
        has the port; ``close_after``: then these bytes and close the master (the device
        vanishes)."""
        def run() -> None:
            deadline = time.monotonic() + 10
            while wait_open and not self.opened_by_capture():
                if time.monotonic() > deadline or self.stop.is_set():
                    return
                time.sleep(0.005)
            time.sleep(0.02)  # past the capture's flush of what the port held
            t0 = self.started_at = time.monotonic()
            for i, chunk in enumerate(chunks):
                if self.stop.is_set() or not self._write(chunk):
                    return
                delay = t0 + (i + 1) / rate_hz - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            if close_after is not None:
                self._write(close_after)
                time.sleep(0.05)
                self.close_master()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def _write(self, data: bytes) -> bool:
        view = memoryview(data)
        while view:
            _, ready, _ = select.select([], [self.master], [], 1.0)
            if not ready or self.master_closed:
                return False
            try:
                n = os.write(self.master, view)
            except BlockingIOError:
                continue
            except OSError:
                return False
            view = view[n:]
        return True

    def close_master(self) -> None:
        if not self.master_closed:
            self.master_closed = True
            os.close(self.master)

    def close(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=5)
        self.close_master()
        os.close(self.slave)


def read_recording(path: Path) -> tuple[list[str], list[list[str]]]:
    """The header and rows of a capture CSV (comment lines skipped)."""
    lines = [ln for ln in path.read_text().splitlines() if not ln.startswith("#")]
    return lines[0].split(","), [ln.split(",") for ln in lines[1:]]
