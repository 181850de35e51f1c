"""The ARM cross toolchain and the emulator: find them or say which package is missing."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from kiloml.errors import ToolchainError

APT_PACKAGES = "gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm"


@dataclass(frozen=True)
class ArmToolchain:
    gcc: str
    size: str
    nm: str
    qemu: str
    host_cc: str  # builds the QEMU plugin


def _missing(what: list[str]) -> ToolchainError:
    return ToolchainError(
        f"missing {', '.join(what)}: install the Debian packages {APT_PACKAGES} "
        f"(`make setup` does it as root: apt-get install --no-install-recommends {APT_PACKAGES})")


@cache
def find_toolchain() -> ArmToolchain:
    tools = {
        "arm-none-eabi-gcc": "gcc-arm-none-eabi",
        "arm-none-eabi-size": "binutils-arm-none-eabi",
        "arm-none-eabi-nm": "binutils-arm-none-eabi",
        "qemu-system-arm": "qemu-system-arm",
        "gcc": "gcc",
    }
    found = {name: shutil.which(name) for name in tools}
    missing = [f"{name} (package {pkg})" for name, pkg in tools.items() if found[name] is None]
    if missing:
        raise _missing(missing)
    libc = subprocess.run([found["arm-none-eabi-gcc"], "-print-file-name=libc.a"],
                          capture_output=True, text=True).stdout.strip()
    if not libc or not Path(libc).is_file():
        raise _missing(["newlib for arm-none-eabi (package libnewlib-arm-none-eabi)"])
    return ArmToolchain(gcc=found["arm-none-eabi-gcc"], size=found["arm-none-eabi-size"],
                        nm=found["arm-none-eabi-nm"], qemu=found["qemu-system-arm"],
                        host_cc=found["gcc"])
