"""kiloml replay: the replay firmware of the CMake export, built with its toolchain file,
runs in QEMU's mps2-an386 with UART0 on a pty and on a loopback TCP port; kiloml replay
streams the held-out recordings to it and finds every decision equal to Python's, the
scores bit for bit. Bad input: a port that does not exist, a device that sends nothing."""

from __future__ import annotations

import json
import os
import re
import select
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_user_error, run_cli
from export_helpers import make_run, sh

from kiloml.board import MPS2_AN386_MACHINE
from kiloml.export.common import held_out
from kiloml.replay.session import Replayed, parity
from kiloml.verify.mcu.toolchain import find_toolchain
from kiloml.verify.reference import REFERENCE_FILE, Reference

PTY_RE = re.compile(rb"char device redirected to (/dev/pts/\d+)")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("replay"))


@pytest.fixture(scope="module")
def firmware(run_dir: Path) -> Path:
    pkg = run_dir.parent / "pkg"
    result = run_cli("export", str(run_dir), "--format", "cmake", "--out", str(pkg))
    assert result.exit_code == 0, result.stderr
    build = run_dir.parent / "build-replay"
    sh("cmake", "-S", pkg / "examples" / "replay", "-B", build,
       f"-DCMAKE_TOOLCHAIN_FILE={pkg / 'cmake' / 'arm-none-eabi.cmake'}")
    sh("cmake", "--build", build)
    return build / "toy_replay.elf"


def start_qemu(elf: Path, serial: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([find_toolchain().qemu, "-M", MPS2_AN386_MACHINE, "-nographic",
                             "-monitor", "none", "-serial", serial, "-kernel", str(elf)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def qemu_pty(firmware: Path) -> Iterator[str]:
    """The replay firmware in QEMU, UART0 on a new pty: its path (QEMU prints it)."""
    proc = start_qemu(firmware, "pty")
    try:
        assert proc.stdout is not None
        text, deadline = b"", time.monotonic() + 20
        while not PTY_RE.search(text) and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.5)
            if ready:
                text += os.read(proc.stdout.fileno(), 4096)
        match = PTY_RE.search(text)
        assert match, text
        yield match[1].decode()
    finally:
        stop(proc)


def check_replay(run_dir: Path, port: str) -> dict:
    result = run_cli("replay", str(run_dir), "--port", port)
    assert result.exit_code == 0, result.stderr
    ref = Reference.load(run_dir / "verify" / REFERENCE_FILE)
    n = len(ref.stream_labels)
    assert f"{n}/{n} decisions equal to Python on {port}" in result.stdout
    assert "scores bit-exact" in result.stdout
    saved = json.loads((run_dir / "verify" / "replay.json").read_text())
    assert saved["all_decisions_equal"] and saved["n"] == n == saved["n_reported"]
    assert saved["n_samples"] == len(ref.stream_samples)
    assert saved["first_difference"] is None
    return saved


def test_replay_over_a_pty(run_dir: Path, qemu_pty: str) -> None:
    saved = check_replay(run_dir, qemu_pty)
    assert saved["device_scores_bit_exact"] is True


def test_replay_over_a_tcp_port(run_dir: Path, firmware: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = start_qemu(firmware, f"tcp:127.0.0.1:{port},server=on,wait=off,nodelay=on")
    try:
        url = f"socket://127.0.0.1:{port}"
        for _ in range(100):  # until QEMU listens
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        check_replay(run_dir, url)
    finally:
        stop(proc)


def test_parity_names_the_first_difference(run_dir: Path) -> None:
    held = held_out(Reference.load(run_dir / "verify" / REFERENCE_FILE))
    scores = list(held.device_scores)
    labels = held.labels.tolist()
    labels[3] = (labels[3] + 1) % 3
    got = parity(held, Replayed(held.window_recording.tolist(),
                                held.window_last_sample.tolist(), labels, scores),
                 ["idle", "shake", "walk"])
    assert got["decisions_equal"] == len(labels) - 1 and not got["all_decisions_equal"]
    assert got["first_difference"]["window"] == 3
    assert np.isclose(got["n"], len(labels))


def test_a_port_that_does_not_exist(run_dir: Path) -> None:
    assert_user_error(run_cli("replay", str(run_dir), "--port", "/dev/kiloml-no-such-tty"),
                      "does not exist")


def test_a_device_that_sends_nothing(run_dir: Path) -> None:
    master, slave = os.openpty()
    try:
        line = assert_user_error(run_cli("replay", str(run_dir), "--port", os.ttyname(slave),
                                         "--timeout", "0.5"), "no reply from the device",
                                 "within 0.5 s", "replay firmware")
        assert os.read(master, 16) == b"H"  # the hello was sent
        assert line
    finally:
        os.close(master)
        os.close(slave)
