"""kml_capture.c on the host: the frames it writes are, byte for byte, the Python encoder's,
and the Python decoder gets every float back bit for bit (NaN payloads, -0, subnormals,
infinities); built as C99 (gcc, clang) and as C++ (g++), and for Cortex-M0 and M4F."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from kiloml.capture.kml_protocol import (
    End,
    FrameDecoder,
    Hello,
    Sample,
    encode_end,
    encode_hello,
    encode_sample,
)
from kiloml.codegen.library import RUNTIME_DIR, STRICT_CFLAGS

HOST_SENDER = Path(__file__).parent / "capture_firmware" / "host_sender.c"
HELLO = Hello(["ax", "ay", "az", "temp"], ["m/s2", "m/s2", "m/s2", ""], 52.5)
T0 = 0xFFFF0000


def sample_bits(n: int) -> np.ndarray:
    rng = np.random.default_rng(11)
    bits = rng.integers(0, 2**32, (n, 4), dtype=np.uint64).astype(np.uint32)
    special = [0x00000000, 0x80000000, 0x00000001, 0x807FFFFF, 0x7F800000, 0xFF800000,
               0x7FC00000, 0x7FA00001, 0xFFFFFFFF, 0x3F800000, 0x00000100, 0x01000000]
    bits[:3].flat[:len(special)] = special  # zeros and 0x00 bytes exercise COBS
    return bits


def compilers() -> list[tuple[str, list[str]]]:
    found = [("gcc", ["gcc", *STRICT_CFLAGS]),
             ("g++", ["g++", "-x", "c++", "-std=c++11", "-Wall", "-Wextra", "-Werror",
                      "-pedantic"])]
    if shutil.which("clang"):
        found.append(("clang", ["clang", *STRICT_CFLAGS]))
    return [(name, cmd) for name, cmd in found if shutil.which(cmd[0])]


@pytest.mark.parametrize("name,cmd", compilers(), ids=[c[0] for c in compilers()])
def test_c_sender_matches_the_python_codec_bit_for_bit(tmp_path: Path, name: str,
                                                       cmd: list[str]) -> None:
    exe = tmp_path / "sender"
    subprocess.run([*cmd, "-O2", f"-I{RUNTIME_DIR}", str(HOST_SENDER),
                    str(RUNTIME_DIR / "kml_capture.c"), "-o", str(exe)], check=True)
    bits = sample_bits(300)
    run = subprocess.run([str(exe)], input=bits.astype("<u4").tobytes(), capture_output=True,
                         check=True, timeout=30)
    wire = run.stdout
    times = [(T0 + 19048 * i) % 2**32 for i in range(len(bits))]
    expected = encode_hello(HELLO) + b"".join(
        encode_sample(i, times[i], bits[i].astype("<u4").tobytes()) for i in range(len(bits))
    ) + encode_end(len(bits))
    assert wire == expected
    decoder = FrameDecoder()
    messages = decoder.feed(wire)
    assert decoder.corrupt == 0
    assert messages[0] == HELLO
    samples = [m for m in messages if isinstance(m, Sample)]
    assert [s.seq for s in samples] == list(range(len(bits)))
    assert [s.t_us for s in samples] == times
    got = np.frombuffer(b"".join(s.values for s in samples), dtype="<u4").reshape(-1, 4)
    assert np.array_equal(got, bits)
    assert messages[-1] == End(len(bits))


@pytest.mark.parametrize("cpu", [["-mcpu=cortex-m0", "-mthumb", "-mfloat-abi=soft"],
                                 ["-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16",
                                  "-mfloat-abi=hard"]])
def test_c_sender_builds_for_cortex_m(tmp_path: Path, cpu: list[str]) -> None:
    from kiloml.verify.mcu.toolchain import find_toolchain

    gcc = find_toolchain().gcc
    subprocess.run([gcc, *cpu, *STRICT_CFLAGS, "-Os", "-c", str(RUNTIME_DIR / "kml_capture.c"),
                    "-o", str(tmp_path / "kml_capture.o")], check=True)
    size = subprocess.run([find_toolchain().size, "-A", "-d", str(tmp_path / "kml_capture.o")],
                          capture_output=True, text=True, check=True).stdout
    text = next(int(ln.split()[1]) for ln in size.splitlines() if ln.startswith(".text"))
    assert 0 < text < 1024  # a few hundred bytes of flash, no data
