"""The generated C under AddressSanitizer and UndefinedBehaviorSanitizer with 100,000
random and extreme inputs per entry point and model family (`make fuzz`).

Every family of kiloml/verify/sanitize_families.py (forests in both C styles and every
compaction, every DSP stage, int8 networks standalone and in projects, every operator's
conformance cases, the decision layer) is built once with gcc -fsanitize=address,
undefined,float-cast-overflow -fno-sanitize-recover=all -O1 and the product's strict
flags, and run once: per pipeline family N windows through kml_compute_features /
kml_classify / kml_decide, N windows streamed through kml_push_sample /
kml_decide_latest / kml_classify_latest (kml_reset before each stream) and N kml_decide
calls on random results; per network N invokes. Inputs come from the seed in the
driver (NaN, +-inf, denormals, +-FLT_MAX, +-FLT_MIN, +-0, constant windows,
alternating extremes, max-amplitude int8 ...). Findings are sanitizer reports and
broken API checks; parity is the first 400 windows, 40 streams and 40 kml_decide blocks
(or 400 invokes) against the Python reference, bit for bit.

Writes bench/results/sanitizers.json and bench/results/sanitizers.md.
Usage: python bench/sanitize.py [--inputs N] [--jobs J] [--seed S]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = Path(os.environ.get("KILOML_BENCH_RESULTS", ROOT / "bench" / "results"))

from kiloml.verify.sanitize import (  # noqa: E402
    SANITIZER_FLAGS,
    SanitizerRun,
    print_run,
    run_all,
)
from kiloml.verify.sanitize_families import families  # noqa: E402

# What the first runs of this harness found (fixed in 8d31c11, each with its test).
FIXED = [
    "- UBSan float-cast-overflow, `kiloml_model.c` (networks in projects): a NaN feature "
    "reached `(int32_t)roundf(q)` when the float features are quantized into the "
    "network's int8 input (the +-1000 clamp let NaN through). Now NaN takes -1000, so "
    "-128, in the C (kiloml/models/neural.py emit) and in its twin `quantize_input` "
    "(which gave 0 by accident of numpy's invalid cast), as `kml_quantize_f32_s8`.",
    "- Parity, reference QUANTIZE (float -> int8): the interpreter cast `round(x / s)` to "
    "int64 before clamping, so +inf and |x / s| >= 2^63 became INT64_MIN (-128) where "
    "`kml_quantize_f32_s8` saturates (127): 138 of 400 dumped float_io inputs differed. "
    "Now limited to +-256 first, NaN to -256, as the C.",
    "- Parity, decision layer: with a NaN score the twin's `np.argmax` / `max` picked the "
    "NaN where the C loops pass over it (2 of 412 non-finite kml_decide calls). The twin "
    "now runs the C's loops.",
]


def gcc_version() -> str:
    out = subprocess.run(["gcc", "--version"], capture_output=True, text=True).stdout
    return out.splitlines()[0] if out else "gcc (unknown)"


def entry_points(summary: dict) -> str:
    if "invokes" in summary:
        return f"{summary['invokes']:,} kml_nn_invoke"
    return (f"{summary['windows']:,} kml_classify, {summary['streamed_windows']:,} streamed "
            f"({summary['pushed_samples']:,} kml_push_sample), {summary['decide_calls']:,} "
            f"kml_decide")


def parity_cell(run) -> str:
    p = run.parity
    if not p:
        return "not run"
    if "all_equal" in p:
        return f"{p['outputs_equal']}/{p['n']} invokes"
    w, s, d = p["windows"], p["streams"], p["decide"]
    n_w = w["finite"]["n"] + w["non_finite"]["n"]
    eq_w = sum(min(w[k]["features_equal"], w[k]["labels_equal"], w[k]["scores_equal"])
               for k in ("finite", "non_finite"))
    n_s = s["finite"]["n_windows"] + s["non_finite"]["n_windows"]
    n_d = d["finite"]["calls"] + d["non_finite"]["calls"]
    eq_d = d["finite"]["calls_equal"] + d["non_finite"]["calls_equal"]
    streams = "equal" if s["finite"]["all_equal"] and s["non_finite"]["all_equal"] else "DIFFER"
    return f"{eq_w}/{n_w} windows, {n_s} streamed windows {streams}, {eq_d}/{n_d} decide"


def write_markdown(runs: list, args, wall_s: float) -> str:
    total = sum(r.inputs for r in runs)
    findings = sum(len(r.findings) for r in runs)
    lines = [
        "# Generated C under AddressSanitizer + UndefinedBehaviorSanitizer",
        "",
        f"`python bench/sanitize.py --inputs {args.inputs} --jobs {args.jobs} --seed "
        f"{args.seed}` (`make fuzz`), {gcc_version()}, {platform.machine()}, flags "
        f"`{' '.join(SANITIZER_FLAGS)}` plus the product's strict flags "
        f"(`-std=c99 -Wall -Wextra -Werror -pedantic -ffp-contract=off`).",
        "",
        f"{len(runs)} families, {findings} findings, wall time {wall_s:.0f} s "
        f"({args.jobs} parallel jobs). `inputs` is the fewest any entry point of the "
        f"family got; a pipeline family gets that many windows, streamed windows and "
        f"kml_decide calls each. Parity: the dumped inputs (finite and not) against the "
        f"Python reference, bit for bit.",
        "",
        "| group | family | inputs | calls | findings | parity | wall s |",
        "|---|---|---:|---|---:|---|---:|",
    ]
    for r in runs:
        calls = entry_points(r.summary) if r.summary else "-"
        lines.append(f"| {r.group} | {r.family} | {r.inputs:,} | {calls} | "
                     f"{len(r.findings)} | {parity_cell(r)} | {r.build_s + r.run_s:.1f} |")
    lines += ["", f"Inputs over all families: {total:,} (fewest-entry-point counts).", ""]
    if findings:
        lines += ["## Findings", ""]
        for r in runs:
            lines += [f"- {r.family}: {f}" for f in r.findings]
        lines.append("")
    lines += ["## Fixed", "", *FIXED, ""]
    lines += [
        "## Value classes",
        "",
        "Float inputs (per window, stream segment or kml_decide block): realistic "
        "uniform values, constant windows, NaN, +inf, -inf, denormals, +-FLT_MAX, "
        "+-FLT_MIN, +-0, alternating +-FLT_MAX or +-inf, realistic with 1 in 16 samples "
        "special, one class per channel, random bit patterns, huge magnitudes, lone "
        "spikes. int8 network inputs: uniform, all -128, all 127, alternating -128/127, "
        "random extremes, constants, zeros, spikes, small values. Counts per class are "
        "in sanitizers.json (`summary.kinds`).",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=100_000)
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--markdown-only", action="store_true",
                        help="rewrite sanitizers.md from sanitizers.json without running")
    args = parser.parse_args()
    if args.markdown_only:
        saved = json.loads((RESULTS / "sanitizers.json").read_text())
        runs = [SanitizerRun(**r) for r in saved["families"]]
        for key in ("inputs", "jobs", "seed"):
            setattr(args, key, saved["inputs_per_entry_point" if key == "inputs" else key])
        (RESULTS / "sanitizers.md").write_text(write_markdown(runs, args, saved["wall_s"]))
        return 0
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="kiloml-sanitize-") as tmp:
        runs = run_all(families(), Path(tmp), args.inputs, args.seed, args.jobs, print_run)
    wall = time.perf_counter() - started
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "sanitizers.json").write_text(json.dumps(
        {"inputs_per_entry_point": args.inputs, "seed": args.seed, "jobs": args.jobs,
         "wall_s": round(wall, 1), "compiler": gcc_version(), "flags": SANITIZER_FLAGS,
         "families": [r.as_dict() for r in runs]}, indent=1) + "\n")
    (RESULTS / "sanitizers.md").write_text(write_markdown(runs, args, wall))
    bad = [r.family for r in runs if r.findings or not r.parity_ok]
    print(f"{len(runs)} families, {sum(len(r.findings) for r in runs)} findings, "
          f"{len(bad)} failing{': ' + ', '.join(bad) if bad else ''}; {wall:.0f} s")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
