"""Tree compaction on the watch example: [model] thresholds = "int16" and leaves =
"uint8" / "uint16" against the exact float32/float64 forest.

Each variant is `kiloml run` on a temporary copy of examples/watch/kiloml.toml (the
same data, split, features and scikit-learn forest: 20 trees, depth 8) with only the
compaction keys changed, so the differences are the compaction's. Figures come from
each run's metrics.json: held-out accuracy, host and QEMU parity, flash / RAM / stack /
instructions on cortex-m4f (the model stage's own flash and instructions from the
stage-marked build), and the model's table bytes. Then `kiloml verify --target
cortex-m0plus` on the baseline and the compact variants: a core without an FPU, where
the float32 threshold compares are library calls. Labels changed = held-out windows
whose label differs from the baseline's.

Writes bench/results/tree_compaction.json and bench/results/tree_compaction.md.
Usage: python bench/tree_compaction.py [--no-m0]
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(os.environ.get("KILOML_BENCH_RESULTS", ROOT / "bench" / "results"))
PROJECT = ROOT / "examples" / "watch" / "kiloml.toml"
TARGET = "cortex-m4f"
NO_FPU_TARGET = "cortex-m0plus"

VARIANTS = [  # name, c_style, thresholds, leaves
    ("baseline (exact)", "table", "float32", "exact"),
    ("int16 thresholds", "table", "int16", "exact"),
    ("uint8 leaves", "table", "float32", "uint8"),
    ("int16 + uint8 (compact)", "table", "int16", "uint8"),
    ("int16 + uint16", "table", "int16", "uint16"),
    ("inline baseline", "inline", "float32", "exact"),
    ("inline int16 + uint8", "inline", "int16", "uint8"),
]
ON_M0 = {"baseline (exact)", "int16 thresholds", "int16 + uint8 (compact)"}


def variant_toml(text: str, out: Path, c_style: str, thresholds: str, leaves: str) -> str:
    model = (f'c_style = "{c_style}"\nthresholds = "{thresholds}"\nleaves = "{leaves}"\n')
    text, n = re.subn(r"(?m)^\[model\]\n", "[model]\n" + model, text)
    assert n == 1, "the example has one [model] section"
    assert "[output]" not in text
    return text + f'\n[output]\ndir = "{out.as_posix()}"\n'


def kiloml(*args: str) -> None:
    cmd = [sys.executable, "-m", "kiloml", *args]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{result.stderr[-3000:]}")


def figures(out: Path, target: str) -> dict:
    m = json.loads((out / "metrics.json").read_text())
    r = m["resources"][target]
    stage = next(s for s in r.get("stages", []) if s["stage"] == "model")
    parity = m["parity"][target]
    return {
        "flash_bytes": r["flash_bytes"],
        "ram_bytes": r["ram_bytes"],
        "stack_bytes": r["stack_bytes"],
        "instructions_max": r["instructions_per_inference"],
        "instructions_mean": round(float(r["instructions_mean"]), 1),
        "model_flash_bytes": stage["flash_bytes"],
        "model_instructions_mean": round(float(stage["instructions"]), 1),
        "decisions_equal": parity["decisions_equal"],
        "n_windows": parity["n"],
        "max_abs_score_diff": parity["max_abs_score_diff"],
        "streaming_equal": parity["streaming"]["all_decisions_equal"],
    }


def main() -> int:
    m0 = "--no-m0" not in sys.argv[1:]
    text = PROJECT.read_text()
    work = Path(tempfile.mkdtemp(prefix="kiloml-bench-compaction-"))
    rows = []
    try:
        base_labels = None
        for name, style, thresholds, leaves in VARIANTS:
            slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
            out = work / slug
            toml = work / f"{slug}.toml"
            toml.write_text(variant_toml(text, out, style, thresholds, leaves))
            print(f"{name}: kiloml run", flush=True)
            kiloml("run", str(toml))
            m = json.loads((out / "metrics.json").read_text())
            labels = np.load(out / "verify" / "reference.npz", allow_pickle=False)["labels"]
            if base_labels is None:
                base_labels = labels
            row = {"variant": name, "c_style": style, "thresholds": thresholds,
                   "leaves": leaves, "accuracy": m["evaluation"]["accuracy"],
                   "balanced_accuracy": m["evaluation"]["balanced_accuracy"],
                   "labels_changed": int((labels != base_labels).sum()),
                   "score_arithmetic": m["model"]["score_arithmetic"],
                   "mixed_leaves": m["model"]["mixed_leaves"],
                   "table_bytes": m["model"].get("table_bytes"),
                   TARGET: figures(out, TARGET)}
            if m0 and name in ON_M0:
                print(f"{name}: kiloml verify --target {NO_FPU_TARGET}", flush=True)
                kiloml("verify", str(toml), "--target", NO_FPU_TARGET)
                row[NO_FPU_TARGET] = figures(out, NO_FPU_TARGET)
            rows.append(row)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "tree_compaction.json").write_text(json.dumps(rows, indent=2) + "\n")
    base = rows[0]
    inline_base = next(r for r in rows if r["variant"] == "inline baseline")

    def delta(r: dict, key: str, target: str = TARGET, ref: dict | None = None) -> str:
        ref = ref or (inline_base if r["c_style"] == "inline" else base)
        v, b = r[target][key], ref[target][key]
        return f"{v:,.0f} ({v - b:+,.0f})" if v != b else f"{v:,.0f}"

    lines = [
        "# Tree compaction: int16 thresholds, integer leaves (watch example)", "",
        "`examples/watch/kiloml.toml` (statistics, random forest of 20 trees, depth 8; "
        "subjects 9 and 10 held out, 1871 windows) run with `kiloml run` per variant, only "
        "the `[model]` compaction keys changed. Each compacted model is its own Python "
        "reference: parity must stay exact (decisions equal on every held-out window, "
        "streamed sample by sample too). Flash and RAM: what the library adds to a "
        f"minimal firmware on {TARGET}; instructions per inference (whole pipeline: "
        "the statistics features take ~55,000 of them) and the model stage's own "
        "(mean, from the stage-marked build) by the QEMU plugin; deltas against the "
        "baseline of the same C style. Produced by `python bench/tree_compaction.py`.", "",
        "Where the bytes go: int16 thresholds halve the threshold table (2 instead of 4 "
        "bytes a node, plus 9 bytes of grid per used feature); integer leaves drop the "
        "float64 vote (`kml_f64`) and, with uint8, let the leaves merge into few enough "
        "rows for one-byte child references. Where the instructions go: every used "
        "feature is quantized once per inference (two float32 operations, a floor and a "
        "clamp), which costs more than the integer compares save on the M4F; without an "
        "FPU the integer vote saves more than the quantization costs.", "",
        "| variant | accuracy | labels changed | table B | flash B | model flash B | "
        "stack B | instructions max | model instructions mean | parity (host, QEMU) | "
        "score arithmetic |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        t = r[TARGET]
        table = f"{r['table_bytes']:,}" if r["table_bytes"] else "(code)"
        parity = (f"{t['decisions_equal']}/{t['n_windows']}, max score diff "
                  f"{t['max_abs_score_diff']:.1e}, streaming "
                  f"{'equal' if t['streaming_equal'] else 'DIFFERS'}")
        lines.append(
            f"| {r['variant']} | {r['accuracy']:.4f} | {r['labels_changed']} | {table} | "
            f"{delta(r, 'flash_bytes')} | {delta(r, 'model_flash_bytes')} | "
            f"{delta(r, 'stack_bytes')} | {delta(r, 'instructions_max')} | "
            f"{delta(r, 'model_instructions_mean')} | {parity} | {r['score_arithmetic']} |")
    m0_rows = [r for r in rows if NO_FPU_TARGET in r]
    if m0_rows:
        lines += ["", f"On {NO_FPU_TARGET} (no FPU; `kiloml verify --target {NO_FPU_TARGET}`):",
                  "", "| variant | flash B | model flash B | instructions max | "
                  "model instructions mean | decisions equal |", "|---|---:|---:|---:|---:|---:|"]
        for r in m0_rows:
            t = r[NO_FPU_TARGET]
            lines.append(
                f"| {r['variant']} | {delta(r, 'flash_bytes', NO_FPU_TARGET)} | "
                f"{delta(r, 'model_flash_bytes', NO_FPU_TARGET)} | "
                f"{delta(r, 'instructions_max', NO_FPU_TARGET)} | "
                f"{delta(r, 'model_instructions_mean', NO_FPU_TARGET)} | "
                f"{t['decisions_equal']}/{t['n_windows']} |")
    (RESULTS / "tree_compaction.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
