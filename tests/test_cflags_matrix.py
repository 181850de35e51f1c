"""Parity under the user's build flags: the toy project's library built the way firmware
builds would build it (the compiler's defaults, then the flags) against the Python
reference, on the host with gcc, g++ (the library as C++) and clang, and on the emulated
Cortex-M4F under Arduino-like flags through `kiloml verify --cflags`. The bigger sweep
(every example x every row, host and QEMU) is bench/flag_matrix.py."""

from __future__ import annotations

import json
import platform
import shutil
from pathlib import Path

import pytest
from conftest import assert_user_error, run_cli

from kiloml.codegen.library import FP_HEADER
from kiloml.persist.pipeline_state import PIPELINE_FILE, load_pipeline
from kiloml.verify.command import firmware_library
from kiloml.verify.reference import REFERENCE_FILE, Reference
from kiloml.verify.user_cflags import host_parity, parity_holds


def _host_has_fma() -> bool:
    if platform.machine() in ("aarch64", "arm64"):
        return True
    try:
        return " fma " in Path("/proc/cpuinfo").read_text().replace("\n", " ")
    except OSError:
        return False


HOST_FMA = _host_has_fma()
# a build that may contract on this host: x86-64 has FMA from x86-64-v3 (Haswell) on
FMA_FLAGS = ["-march=x86-64-v3"] if platform.machine() == "x86_64" else []
needs_fma = pytest.mark.skipif(not HOST_FMA, reason="this host's CPU has no FMA")

HOST_ROWS = [
    ("gcc", ["-std=gnu11"]),
    ("gcc", ["-O0"]),
    ("gcc", ["-Os"]),
    ("gcc", ["-O3"]),
    ("gcc", ["-ffp-contract=fast"]),
    ("gcc", ["-std=gnu11", "-O3", "-ffp-contract=fast", *FMA_FLAGS]),
    ("g++", ["-std=gnu++17"]),
    ("g++", ["-std=c++17", "-O3", "-ffp-contract=fast", *FMA_FLAGS]),
    ("clang", []),
    ("clang", ["-std=gnu11", "-O3", *FMA_FLAGS]),
]


def _loaded(toy_run: Path, firmware: Path | None = None):
    out = toy_run.parent / "out"
    pipeline = load_pipeline(out / PIPELINE_FILE)
    reference = Reference.load(out / "verify" / REFERENCE_FILE, pipeline)
    library = firmware_library(firmware or out / "firmware", len(pipeline.feature_names()))
    return pipeline, library, reference


@pytest.mark.parametrize("compiler, flags", HOST_ROWS,
                         ids=[f"{c} {' '.join(f) or 'defaults'}" for c, f in HOST_ROWS])
def test_host_parity_under_flags(toy_run: Path, tmp_path: Path, compiler: str,
                                 flags: list[str]) -> None:
    if shutil.which(compiler) is None:
        pytest.skip(f"{compiler} is not installed")
    if any(f.startswith("-march") for f in flags) and not HOST_FMA:
        pytest.skip("this host's CPU has no FMA")
    pipeline, library, reference = _loaded(toy_run)
    parity = host_parity(pipeline, library, reference, tmp_path, flags, compiler=compiler)
    assert parity["features_bit_exact"], parity["features_by_stage"]
    assert parity_holds(parity, features_bit_exact=True)
    assert parity["n"] == len(reference.windows) > 0
    assert parity["cflags"] == flags and parity["compiler"].startswith(compiler)


@needs_fma
@pytest.mark.parametrize("compiler", ["gcc", "g++"])
def test_without_the_header_the_same_build_differs(toy_run: Path, tmp_path: Path,
                                                   compiler: str) -> None:
    """The control: kml_fp.h emptied, the same contracting build's features are no longer
    the reference's (the issue's silent difference), and parity under flags says so."""
    firmware = tmp_path / "firmware"
    shutil.copytree(toy_run.parent / "out" / "firmware", firmware)
    (firmware / FP_HEADER).write_text("/* emptied */\n")
    pipeline, library, reference = _loaded(toy_run, firmware)
    flags = ["-std=gnu11", "-O2", *FMA_FLAGS]
    parity = host_parity(pipeline, library, reference, tmp_path / "w", flags,
                         compiler=compiler)
    assert not parity["features_bit_exact"]
    assert not parity_holds(parity, features_bit_exact=True)


