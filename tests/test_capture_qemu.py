"""kiloml capture end to end over QEMU's emulated UART: firmware for mps2-an386 sends a real
recording (seglearn's watch data) with kml_capture.c, `kiloml capture` records it through
a pty (-serial pty, the guest held with -S until the capture has the port) and through a
TCP socket (-serial tcp:...,server=on,wait=on and socket://), and the recording holds the
sent samples bit for bit, as `kiloml run` reads them."""

from __future__ import annotations

import json
import os
import re
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from capture_device import read_recording

from kiloml.board import MPS2_AN386_CFLAGS, MPS2_AN386_MACHINE, MPS2_DIR, mps2_files
from kiloml.codegen.library import RUNTIME_DIR, STRICT_CFLAGS
from kiloml.data.csv_ingest import read_csv_recording
from kiloml.project import DataConfig
from kiloml.verify.mcu.build import LINK_LIBS
from kiloml.verify.mcu.toolchain import find_toolchain

FIRMWARE = Path(__file__).parent / "capture_firmware" / "qemu_sender.c"
KILOML = Path(sys.executable).parent / "kiloml"
RECORDING = 113  # watch recording 113: 947 samples of ROW by subject 4, 6 axes at 50 Hz
RATE_HZ = 50
PACE_HZ = 250  # five times real time: 19 s of recording in 3.8 s (~9 KB/s: fits 115200 baud)
UNITS = ["g", "g", "g", "rad/s", "rad/s", "rad/s"]


@pytest.fixture(scope="module")
def recording():
    from kiloml.data.public import load_watch

    return load_watch()[RECORDING]


