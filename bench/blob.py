"""The parameter-blob loader (kml_blob.c + kml_sha256.c, + kml_ed25519.c / kml_sha512.c
when signatures are required) on the emulated Cortex-M4F, on the watch example's forest
(20 trees, 1,874 nodes, 60 features, 7 classes, a monitor).

Sizes: the budget probe (the library's whole API) linked at the target's memory sizes
(gc-sections): the default library; the updatable one ([library] updatable: the same API,
parameters read through kml_blob_forest() / kml_blob_decision()); the updatable one with
kml_blob_check / kml_blob_activate / kml_selftest called (kiloml/verify/mcu/blob_probe.c);
the same with signatures required. Differences = what each step adds; the link map gives
what was kept of each loader object. At -O2 (what kiloml verify builds with) and -Os.
Instructions: QEMU mps2-an386 with kiloml's counting plugin (deterministic): one
kml_blob_check and one kml_blob_activate of the watch forest's own blob, unsigned and signed.

Writes bench/results/blob.json and bench/results/blob.md.
Usage: python bench/blob.py [--run build/watch] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = Path(os.environ.get("KILOML_BENCH_RESULTS", ROOT / "bench" / "results"))

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from kiloml.blob import harness as bh  # noqa: E402
from kiloml.blob.build import write_blob  # noqa: E402
from kiloml.codegen.identity import created_in  # noqa: E402
from kiloml.codegen.library import write_library  # noqa: E402
from kiloml.persist.pipeline_state import load_pipeline, save_pipeline  # noqa: E402
from kiloml.targets.profiles import load_profile  # noqa: E402
from kiloml.verify.mcu.build import MCU_DIR, budget_probe, compile_objects  # noqa: E402
from kiloml.verify.mcu.link_map import kept_by_objects  # noqa: E402
from kiloml.verify.mcu.toolchain import find_toolchain  # noqa: E402
from kiloml.verify.reference import REFERENCE_FILE, Reference  # noqa: E402

PROFILE = "cortex-m4f"
LOADER_OBJECTS = {"kml_blob": ["kml_blob.o"], "kml_sha256": ["kml_sha256.o"],
                  "kml_ed25519 + kml_sha512": ["kml_ed25519.o", "kml_sha512.o"]}


def updatable_run(run: Path, work: Path, key: Path | None) -> Path:
    """A copy of ``run``'s pipeline built updatable (the same trained forest), with its
    library and reference, so write_blob can read it."""
    out = work / ("signed" if key else "unsigned")
    shutil.rmtree(out, ignore_errors=True)
    (out / "verify").mkdir(parents=True)
    pipeline = load_pipeline(run / "pipeline.json")
    pipeline.library_updatable = True
    if key is not None:
        private = serialization.load_pem_private_key(key.read_bytes(), password=None)
        pipeline.library_update_key = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    save_pipeline(pipeline, out / "pipeline.json")
    write_library(pipeline, out / "firmware",
                  created_utc=created_in(run / "firmware" / "kiloml_model.h", "kml"))
    shutil.copyfile(run / "verify" / REFERENCE_FILE, out / "verify" / REFERENCE_FILE)
    return out


def sizes(firmware: Path, probe: Path | None, optimize: str, work: Path) -> dict:
    from kiloml.codegen.library import FirmwareLibrary
    tc, profile = find_toolchain(), load_profile(PROFILE)
    sources = sorted(firmware.glob("*.c"))
    library = FirmwareLibrary(firmware, sources, sorted(firmware.glob("*.h")), 0)
    objects = compile_objects(tc, sources, [firmware], profile, optimize, work / "lib")
    s = budget_probe(tc, library, objects, profile, optimize, work / "probe",
                     probe_source=probe)
    kept = {name: kept_by_objects(work / "probe" / "probe.map",
                                  [work / "lib" / o for o in objs]).flash_bytes
            for name, objs in LOADER_OBJECTS.items()}
    ram = {name: kept_by_objects(work / "probe" / "probe.map",
                                 [work / "lib" / o for o in objs]).ram_bytes
           for name, objs in LOADER_OBJECTS.items()}
    return {"flash_bytes": s.flash_bytes, "ram_bytes": s.ram_bytes,
            "kept_flash": kept, "kept_ram": ram}


def instructions(run: Path, windows, work: Path) -> dict:
    blob = (run / "model.kmlb").read_bytes()
    q = bh.build_qemu(run / "firmware", work / "fw")
    ops = bh.Ops(windows).blob(blob).classify()
    results, counts = bh.run_qemu(q, ops, 7, work / "qemu")
    assert results[0].activate == 0, bh.reason_name(results[0].activate)
    return {"blob_bytes": len(blob), "check": int(counts[0]), "activate": int(counts[1]),
            "check_stack_bytes": results[0].check_stack_bytes,
            "activate_stack_bytes": results[0].activate_stack_bytes}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, default=ROOT / "build" / "watch")
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args()
    if not (args.run / "pipeline.json").exists():
        subprocess.run([sys.executable, "-m", "kiloml", "run",
                        str(ROOT / "examples" / "watch" / "kiloml.toml")], check=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="kiloml-bench-blob-"))
    work.mkdir(parents=True, exist_ok=True)
    key = work / "key.pem"
    key.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    plain, signed = updatable_run(args.run, work, None), updatable_run(args.run, work, key)
    assert write_blob(plain, plain / "model.kmlb", signing_key=None, counter=1)
    assert write_blob(signed, signed / "model.kmlb", signing_key=key, counter=1)
    probe = MCU_DIR / "blob_probe.c"
    result: dict = {"run": str(args.run.relative_to(ROOT) if args.run.is_relative_to(ROOT)
                               else args.run), "target": PROFILE, "sizes": {}}
    for opt in ("-O2", "-Os"):
        o = opt[1:]
        result["sizes"][opt] = {
            "default": sizes(args.run / "firmware", None, opt, work / f"default{o}"),
            "updatable": sizes(plain / "firmware", None, opt, work / f"updatable{o}"),
            "loader": sizes(plain / "firmware", probe, opt, work / f"loader{o}"),
            "loader_signed": sizes(signed / "firmware", probe, opt, work / f"signed{o}"),
        }
    reference = Reference.load(args.run / "verify" / REFERENCE_FILE,
                               load_pipeline(args.run / "pipeline.json"))
    windows = reference.windows[:64]
    result["instructions"] = {"unsigned": instructions(plain, windows, work / "i_plain"),
                              "signed": instructions(signed, windows, work / "i_signed")}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "blob.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / "blob.md").write_text(markdown(result))
    print(markdown(result))


def markdown(r: dict) -> str:
    lines = ["# Parameter-blob loader on the Cortex-M4F", "",
             f"`python bench/blob.py` on {r['run']} (20-tree forest, 1,874 nodes, 60 "
             "features, 7 classes, monitor), arm-none-eabi-gcc, `--gc-sections`, the budget "
             "probe linked at the target's memory sizes. Differences against the default "
             "library's probe; \"kept\" is what the link map keeps of each loader object.", "",
             "| build | opt | flash B | RAM B | + flash vs default | + RAM vs default |",
             "|---|---|---:|---:|---:|---:|"]
    for opt, rows in r["sizes"].items():
        base = rows["default"]
        for name, s in rows.items():
            lines.append(f"| {name} | {opt} | {s['flash_bytes']:,} | {s['ram_bytes']:,} | "
                         f"{s['flash_bytes'] - base['flash_bytes']:+,} | "
                         f"{s['ram_bytes'] - base['ram_bytes']:+,} |")
    lines += ["", "Kept of each loader object (flash / RAM bytes):", "",
              "| build | opt | " + " | ".join(LOADER_OBJECTS) + " |",
              "|---|---|" + "---:|" * len(LOADER_OBJECTS)]
    for opt, rows in r["sizes"].items():
        for name in ("loader", "loader_signed"):
            s = rows[name]
            lines.append(f"| {name} | {opt} | " + " | ".join(
                f"{s['kept_flash'][k]:,} / {s['kept_ram'][k]:,}" for k in LOADER_OBJECTS)
                + " |")
    lines += ["", "Instructions on QEMU mps2-an386 (the watch forest's own blob; -O2):", "",
              "| blob | bytes | kml_blob_check | kml_blob_activate (check + self-test) | "
              "stack B (check / activate) |", "|---|---:|---:|---:|---:|"]
    for name, i in r["instructions"].items():
        lines.append(f"| {name} | {i['blob_bytes']:,} | {i['check']:,} | {i['activate']:,} "
                     f"| {i['check_stack_bytes']:,} / {i['activate_stack_bytes']:,} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
