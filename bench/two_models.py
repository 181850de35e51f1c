"""Two models in one firmware: the watch forest and the watch CNN, each generated with its
own [library] prefix, linked into one host program and one QEMU mps2-an386 (Cortex-M4F)
firmware with one copy of each shared runtime kernel; every held-out window through both.

Writes bench/results/two_models.json and bench/results/two_models.md: parity per model
(host and QEMU), the symbol check (each shared kernel once, no name defined twice), the
firmware's flash and RAM (whole image, each library's own objects, the shared kernels) and
the instructions per inference of each model (QEMU TCG plugin, deterministic).

Usage: python bench/two_models.py [--forest RUN_DIR --cnn RUN_DIR] [--work DIR]
Without run folders it runs examples/watch/kiloml.toml (prefix watch_forest) and
examples/watch/cnn1d.toml (prefix watch_cnn) with --no-emulator first (the CNN trains).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = Path(os.environ.get("KILOML_BENCH_RESULTS", ROOT / "bench" / "results"))

from kiloml.targets.profiles import load_profile  # noqa: E402
from kiloml.verify import combined  # noqa: E402
from kiloml.verify.mcu.build import elf_sections, flash_and_ram  # noqa: E402
from kiloml.verify.mcu.toolchain import find_toolchain  # noqa: E402
from kiloml.verify.sizes import parse_size_a  # noqa: E402

MACHINE = "mps2-an386"
PROJECTS = {"watch_forest": ("kiloml.toml", "out-forest"), "watch_cnn": ("cnn1d.toml", "out-cnn")}


def run_example(work: Path, prefix: str) -> Path:
    name, out = PROJECTS[prefix]
    text = (ROOT / "examples" / "watch" / name).read_text()
    toml = work / name
    toml.write_text(text + f'\n[output]\ndir = "{out}"\n\n[library]\nprefix = "{prefix}"\n')
    subprocess.run([sys.executable, "-m", "kiloml", "run", str(toml), "--no-emulator"],
                   check=True)
    return work / out


def object_sizes(objects: list[Path]) -> dict:
    size = find_toolchain().size
    flash = ram = 0
    for o in objects:
        s = parse_size_a(subprocess.run([size, "-A", "-d", str(o)], capture_output=True,
                                        text=True, check=True).stdout)
        flash += s.flash_bytes
        ram += s.ram_bytes
    return {"flash_bytes": flash, "ram_bytes": ram}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--forest", type=Path)
    ap.add_argument("--cnn", type=Path)
    ap.add_argument("--work", type=Path)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="kiloml-two-models-"))
    work.mkdir(parents=True, exist_ok=True)
    runs = [args.forest or run_example(work, "watch_forest"),
            args.cnn or run_example(work, "watch_cnn")]
    members = [combined.member_from_run(out, work / "libs") for out in runs]
    host = combined.run_host(members, work / "host")
    firmware = combined.build_firmware(members, load_profile("cortex-m4f"), MACHINE,
                                       work / "mcu")
    symbols = combined.symbol_check(firmware)
    mcu, counts = combined.run_firmware(members, firmware, MACHINE, work / "mcu")
    flash, ram = flash_and_ram(elf_sections(find_toolchain(), firmware.elf))
    models = []
    for m, h, q, n in zip(members, host, mcu, counts, strict=True):
        models.append({"prefix": m.library.prefix, "model_id": m.library.info["model_id"],
                       "interface_hash": m.library.info["interface_hash"], "host": h,
                       "qemu": q, "instructions_mean": float(n.mean()),
                       "instructions_max": int(n.max()),
                       "own_objects": object_sizes(firmware.own_objects[m.library.prefix])})
    result = {"machine": MACHINE, "runs": [str(r) for r in runs], "models": models,
              "shared_runtime_objects": object_sizes(firmware.shared_objects),
              "shared_runtime_files": sorted(o.stem for o in firmware.shared_objects),
              "firmware": {"flash_bytes": flash, "ram_bytes": ram,
                           "includes": "start-up, semihosting harness, newlib-nano, a 32 KiB "
                                       "stack reserve is not counted"},
              "symbols": symbols}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "two_models.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / "two_models.md").write_text(markdown(result))
    print(markdown(result))


def markdown(r: dict) -> str:
    lines = [
        "# Two models in one firmware",
        "",
        "`python bench/two_models.py`: the watch forest (`[library] prefix = "
        "\"watch_forest\"`) and the watch CNN (`prefix = \"watch_cnn\"`), linked into one "
        f"host program (gcc) and one QEMU {r['machine']} firmware (arm-none-eabi-gcc -O2, "
        "Cortex-M4F, `-Wl,--gc-sections -Wl,--warn-common`), every held-out window "
        "through each model's `<prefix>_classify`.",
        "",
        "| model | model id | interface | host parity | QEMU parity | max score diff (QEMU) | "
        "instructions / inference (mean, max) | own objects flash / RAM |",
        "|---|---|---|---|---|---:|---|---|",
    ]
    for m in r["models"]:
        h, q = m["host"], m["qemu"]
        lines.append(
            f"| {m['prefix']} | `{m['model_id']}` | `{m['interface_hash']}` | "
            f"{h['decisions_equal']}/{h['n']} | {q['decisions_equal']}/{q['n']} | "
            f"{q['max_abs_score_diff']:.1e} | {m['instructions_mean']:,.0f}, "
            f"{m['instructions_max']:,} | {m['own_objects']['flash_bytes']:,} B / "
            f"{m['own_objects']['ram_bytes']:,} B |")
    s = r["symbols"]
    shared = r["shared_runtime_objects"]
    lines += [
        "",
        f"- shared runtime kernels, one copy: {', '.join(r['shared_runtime_files'])} "
        f"({shared['flash_bytes']:,} B flash, {shared['ram_bytes']:,} B RAM as objects); "
        f"{s['shared_kernel_functions_linked']} of their functions linked, each at most "
        f"{s['shared_kernel_copies_max']} time(s)",
        f"- names defined by both libraries: {len(s['names_defined_by_two_libraries'])}; "
        f"model symbols outside their prefix: {len(s['model_symbols_outside_prefix'])}; "
        f"linker warnings: {len(s['link_warnings'])}",
        f"- the whole firmware (both models, harness, start-up, newlib-nano): "
        f"{r['firmware']['flash_bytes']:,} B flash, {r['firmware']['ram_bytes']:,} B RAM "
        "(static; the stack reserve not counted)",
        "- object sizes are before `--gc-sections`; instructions are counted by the QEMU "
        "TCG plugin between kml_bench_begin/end around each classify call (deterministic)",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
