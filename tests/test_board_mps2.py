"""kiloml/board/mps2: a hello world built with arm-none-eabi-gcc runs in QEMU's mps2-an386,
prints over UART0, echoes a byte it reads and ends through semihosting (status kept)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from kiloml.board import MPS2_AN386_CFLAGS, MPS2_AN386_MACHINE, MPS2_DIR, mps2_files
from kiloml.verify.mcu.toolchain import find_toolchain

HELLO = r"""
#include "mps2_uart.h"
int main(void)
{
    volatile float x = 1.5f;
    uint8_t b;
    mps2_uart_init(115200u);
    mps2_uart_puts("hello from mps2-an386\n");
    x = x * 2.0f;
    mps2_uart_puts(x == 3.0f ? "fpu ok\n" : "fpu bad\n");
    b = (uint8_t)mps2_uart_read_byte();
    mps2_uart_puts("got ");
    mps2_uart_write(&b, 1u);
    mps2_uart_puts("\n");
    return b == 'X' ? 0 : 3;
}
"""


def build(tmp: Path, source: str, *extra: str) -> Path:
    gcc = find_toolchain().gcc
    (tmp / "hello.c").write_text(source)
    elf = tmp / "hello.elf"
    sources = [str(p) for p in mps2_files() if p.suffix == ".c"]
    subprocess.run([gcc, "-std=c99", "-Wall", "-Wextra", "-Werror", "-O2", *MPS2_AN386_CFLAGS,
                    "-ffunction-sections", "-fdata-sections", f"-I{MPS2_DIR}", str(tmp / "hello.c"),
                    *sources, "-T", str(MPS2_DIR / "mps2_an386.ld"), "-nostartfiles", *extra,
                    "-Wl,--gc-sections", "-o", str(elf)], check=True)
    return elf


def run(elf: Path, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([find_toolchain().qemu, "-M", MPS2_AN386_MACHINE, "-nographic",
                           "-monitor", "none", "-serial", "stdio", "-semihosting-config",
                           "enable=on,target=native", "-kernel", str(elf)],
                          input=stdin, capture_output=True, timeout=30)


def test_hello_world_prints_reads_and_exits(tmp_path: Path) -> None:
    elf = build(tmp_path, HELLO, "-nostdlib", "-lgcc")  # no libc needed by the board files
    result = run(elf, b"X")
    assert result.stdout == b"hello from mps2-an386\nfpu ok\ngot X\n"
    assert result.returncode == 0
    failing = run(elf, b"Y")  # main's non-zero status reaches QEMU's exit status
    assert failing.stdout.endswith(b"got Y\n")
    assert failing.returncode == 1


def test_board_files_carry_spdx_headers() -> None:
    for path in mps2_files():
        first = path.read_text().splitlines()[0]
        assert "SPDX-License-Identifier: Apache-2.0" in first, path
