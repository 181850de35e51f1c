"""Parity under build flags: every example's library built as firmware builds build it.

Each example is run once (`kiloml run --no-emulator`, in a temporary folder); its library
is then built under each row of flags (the compiler's defaults, -O2, then the row; the
harness keeps kiloml's strict flags) and every held-out window, the held-out stream and
(recording mode) every held-out recording compared with the Python reference:
  - host rows: gcc, g++ (the library as C++) and clang, with and without FMA code
    (-march=x86-64-v3 where the CPU has it);
  - QEMU rows: the Cortex-M4F (mps2-an386) with arm-none-eabi-gcc, the linked image
    checked for fused multiply-adds (kiloml verify's check);
  - control rows: the same contracting builds with kml_fp.h emptied (the library before
    it existed), which is what the header prevents.

Writes bench/results/flag_matrix.json and flag_matrix.md. `--examples NAME,...` (stems as
in EXAMPLES) takes fewer; `--no-qemu` only the host rows.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = Path(os.environ.get("KILOML_BENCH_RESULTS", ROOT / "bench" / "results"))

EXAMPLES = {
    "watch": ROOT / "examples" / "watch" / "kiloml.toml",  # statistics, random forest
    "watch-spectral": ROOT / "examples" / "watch" / "spectral.toml",
    "watch-cnn1d": ROOT / "examples" / "watch" / "cnn1d.toml",  # int8 network
    "spoken-digits": ROOT / "examples" / "spoken-digits" / "kiloml.toml",  # MFCC
    "spoken-digits-recording": ROOT / "examples" / "spoken-digits" / "recording.toml",
}
FMA = ["-march=x86-64-v3"] if platform.machine() == "x86_64" else []
HOST_ROWS = [
    ("gcc", ["-std=gnu11"]),
    ("gcc", ["-O0"]),
    ("gcc", ["-Os"]),
    ("gcc", ["-O3"]),
    ("gcc", ["-ffp-contract=fast"]),
    ("gcc", ["-std=gnu11", "-O3", "-ffp-contract=fast", *FMA]),
    ("g++", ["-std=gnu++17", *FMA]),
    ("clang", []),
    ("clang", ["-O3", *FMA]),
]
HOST_CONTROL = ("gcc", ["-std=gnu11", *FMA])
QEMU_ROWS = [
    ["-std=gnu11", "-O2", "-ffp-contract=fast"],  # as an Arduino core builds C
    ["-O0"],
    ["-Os"],
    ["-std=gnu17", "-O3", "-ffp-contract=fast"],
]
QEMU_CONTROL = ["-std=gnu11", "-O2"]


def _run_example(toml: Path, work: Path) -> Path:
    """`kiloml run --no-emulator` with the output under ``work``; the output folder."""
    from kiloml.project import load_project

    work.mkdir(parents=True, exist_ok=True)
    result = subprocess.run([sys.executable, "-m", "kiloml", "run", str(toml), "--no-emulator"],
                            cwd=work, capture_output=True, text=True)
    if result.returncode not in (0, 1):  # 1: over a budget, the library is still made
        raise RuntimeError(f"kiloml run {toml.name}: {result.stderr[-800:]}")
    cwd = Path.cwd()
    try:
        os.chdir(work)
        return load_project(toml).output_dir
    finally:
        os.chdir(cwd)


def _loaded(out: Path, firmware: Path | None = None):
    from kiloml.persist.pipeline_state import PIPELINE_FILE, load_pipeline
    from kiloml.verify.command import firmware_library
    from kiloml.verify.reference import REFERENCE_FILE, Reference

    pipeline = load_pipeline(out / PIPELINE_FILE)
    reference = Reference.load(out / "verify" / REFERENCE_FILE, pipeline)
    library = firmware_library(firmware or out / "firmware", len(pipeline.feature_names()))
    return pipeline, library, reference


def _emptied(out: Path, work: Path) -> Path:
    from kiloml.codegen.library import FP_HEADER

    copy = work / "no-header"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(out / "firmware", copy)
    (copy / FP_HEADER).write_text("/* emptied */\n")
    return copy


def _row(example: str, where: str, compiler: str, flags: list[str], parity: dict,
         header: bool, fused: dict | None = None) -> dict:
    st = parity["streaming"]
    rec = parity.get("recordings")
    return {"example": example, "where": where, "compiler": compiler, "flags": flags,
            "kml_fp_h": header, "n": parity["n"], "decisions_equal": parity["decisions_equal"],
            "features_bit_exact": parity["features_bit_exact"],
            "max_abs_feature_diff": parity["max_abs_feature_diff"],
            "stream_windows": st["n_windows"], "stream_equal": st["decisions_equal"],
            "recordings": None if rec is None else [rec["decisions_equal"], rec["n"]],
            "fused_multiply_add": fused}


def _host_rows(example: str, out: Path, work: Path) -> list[dict]:
    from kiloml.verify.user_cflags import host_parity

    rows = []
    pipeline, library, reference = _loaded(out)
    for compiler, flags in HOST_ROWS:
        if shutil.which(compiler) is None:
            continue
        parity = host_parity(pipeline, library, reference, work / "host", flags,
                             compiler=compiler)
        rows.append(_row(example, "host", compiler, flags, parity, True))
    compiler, flags = HOST_CONTROL
    _, bare, _ = _loaded(out, _emptied(out, work))
    parity = host_parity(pipeline, bare, reference, work / "host-bare", flags,
                         compiler=compiler)
    rows.append(_row(example, "host", compiler, flags, parity, False))
    return rows


def _qemu_rows(example: str, out: Path, work: Path) -> list[dict]:
    from kiloml.project import TargetConfig
    from kiloml.targets.budget import Budget
    from kiloml.targets.profiles import load_profile
    from kiloml.verify.target import verify_target

    pipeline, library, reference = _loaded(out)
    profile = load_profile("cortex-m4f")
    budget = Budget.for_target(profile, TargetConfig(name=profile.name))
    rows = []
    for i, flags in enumerate([*QEMU_ROWS, QEMU_CONTROL]):
        control = i == len(QEMU_ROWS)
        lib = _loaded(out, _emptied(out, work))[1] if control else library
        result = verify_target(pipeline, lib, reference, profile, budget, work / f"qemu{i}",
                               cflags=flags)
        rows.append(_row(example, "QEMU mps2-an386 (Cortex-M4F)", "arm-none-eabi-gcc", flags,
                         result.parity, not control, result.resources["fused_multiply_add"]))
    return rows


def _markdown(rows: list[dict], seconds: float) -> str:
    lines = ["# Parity under build flags", "",
             "Each example's library built the way a firmware build would (the compiler's "
             "defaults, `-O2`, then the row's flags; `bench/flag_matrix.py`), every held-out "
             "window and the held-out stream compared with the Python reference. "
             "`kml_fp.h: no` rows are the control: the same library with its `kml_fp.h` "
             "emptied (no pragmas), i.e. what a contracting build did before.", "",
             f"Host: {platform.machine()} ({_cpu()}); QEMU: arm-none-eabi-gcc "
             f"{_version('arm-none-eabi-gcc')} for the Cortex-M4F (`-mcpu=cortex-m4 -mthumb "
             f"-mfpu=fpv4-sp-d16 -mfloat-abi=hard`, then the row's flags). {seconds:.0f} s.",
             "",
             "| example | where | compiler | flags | kml_fp.h | windows equal | features "
             "bit-exact (max diff) | stream equal | recordings equal | FMA in image |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        rec = "-" if r["recordings"] is None else f"{r['recordings'][0]}/{r['recordings'][1]}"
        fused = r["fused_multiply_add"]
        fma = "-" if fused is None else (
            "none" if not fused["found"] else
            f"{fused['instructions']} in {', '.join(fused['found'][:4])}"
            + (" ..." if len(fused["found"]) > 4 else ""))
        exact = "yes" if r["features_bit_exact"] else f"NO ({r['max_abs_feature_diff']:.1e})"
        lines.append(f"| {r['example']} | {r['where']} | {r['compiler']} {_version(r['compiler'])} "
                     f"| `{' '.join(r['flags']) or '(defaults)'}` | "
                     f"{'yes' if r['kml_fp_h'] else '**no**'} | {r['decisions_equal']}/{r['n']} | "
                     f"{exact} | {r['stream_equal']}/{r['stream_windows']} | {rec} | {fma} |")
    ok = [r for r in rows if r["kml_fp_h"]]
    held = sum(r["features_bit_exact"] and r["decisions_equal"] == r["n"]
               and r["stream_equal"] == r["stream_windows"] for r in ok)
    lines += ["", f"With kml_fp.h: {held}/{len(ok)} rows at full parity with bit-exact "
              f"features, and no fused multiply-add in any linked image."]
    return "\n".join(lines) + "\n"


def _cpu() -> str:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "?"
    return "FMA" if " fma " in flags.replace("\n", " ") else "no FMA"


def _version(cc: str) -> str:
    try:
        return subprocess.run([cc, "-dumpversion"], capture_output=True,
                              text=True).stdout.strip()
    except OSError:
        return "?"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", default=",".join(EXAMPLES))
    parser.add_argument("--no-qemu", action="store_true")
    args = parser.parse_args()
    names = [n for n in args.examples.split(",") if n]
    unknown = [n for n in names if n not in EXAMPLES]
    if unknown:
        parser.error(f"unknown example {unknown[0]}; known: {', '.join(EXAMPLES)}")
    from kiloml.errors import KilomlError

    start = time.perf_counter()
    rows: list[dict] = []
    not_run: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="kiloml-flag-matrix-") as tmp:
        for name in names:
            work = Path(tmp) / name
            print(f"{name}: kiloml run", flush=True)
            try:
                out = _run_example(EXAMPLES[name], work)
                rows += _host_rows(name, out, work / "flags")
                if not args.no_qemu:
                    print(f"{name}: QEMU rows", flush=True)
                    rows += _qemu_rows(name, out, work / "flags")
            except (KilomlError, RuntimeError) as exc:  # said in the results, not hidden
                not_run[name] = str(exc).replace(tmp, "<tmp>")
                print(f"{name}: not run: {not_run[name]}", flush=True)
    seconds = time.perf_counter() - start
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "flag_matrix.json").write_text(
        json.dumps({"rows": rows, "not_run": not_run}, indent=1) + "\n")
    text = _markdown(rows, seconds) + "".join(f"\nNot run: {n}: {why}\n"
                                              for n, why in not_run.items())
    (RESULTS / "flag_matrix.md").write_text(text)
    print((RESULTS / "flag_matrix.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
