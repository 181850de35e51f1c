"""Build and run kiloml/verify/harness/crypto_main.c (kml_sha256, kml_sha512,
kml_ed25519_verify) on the host (gcc, optionally under the sanitizers) or on QEMU
(arm-none-eabi-gcc, semihosting, the instruction counter and the painted stack), and
measure the code's flash and RAM on a target with a probe linked with and without it.
tests/test_kml_crypto.py and bench/crypto.py use it."""

from __future__ import annotations

import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kiloml.codegen.library import RUNTIME_DIR, STRICT_CFLAGS

ROOT_DIR = Path(__file__).resolve().parent.parent
HARNESS = ROOT_DIR / "verify" / "harness" / "crypto_main.c"
MCU_DIR = ROOT_DIR / "verify" / "mcu"
PROBE = MCU_DIR / "crypto_probe.c"
SHA256_SOURCES = [RUNTIME_DIR / "kml_sha256.c"]
ED25519_SOURCES = [RUNTIME_DIR / "kml_ed25519.c", RUNTIME_DIR / "kml_sha512.c"]
SOURCES = [*SHA256_SOURCES, *ED25519_SOURCES]
SANITIZE_FLAGS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g"]

# crypto_main.c's ops
SHA256, SHA512, SHA256_PIECES, SHA512_PIECES, SHA256_STREAM, SHA512_STREAM, VERIFY = range(1, 8)
QEMU_MAX_INPUT = 64 << 10  # the firmware's input buffer (KML_CRYPTO_MAX_INPUT)


@dataclass(frozen=True)
class Case:
    op: int
    payload: bytes

    @property
    def output_bytes(self) -> int:
        return 4 if self.op == VERIFY else 32 if self.op % 2 else 64


def sha(bits: int, data: bytes) -> Case:
    return Case(SHA256 if bits == 256 else SHA512, data)


def sha_pieces(bits: int, data: bytes, sizes: list[int]) -> Case:
    """init, one update per size (they add up to len(data)), final"""
    if sum(sizes) != len(data):
        raise ValueError("the piece sizes must add up to the data")
    head = struct.pack(f"<I{len(sizes)}I", len(sizes), *sizes)
    return Case(SHA256_PIECES if bits == 256 else SHA512_PIECES, head + data)


def sha_stream(bits: int, data: bytes) -> Case:
    """any length (host only): updates of 997 bytes as the harness reads them"""
    return Case(SHA256_STREAM if bits == 256 else SHA512_STREAM, data)


def verify(signature: bytes, message: bytes, public_key: bytes) -> Case:
    if len(signature) != 64 or len(public_key) != 32:
        raise ValueError("a signature is 64 bytes, a public key 32")
    return Case(VERIFY, signature + public_key + message)


@dataclass(frozen=True)
class Result:
    value: bytes | int  # the digest, or kml_ed25519_verify's return value
    stack_bytes: int    # measured on QEMU (0 on the host)


def pack(cases: list[Case]) -> bytes:
    return b"".join(struct.pack("<II", c.op, len(c.payload)) + c.payload for c in cases)


def parse(cases: list[Case], out: bytes) -> list[Result]:
    results, pos = [], 0
    for c in cases:
        n = c.output_bytes
        if pos + n + 4 > len(out):
            raise ValueError(f"crypto harness output: {len(out)} bytes, cut short")
        raw = out[pos:pos + n]
        value: bytes | int = struct.unpack("<i", raw)[0] if c.op == VERIFY else raw
        results.append(Result(value, struct.unpack_from("<I", out, pos + n)[0]))
        pos += n + 4
    if pos != len(out):
        raise ValueError(f"crypto harness output: {len(out)} bytes, expected {pos}")
    return results


def build_host(work: Path, *, cc: str = "gcc", optimize: str = "-O2",
               extra: list[str] | None = None, sanitize: bool = False,
               base: list[str] | None = None) -> Path:
    """The host harness, built with kiloml's STRICT_CFLAGS or ``base`` in their place (C++:
    ``-x c++`` and a -std for it); ``sanitize``: under AddressSanitizer and UBSan, any
    report fatal."""
    work.mkdir(parents=True, exist_ok=True)
    name = f"crypto_{cc}" + ("_asan" if sanitize else "") + optimize.replace("-", "_")
    exe = work / name.replace("+", "x")
    flags = [*(STRICT_CFLAGS if base is None else base), optimize,
             *(SANITIZE_FLAGS if sanitize else []), *(extra or [])]
    subprocess.run([cc, *flags, "-DKML_CRYPTO_HOST", f"-I{RUNTIME_DIR}",
                    *map(str, SOURCES), str(HARNESS), "-o", str(exe)], check=True)
    return exe


