"""`make bench`: what each [optimize] technique buys on the watch CNN, measured end to end.

Every row is a full `kiloml run` (kiloml.run.run_project) of a temporary copy of
examples/watch/cnn1d.toml with fewer epochs (so the whole benchmark stays within
about 20 minutes on 2 cores): held-out accuracy (subjects 9 and 10), float and
int8 accuracy, and flash, static RAM, stack and instructions per inference
measured on the emulated Cortex-M4F (QEMU mps2-an386), plus MACs and int8 weight
bytes of the network. Each technique is compared with its own baseline: pruning
and QAT with the same network unoptimized, distillation with the same small
student trained on labels only. When the tree compaction options exist
([model] thresholds / leaves), the watch forest is compared with its compacted
form too. Results: bench/results/optimize.json and optimize.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(os.environ.get("KILOML_BENCH_RESULTS", ROOT / "bench" / "results"))
TARGET = "cortex-m4f"
EPOCHS = 30

BASE = "filters = [16, 32, 32]"
STUDENT = "filters = [8, 16, 16]"

# (name, technique, baseline row, [model] filters line, [optimize] body)
ROWS: list[tuple[str, str, str | None, str, str]] = [
    ("cnn1d [16,32,32]", "baseline", None, BASE, ""),
    ("structured pruning 50%", "structured pruning", "cnn1d [16,32,32]", BASE,
     'prune = "structured"\nsparsity = 0.5\nfine_tune_epochs = 15\n'),
    ("magnitude pruning 50%", "magnitude pruning", "cnn1d [16,32,32]", BASE,
     'prune = "magnitude"\nsparsity = 0.5\nprune_schedule = "gradual"\nfine_tune_epochs = 15\n'),
    ("QAT on", "QAT", "cnn1d [16,32,32]", BASE, 'qat = "on"\nfine_tune_epochs = 10\n'),
    ("QAT auto", "QAT", "cnn1d [16,32,32]", BASE, 'qat = "auto"\nfine_tune_epochs = 10\n'),
    ("student cnn1d [8,16,16]", "baseline", None, STUDENT, ""),
    ("student <- random forest (100 trees)", "distillation", "student cnn1d [8,16,16]", STUDENT,
     'distill_from = {kind = "random_forest", n_estimators = 100}\ntemperature = 4.0\n'
     'distill_alpha = 0.5\n'),
    ("student <- cnn1d [32,64,64]", "distillation", "student cnn1d [8,16,16]", STUDENT,
     'distill_from = {kind = "cnn1d", filters = [32, 64, 64]}\ntemperature = 4.0\n'
     'distill_alpha = 0.5\n'),
]


def project_text(filters: str, optimize: str, out: Path, name: str) -> str:
    text = (ROOT / "examples" / "watch" / "cnn1d.toml").read_text()
    text = re.sub(r'^name = ".*"$', f'name = "{name}"', text, count=1, flags=re.M)
    text = re.sub(r"^filters = \[.*\]$", filters, text, count=1, flags=re.M)
    text = re.sub(r"^epochs = \d+", f"epochs = {EPOCHS}", text, count=1, flags=re.M)
    text += f'\n[output]\ndir = "{out}"\n'
    if optimize:
        text += "\n[optimize]\n" + optimize
    return text


def compaction_available() -> bool:
    from kiloml.project import TreeModelConfig

    fields = TreeModelConfig.model_fields
    try:
        import kiloml.models.forest_compact  # noqa: F401
    except ImportError:
        return False
    return "thresholds" in fields and "leaves" in fields


def run_one(name: str, text: str, work: Path) -> dict:
    from kiloml.run import run_project

    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    toml = work / f"{slug}.toml"
    toml.write_text(text)
    started = time.perf_counter()
    run_project(toml)
    seconds = time.perf_counter() - started
    m = json.loads((work / slug / "metrics.json").read_text())
    res = m["resources"][TARGET]
    neural = m.get("neural", {})
    row = {
        "name": name,
        "accuracy": m["evaluation"]["accuracy"],
        "balanced_accuracy": m["evaluation"]["balanced_accuracy"],
        "float_accuracy": neural.get("float_accuracy"),
        "int8_accuracy": neural.get("int8_accuracy"),
        "flash_bytes": res["flash_bytes"],
        "ram_bytes": res["ram_bytes"],
        "stack_bytes": res["stack_bytes"],
        "ram_with_stack_bytes": res["ram_with_stack_bytes"],
        "instructions_per_inference": res["instructions_per_inference"],
        "instructions_mean": res.get("instructions_mean"),
        "measured_on": res["measured_on"],
        "macs": m["model"].get("macs"),
        "weight_bytes": m["model"].get("weight_bytes"),
        "parity_host": m["parity"]["host"]["all_decisions_equal"],
        "parity_target": m["parity"][TARGET]["all_decisions_equal"],
        "tflm_bit_exact": neural.get("tflm_parity", {}).get("all_bit_exact"),
        "seconds": round(seconds, 1),
    }
    if "filters" in m["model"]:
        row["filters"] = m["model"]["filters"]
    opt = neural.get("optimization")
    if opt is not None:
        row["optimization"] = {"techniques": opt["techniques"], "steps": opt["steps"]}
    return row


def delta(row: dict, base: dict) -> dict:
    keys = ("accuracy", "int8_accuracy", "flash_bytes", "ram_with_stack_bytes",
            "instructions_per_inference", "macs", "weight_bytes")
    out = {}
    for k in keys:
        if row.get(k) is None or base.get(k) is None:
            continue
        if k.endswith("accuracy"):
            out[k + "_points"] = round(100 * (row[k] - base[k]), 2)
        else:
            out[k] = row[k] - base[k]
            out[k + "_percent"] = round(100 * (row[k] - base[k]) / base[k], 1) if base[k] else None
    return out


def step_note(row: dict) -> str:
    opt = row.get("optimization")
    if not opt:
        return ""
    notes = []
    for s in opt["steps"]:
        t = s["technique"]
        if t == "structured_pruning":
            notes.append(f"filters {s['filters_before']} -> {s['filters_after']}")
        elif t == "magnitude_pruning":
            notes.append(f"{100 * s['float_weight_sparsity']:.0f}% zero weights (dense kernels: "
                         "same flash and instructions)")
        elif t == "qat":
            notes.append(f"PTQ lost {s['ptq_lost_points']} points on validation; "
                         f"{'ran' if s['triggered'] else 'not triggered'}, kept {s['kept']}")
        elif t == "distillation":
            notes.append(f"teacher held-out accuracy {s['teacher']['test_accuracy']:.4f} "
                         f"({s['teacher']['soft_targets']})")
    return "; ".join(notes)


def write_markdown(rows: list[dict], path: Path, command: str, total_s: float) -> None:
    lines = [
        "# [optimize] techniques on the watch CNN",
        "",
        f"`{command}`: each row a full `kiloml run` of examples/watch/cnn1d.toml with "
        f"epochs = {EPOCHS} (the example trains 60) and the settings named; held-out subjects 9 "
        f"and 10 (1871 windows); flash, static RAM, stack and instructions per inference "
        f"(max over the held-out windows) measured on QEMU mps2-an386 ({TARGET}). "
        f"Deltas against the row's baseline. {platform.machine()}, "
        f"Python {platform.python_version()}, total {total_s / 60:.1f} min.",
        "",
        "The forest rows (when the tree compaction options exist) run "
        "examples/watch/kiloml.toml as is (20 trees on statistics), then with [model] "
        "thresholds = \"int16\" and leaves = \"uint8\".",
        "",
        "| row | technique | accuracy (int8) | float | flash B | RAM+stack B | instructions "
        "| MACs | weights B | parity host/M4/TFLM | s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        parity = "/".join("yes" if v else ("-" if v is None else "NO")
                          for v in (r["parity_host"], r["parity_target"], r["tflm_bit_exact"]))
        fl = "" if r["float_accuracy"] is None else f"{r['float_accuracy']:.4f}"
        macs = "" if r["macs"] is None else f"{r['macs']:,}"
        lines.append(
            f"| {r['name']} | {r['technique']} | {r['accuracy']:.4f} | {fl} | "
            f"{r['flash_bytes']:,} | {r['ram_with_stack_bytes']:,} | "
            f"{r['instructions_per_inference']:,} | {macs} | {r['weight_bytes'] or 0:,} | "
            f"{parity} | {r['seconds']} |")
    lines += ["", "## Deltas against the baseline", "",
              "| row | vs | accuracy (points) | flash | RAM+stack | instructions | MACs | notes |",
              "|---|---|---:|---:|---:|---:|---:|---|"]

    def pct(d: dict, k: str) -> str:
        if k not in d:
            return ""
        return f"{d[k]:+,} ({d[k + '_percent']:+.1f}%)"

    for r in rows:
        if r.get("baseline") is None:
            continue
        d = r["delta"]
        lines.append(f"| {r['name']} | {r['baseline']} | {d['accuracy_points']:+.2f} | "
                     f"{pct(d, 'flash_bytes')} | {pct(d, 'ram_with_stack_bytes')} | "
                     f"{pct(d, 'instructions_per_inference')} | {pct(d, 'macs')} | "
                     f"{step_note(r)} |")
    lines += [
        "",
        "Magnitude pruning zeroes weights but kiloml's int8 kernels are dense: the zeros are "
        "stored and multiplied like any other weight, so flash, RAM and instructions do not "
        "move (only the weight blob compresses better). Structured pruning removes whole "
        "channels: the graph itself is smaller. QAT fine-tunes the float graph with "
        "fake quantization and ends in the same post-training quantizer, so sizes are "
        "unchanged; `auto` runs it only when post-training quantization loses more than 1 "
        "point on the validation groups. A distilled student has the student's sizes; the "
        "teacher exists only at training time.",
        "",
    ]
    path.write_text("\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="row names to run (default: all); the "
                        "other rows are kept from the existing optimize.json")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    command = "python bench/optimize.py"
    plan = [r for r in ROWS if not args.only or r[0] in args.only]
    started = time.perf_counter()
    rows: list[dict] = []
    by_name: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="kiloml-bench-optimize-") as tmp:
        work = Path(tmp)
        for name, technique, base, filters, optimize in plan:
            print(f"== {name}", flush=True)
            slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
            text = project_text(filters, optimize, work / slug, "bench-" + slug)
            row = run_one(name, text, work)
            row.update(technique=technique, baseline=base, optimize=optimize)
            if base is not None and base in by_name:
                row["delta"] = delta(row, by_name[base])
            by_name[name] = row
            rows.append(row)
        forest_rows = ("random forest (watch)", "forest int16 thresholds, uint8 leaves")
        if compaction_available() and (not args.only or set(args.only) & set(forest_rows)):
            forest = (ROOT / "examples" / "watch" / "kiloml.toml").read_text()
            for name, extra, base in (("random forest (watch)", "", None),
                                      ("forest int16 thresholds, uint8 leaves",
                                       'thresholds = "int16"\nleaves = "uint8"\n',
                                       "random forest (watch)")):
                print(f"== {name}", flush=True)
                slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
                text = forest.replace('kind = "random_forest"\n',
                                      'kind = "random_forest"\n' + extra, 1)
                text += f'\n[output]\ndir = "{work / slug}"\n'
                row = run_one(name, text, work)
                row.update(technique="tree compaction" if base else "baseline", baseline=base,
                           optimize=extra)
                if base is not None:
                    row["delta"] = delta(row, by_name[base])
                by_name[name] = row
                rows.append(row)
    total = time.perf_counter() - started
    if args.only and (RESULTS / "optimize.json").exists():  # merge into the earlier rows
        new = {r["name"]: r for r in rows}
        old = json.loads((RESULTS / "optimize.json").read_text())
        rows = [new.pop(r["name"], r) for r in old] + list(new.values())
        total += sum(r["seconds"] for r in rows if r["name"] not in args.only)
    (RESULTS / "optimize.json").write_text(json.dumps(rows, indent=1) + "\n")
    write_markdown(rows, RESULTS / "optimize.md", command, total)
    print((RESULTS / "optimize.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