def _metrics(toy_run: Path) -> dict:
    return json.loads((toy_run.parent / "out" / "metrics.json").read_text())


def test_verify_cflags_on_qemu_arduino_like(toy_run: Path) -> None:
    """`kiloml verify --cflags` as an Arduino core builds C: host and QEMU parity with the
    library built under the flags, no fused multiply-add in the linked image, the flags
    recorded."""
    flags = "-std=gnu11 -O2 -ffp-contract=fast"
    result = run_cli("verify", str(toy_run), "--cflags", flags)
    assert result.exit_code == 0, result.stderr
    assert "parity (host, --cflags)" in result.stdout and "bit-exact" in result.stdout
    m = _metrics(toy_run)
    entry = m["user_cflags"]["cortex-m4f"]
    assert entry["cflags"] == flags.split() and entry["host_ok"] and entry["target_ok"]
    assert entry["host"]["features_bit_exact"]
    target = m["parity"]["cortex-m4f"]
    assert target["emulated"] and target["cflags"] == flags.split()
    assert target["all_decisions_equal"] and target["features_bit_exact"]
    resources = m["resources"]["cortex-m4f"]
    assert resources["fused_multiply_add"] == {"checked": "harness.elf", "found": [],
                                               "instructions": 0}
    assert resources["cflags"] == flags.split() and flags in resources["compiler"]
    # verifying again without flags drops the --cflags entry (it described that build)
    again = run_cli("verify", str(toy_run))
    assert again.exit_code == 0, again.stderr
    m = _metrics(toy_run)
    assert "user_cflags" not in m and "cflags" not in m["parity"]["cortex-m4f"]
    assert m["resources"]["cortex-m4f"]["fused_multiply_add"]["found"] == []


@pytest.mark.parametrize("flags, fragments", [
    ("-o /tmp/elsewhere", ["--cflags", "'-o' is not taken"]),
    ("-O2 main.c", ["--cflags", "'main.c' is not a flag"]),
    ("-fplugin=./evil.so", ["--cflags", "'-fplugin=./evil.so' is not taken"]),
    ("-Wl,-T,other.ld", ["--cflags", "'-Wl,-T,other.ld' is not taken"]),
    ("-specs=nosys.specs", ["--cflags", "'-specs=nosys.specs' is not taken"]),
    ("@flags.txt", ["--cflags", "'@flags.txt' is not a flag"]),
    ("-O2 > log.txt", ["--cflags", "'>' is shell syntax"]),
    ("-DNAME=\"unterminated", ["--cflags", "cannot split"]),
    ("", ["--cflags", "no flags given"]),
    ("-Ofast", ["--cflags", "does not build with -Ofast", "gcc on ",
                "must not be built with -ffast-math or -Ofast"]),
    ("-m64", ["--cflags", "does not build for cortex-m4f with -m64",
              "unrecognized command-line option"]),
], ids=["output", "input-file", "plugin", "linker", "specs", "response-file", "redirect",
        "quote", "empty", "fast-math", "not-for-the-target"])
def test_bad_cflags_are_one_line(toy_run: Path, flags: str, fragments: list[str]) -> None:
    """Refused flags, and flags the library does not build with (on the host: -Ofast's
    #error; on the target: -m64, which the host takes), are one line, exit 2, and leave
    the run's metrics and verify folder as they were."""
    out = toy_run.parent / "out"
    before = (out / "metrics.json").read_bytes()
    folders = sorted(p.name for p in (out / "verify").iterdir())
    line = assert_user_error(run_cli("verify", str(toy_run), "--cflags", flags), *fragments)
    assert "/tmp/kiloml-verify-" not in line  # the compiler's message names the file only
    assert (out / "metrics.json").read_bytes() == before
    assert sorted(p.name for p in (out / "verify").iterdir()) == folders