def run_host(exe: Path, cases: list[Case], timeout_s: float = 300.0) -> list[Result]:
    run = subprocess.run([str(exe)], input=pack(cases), capture_output=True,
                         timeout=timeout_s)
    if run.returncode != 0:
        raise RuntimeError(f"{exe.name} exited with {run.returncode}: "
                           f"{run.stderr.decode(errors='replace')[-2000:]}")
    return parse(cases, run.stdout)


@dataclass(frozen=True)
class QemuCrypto:
    elf: Path
    plugin: Path
    machine: str


def build_qemu(work: Path, *, optimize: str = "-O2", machine: str = "mps2-an386",
               profile_name: str = "cortex-m4f") -> QemuCrypto:
    from kiloml.targets.profiles import load_profile
    from kiloml.verify.mcu.build import build_standalone_harness
    from kiloml.verify.mcu.qemu import build_plugin
    from kiloml.verify.mcu.toolchain import find_toolchain
    elf = build_standalone_harness(HARNESS, SOURCES, [RUNTIME_DIR], work, name="crypto",
                                   machine=machine, profile=load_profile(profile_name),
                                   optimize=optimize)
    return QemuCrypto(elf, build_plugin(find_toolchain(), work / "plugin"), machine)


def run_qemu(q: QemuCrypto, cases: list[Case], work: Path, timeout_s: float = 300.0
             ) -> tuple[list[Result], np.ndarray]:
    """The results and the instructions of each case's call (one count per case)."""
    from kiloml.verify.mcu.qemu import run_harness
    from kiloml.verify.mcu.toolchain import find_toolchain
    if any(c.op in (SHA256_STREAM, SHA512_STREAM) for c in cases):
        raise ValueError("the streamed hashes are a host-only case")
    if any(len(c.payload) > QEMU_MAX_INPUT for c in cases):
        raise ValueError(f"a QEMU case's payload is at most {QEMU_MAX_INPUT} bytes")
    run = run_harness(find_toolchain(), q.elf, q.machine, pack(cases), q.plugin,
                      work / "qemu", timeout_s=timeout_s)
    results = parse(cases, run.output)
    if len(run.instructions) != len(cases):
        raise ValueError(f"{len(run.instructions)} instruction counts for {len(cases)} cases")
    return results, run.instructions


@dataclass(frozen=True)
class CodeSizes:
    flash_bytes: int  # code and constants the probe gains with it (gc-sections)
    ram_bytes: int    # static RAM (.data + .bss) it gains
    objects_flash_bytes: int  # of that, what the link kept of the crypto objects


def measure_sizes(work: Path, what: str, *, optimize: str = "-O2",
                  profile_name: str = "cortex-m4f") -> CodeSizes:
    """``what``: "sha256" (kml_sha256 alone) or "ed25519" (kml_ed25519_verify with its
    SHA-512). crypto_probe.c linked with and without the call at the target's memory
    sizes, as kiloml's budget probe does."""
    from kiloml.targets.profiles import load_profile
    from kiloml.verify.mcu.build import (
        compile_objects,
        elf_sections,
        flash_and_ram,
        link,
        write_linker_script,
    )
    from kiloml.verify.mcu.link_map import kept_by_objects
    from kiloml.verify.mcu.toolchain import find_toolchain
    sources = {"sha256": SHA256_SOURCES, "ed25519": ED25519_SOURCES}[what]
    tc, profile = find_toolchain(), load_profile(profile_name)
    memory = (0x00000000, profile.flash_bytes, 0x20000000, profile.ram_bytes)
    startup = compile_objects(tc, [MCU_DIR / "startup.c", MCU_DIR / "semihost.c"], [MCU_DIR],
                              profile, optimize, work / "startup")
    script = write_linker_script(work / "probe.ld", f"crypto probe for {profile.name}",
                                 memory, 0)
    sizes, kept = [], 0
    for name, define, srcs in (("with", f"-DKML_PROBE_{what.upper()}", sources),
                               ("without", "-DKML_PROBE_NOTHING", [])):
        probe = compile_objects(tc, [PROBE], [RUNTIME_DIR], profile, optimize, work / name,
                                extra=[define])
        objs = compile_objects(tc, srcs, [RUNTIME_DIR], profile, optimize, work / name)
        elf = link(tc, [*startup, *probe, *objs], script, work / f"{name}.elf", profile,
                   memory, target_label=f"target '{profile.name}'")
        sizes.append(flash_and_ram(elf_sections(tc, elf)))
        if objs:
            kept = kept_by_objects(elf.with_suffix(".map"), objs).flash_bytes
    (f1, r1), (f0, r0) = sizes
    return CodeSizes(f1 - f0, r1 - r0, kept)