@pytest.fixture(scope="module")
def firmware(recording, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tc = find_toolchain()
    work = tmp_path_factory.mktemp("capture_fw")
    bits = np.ascontiguousarray(recording.samples, dtype="<f4").view("<u4").ravel()
    names = ", ".join(f'"{c}"' for c in recording.channels)
    units = ", ".join(f'"{u}"' for u in UNITS)
    rows = ",\n".join(", ".join(f"0x{b:08X}u" for b in bits[i:i + 6])
                      for i in range(0, len(bits), 6))
    (work / "recording.h").write_text(
        f"/* {recording.source}: {recording.label}, subject {recording.group} */\n"
        f"#define REC_CHANNELS {len(recording.channels)}u\n"
        f"#define REC_SAMPLES {len(recording.samples)}u\n"
        f"#define REC_RATE_HZ {RATE_HZ}.0f\n#define REC_PERIOD_US {1_000_000 // RATE_HZ}u\n"
        f"#define REC_PACE_HZ {PACE_HZ}u\n#define REC_HELLO_EVERY 100u\n"
        f"static const char *const rec_names[] = {{{names}}};\n"
        f"static const char *const rec_units[] = {{{units}}};\n"
        f"static const uint32_t rec_bits[] = {{\n{rows}\n}};\n")
    elf = work / "sender.elf"
    sources = [str(p) for p in mps2_files() if p.suffix == ".c"]
    subprocess.run([tc.gcc, *MPS2_AN386_CFLAGS, *STRICT_CFLAGS, "-O2", "-ffunction-sections",
                    "-fdata-sections", f"-I{MPS2_DIR}", f"-I{RUNTIME_DIR}", f"-I{work}",
                    str(FIRMWARE), str(RUNTIME_DIR / "kml_capture.c"), *sources,
                    "-T", str(MPS2_DIR / "mps2_an386.ld"), "-nostartfiles",
                    "-Wl,--gc-sections", *LINK_LIBS, "-o", str(elf)], check=True)
    return elf


def qemu(elf: Path, serial: list[str], *extra: str) -> subprocess.Popen:
    return subprocess.Popen([find_toolchain().qemu, "-M", MPS2_AN386_MACHINE, "-display",
                             "none", *serial, "-semihosting-config",
                             "enable=on,target=native", "-kernel", str(elf), *extra],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def wait_for(stream, pattern: str, timeout: float = 20) -> re.Match:
    seen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([stream], [], [], 0.2)
        if ready:
            chunk = os.read(stream.fileno(), 4096)
            if not chunk:
                break
            seen += chunk
            m = re.search(pattern.encode(), seen)
            if m:
                return m
    raise AssertionError(f"QEMU did not print {pattern!r}: {seen!r}")


def start_capture(port: str, out: Path) -> subprocess.Popen:
    return subprocess.Popen([str(KILOML), "capture", "--port", port, "--protocol", "kml",
                             "--label", "ROW", "--out", str(out), "--name", "subject4",
                             "--seconds", "60", "--rate-hz", str(RATE_HZ)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def has_open(pid: int, path: str) -> bool:
    try:
        return any(os.readlink(f"/proc/{pid}/fd/{fd}") == path
                   for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("transport", ["pty", "tcp"])
def test_capture_over_the_emulated_uart_is_bit_exact(firmware: Path, recording,
                                                      tmp_path: Path, transport: str) -> None:
    if transport == "pty":
        # -S: the guest waits; it starts ("cont") once the capture has the pty open, so
        # nothing is sent before anyone listens
        vm = qemu(firmware, ["-serial", "pty", "-monitor", "stdio", "-S"])
        pty = wait_for(vm.stdout, r"char device redirected to (/dev/pts/\d+)").group(1)
        cap = start_capture(pty.decode(), tmp_path)
        deadline = time.monotonic() + 20
        while not has_open(cap.pid, pty.decode()):
            assert cap.poll() is None and time.monotonic() < deadline, cap.communicate()
            time.sleep(0.01)
        vm.stdin.write(b"cont\n")
        vm.stdin.flush()
    else:
        port = free_port()
        vm = qemu(firmware, ["-serial", f"tcp:127.0.0.1:{port},server=on,wait=on",
                             "-monitor", "none"])
        wait_for(vm.stderr, r"waiting for connection")
        cap = start_capture(f"socket://127.0.0.1:{port}", tmp_path)
    try:
        stdout, stderr = cap.communicate(timeout=60)
        assert cap.returncode == 0, stderr
        assert vm.poll() is None  # the firmware idles after its end frame: no fault, no exit
    finally:
        vm.kill()
        cap.kill()
    print(f"\n[{transport}]\n{stdout}")
    path = tmp_path / "ROW" / "subject4.csv"
    header, rows = read_recording(path)
    assert header == ["t", *recording.channels]
    sent = np.ascontiguousarray(recording.samples, dtype=np.float32)
    got = np.array([[np.float32(float(c)) for c in r[1:]] for r in rows], dtype=np.float32)
    assert got.shape == sent.shape and got.tobytes() == sent.tobytes()
    assert [r[0] for r in rows] == [f"{i * 0.02:.6f}" for i in range(len(sent))]
    cfg = DataConfig(source="csv", path=str(tmp_path), sample_rate_hz=RATE_HZ,
                     label_from_folder=True)
    samples = read_csv_recording(path, cfg, "subject4.csv", label="ROW", group=None)[0]
    assert samples.tobytes() == sent.tobytes()
    report = json.loads((tmp_path / "ROW" / "subject4.capture.json").read_text())
    frames = report["frames"]
    assert frames["samples_received"] == frames["samples_sent"] == len(sent)
    assert frames["dropped"] == frames["corrupt"] == frames["out_of_order"] == 0
    assert frames["first_seq"] == 0 and report["end"] == "end frame"
    assert report["units"] == UNITS
    assert report["device"]["rate_hz"] == pytest.approx(RATE_HZ)
    assert report["device"]["interval"]["std_ms"] == pytest.approx(0.0)
    assert report["arrival"]["rate_hz"] > 0  # wall clock: reported, never asserted
