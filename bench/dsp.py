"""DSP blocks on the emulated Cortex-M4F, side by side with CMSIS-DSP.

Instructions per 256-point real FFT and per MFCC frame, kiloml against CMSIS-DSP
(arm_rfft_fast_f32, arm_mfcc_f32) built for the same core from the cmsisdsp source
distribution on PyPI, with the same flags and the same QEMU harness. Also compares
kiloml's MFCCs with python_speech_features' and states the convention differences.

Writes bench/results/dsp.json (rows: block, size, tool, target, instructions, ...)
and bench/results/dsp.md.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent / "dsp"
RESULTS = ROOT / "bench" / "results"
TARGET = "cortex-m4f"
OPTIMIZE = "-O2"
CMSIS_VERSION = "1.10.3"
CMSIS_FFT_SOURCES = [
    "TransformFunctions/arm_rfft_fast_f32.c", "TransformFunctions/arm_rfft_fast_init_f32.c",
    "TransformFunctions/arm_cfft_f32.c", "TransformFunctions/arm_cfft_init_f32.c",
    "TransformFunctions/arm_cfft_radix8_f32.c", "TransformFunctions/arm_bitreversal2.c",
    "CommonTables/arm_common_tables.c", "CommonTables/arm_const_structs.c",
]


@dataclass
class Variant:
    block: str
    size: int
    tool: str
    variant: str
    directory: Path
    sources: list[Path]
    include_dirs: list[Path]
    defines: list[str]
    n_in: int
    n_out: int


def cmsis_source(work: Path) -> Path:
    """Download and unpack the cmsisdsp source distribution (pip, no build)."""
    dest = work / "cmsis"
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", f"cmsisdsp=={CMSIS_VERSION}",
                    "--no-binary", ":all:", "--no-deps", "--no-build-isolation", "-q", "-d",
                    str(dest)], check=True, capture_output=True)
    archive = next(dest.glob("cmsisdsp-*.tar.gz"))
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    return next(p for p in dest.iterdir() if p.is_dir() and p.name.startswith("cmsisdsp-"))


def header(d: Path, n_in: int, n_out: int) -> None:
    (d / "bench_dsp.h").write_text(
        f"#define BENCH_IN {n_in}\n#define BENCH_OUT {n_out}\n"
        "void bench_dsp_setup(void);\nconst float *bench_dsp_run(float *in, float *out);\n")


def fft_variants(n: int, work: Path, cmsis: Path) -> list[Variant]:
    from kiloml.codegen.library import RUNTIME_DIR
    from kiloml.dsp.fft import make_plan

    out = []
    d = work / f"kiloml-rfft-{n}"
    d.mkdir(parents=True)
    for ext in (".c", ".h"):
        shutil.copyfile(RUNTIME_DIR / f"kml_fft{ext}", d / f"kml_fft{ext}")
    consts, name = make_plan(n).c_constants("kml_b_")
    (d / "adapter.c").write_text(
        f'#include "bench_dsp.h"\n#include "kml_fft.h"\n{consts}\n'
        "void bench_dsp_setup(void) {}\n"
        f"const float *bench_dsp_run(float *in, float *out)\n{{\n    (void)out;\n"
        f"    kml_rfft(&{name}, in); /* in place */\n    return in;\n}}\n")
    header(d, n, n)
    out.append(Variant("rfft", n, "kiloml", "kml_rfft", d, [d / "kml_fft.c", d / "adapter.c"],
                       [d], [], n, n))
    for contract in ("off", "fast"):
        d = work / f"cmsis-rfft-{n}-{contract}"
        d.mkdir(parents=True)
        shutil.copyfile(HERE / "cmsis_compiler.h", d / "cmsis_compiler.h")
        (d / "adapter.c").write_text(
            '#include "bench_dsp.h"\n#include "arm_math.h"\n'
            "static arm_rfft_fast_instance_f32 rfft;\n"
            f"void bench_dsp_setup(void) {{ (void)arm_rfft_fast_init_f32(&rfft, {n}); }}\n"
            "const float *bench_dsp_run(float *in, float *out)\n{\n"
            "    arm_rfft_fast_f32(&rfft, in, out, 0);\n    return out;\n}\n")
        header(d, n, n)
        sources = [cmsis / "Source" / s for s in CMSIS_FFT_SOURCES] + [d / "adapter.c"]
        out.append(Variant("rfft", n, "CMSIS-DSP", f"arm_rfft_fast_f32, fp-contract={contract}",
                           d, sources, [d, cmsis / "Include", cmsis / "PrivateInclude"],
                           ["-DARM_MATH_CM4", f"-ffp-contract={contract}"], n, n))
    return out


def measure(v: Variant, frames: np.ndarray, work: Path) -> dict:
    from kiloml.codegen.library import FirmwareLibrary
    from kiloml.targets.profiles import load_profile
    from kiloml.verify.mcu import build, qemu
    from kiloml.verify.mcu.toolchain import find_toolchain

    toolchain = find_toolchain()
    profile = load_profile(TARGET)
    objects = build.compile_objects(toolchain, v.sources, v.include_dirs, profile, OPTIMIZE,
                                    work / "obj", extra=v.defines, strict=False)
    library = FirmwareLibrary(v.directory, v.sources, [], 0)
    probe = build.budget_probe(toolchain, library, objects, profile, OPTIMIZE, work / "probe",
                               probe_source=HERE / "dsp_probe.c")
    elf = build.build_harness(toolchain, library, objects, profile, profile.qemu_machine,
                              OPTIMIZE, work / "harness", harness_source=HERE / "dsp_main.c")
    plugin = qemu.build_plugin(toolchain, work / "plugin")
    x = np.ascontiguousarray(frames, dtype="<f4")
    payload = np.int32(len(x)).astype("<i4").tobytes() + x.tobytes()
    run = qemu.run_harness(toolchain, elf, profile.qemu_machine, payload, plugin, work / "run",
                           timeout_s=600)
    rec = np.dtype([("out", "<f4", (v.n_out,)), ("stack", "<u4")])
    out = np.frombuffer(run.output, dtype=rec)
    return {"instructions": int(run.instructions.max()),
            "instructions_mean": float(run.instructions.mean()),
            "flash_bytes": probe.flash_bytes, "ram_bytes": probe.ram_bytes,
            "stack_bytes": int(out["stack"].max()), "output": out["out"]}


def main() -> int:
    from kiloml.progress import track

    rows = []
    work = Path(tempfile.mkdtemp(prefix="kiloml-bench-dsp-"))
    try:
        cmsis = cmsis_source(work)
        rng = np.random.default_rng(0)
        n = 256
        frames = rng.standard_normal((20, n)).astype(np.float32)
        reference = np.fft.rfft(frames.astype(np.float64), axis=-1)
        for v in track(fft_variants(n, work, cmsis), "FFT 256"):
            m = measure(v, frames, v.directory / "work")
            got = m.pop("output")
            spectrum = got[:, 2::2] + 1j * got[:, 3::2]
            err = np.max(np.abs(spectrum - reference[:, 1:n // 2])) / np.abs(reference).max()
            rows.append({"block": "rfft", "size": n, "tool": v.tool, "variant": v.variant,
                         "target": TARGET, **m, "max_rel_error_vs_numpy": float(err)})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "dsp.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = ["# DSP blocks on Cortex-M4F: kiloml and CMSIS-DSP", "",
             f"arm-none-eabi-gcc {OPTIMIZE} -mcpu=cortex-m4 -mfpu=fpv4-sp-d16 -mfloat-abi=hard; "
             "QEMU mps2-an386; instructions from kiloml's QEMU plugin (max over frames).", "",
             "| block | size | tool | variant | instructions | flash B | RAM B | stack B |",
             "|---|---:|---|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['block']} | {r['size']} | {r['tool']} | {r['variant']} | "
                     f"{r['instructions']:,} | {r['flash_bytes']:,} | {r['ram_bytes']:,} | "
                     f"{r['stack_bytes']:,} |")
    (RESULTS / "dsp.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
