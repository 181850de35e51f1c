"""The resource estimator against measurement: every example and conformance model on the
emulated targets.

For each example (examples/watch/kiloml.toml, cnn1d.toml, spectral.toml,
examples/spoken-digits/kiloml.toml, and watch-compact: a copy of the watch project with
thresholds = "int16", leaves = "uint8") the `kiloml run --no-emulator` output is cached
(KILOML_BENCH_CACHE, default ~/.cache/kiloml/bench-estimator; re-run when the toml
changes); its library is then built for each target, linked in the budget probe and run on
every held-out window in QEMU (kiloml/targets/measure.py, the same build, probe and QEMU
code as `kiloml verify`). For each int8 fixture bench/nn.py uses (tests/nn/fixtures/
*_int8.tflite, and the watch 1-D CNN's model.tflite) the standalone network library is
measured as `kiloml model compile` does. The estimates come from
kiloml.targets.estimate (no compiler involved), whose coefficients were fitted on a
synthetic sweep that contains none of these (python -m kiloml.targets.calibrate).

Writes bench/results/estimator.json (rows: name, target, quantity, estimate, measured,
error_fraction) and estimator.md. `--targets` and `--only` narrow the run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(os.environ.get("KILOML_BENCH_RESULTS", ROOT / "bench" / "results"))
CACHE = Path(os.environ.get("KILOML_BENCH_CACHE",
                            Path.home() / ".cache" / "kiloml" / "bench-estimator"))
FIXTURES = ROOT / "tests" / "nn" / "fixtures"
EXAMPLES = {"watch": ROOT / "examples" / "watch" / "kiloml.toml",
            "watch-cnn1d": ROOT / "examples" / "watch" / "cnn1d.toml",
            "watch-spectral": ROOT / "examples" / "watch" / "spectral.toml",
            "spoken-digits": ROOT / "examples" / "spoken-digits" / "kiloml.toml"}
# The watch forest compacted (int16 thresholds, uint8 leaves): a temporary copy of its
# project with those two [model] options and its own name.
COMPACTED = {"watch-compact": (EXAMPLES["watch"], {"thresholds": "int16", "leaves": "uint8"})}
TARGETS = ("cortex-m4f", "cortex-m0plus", "cortex-m3", "cortex-m7")
QUANTITIES = ("flash_bytes", "ram_bytes", "stack_bytes", "instructions_per_inference")
GOALS = {"flash_bytes": 0.10, "ram_bytes": 0.10, "instructions_per_inference": 0.20}
N_INPUTS = 8  # random inputs per network (compile_model's count)


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return h.hexdigest()[:16]


def example_run(name: str, toml: Path) -> Path:
    """The cached `kiloml run --no-emulator` output folder of an example."""
    out = CACHE / "build" / name
    stamp = CACHE / f"{name}.stamp"
    key = _digest(toml.read_bytes())
    if (out / "pipeline.json").exists() and stamp.exists() and stamp.read_text() == key:
        return out
    from kiloml.progress import console

    shown = toml.relative_to(ROOT) if toml.is_relative_to(ROOT) else toml
    console.print(f"{name}: kiloml run {shown} --no-emulator (cached in {CACHE})")
    CACHE.mkdir(parents=True, exist_ok=True)
    kiloml = Path(sys.executable).parent / "kiloml"
    result = subprocess.run([str(kiloml), "run", str(toml), "--no-emulator"], cwd=CACHE,
                            capture_output=True, text=True, timeout=3600)
    if result.returncode != 0 or not (out / "pipeline.json").exists():
        tail = [ln for ln in result.stderr.strip().splitlines() if ln.strip()][-1:]
        raise RuntimeError(f"kiloml run {toml.name} failed ({result.returncode}): "
                           f"{' '.join(tail)[:300]}")
    stamp.write_text(key)
    return out


def compacted_project(name: str, source: Path, options: dict[str, str]) -> Path:
    """A copy of the project ``source`` named ``name`` with ``options`` set in its
    [model] table, written under the cache (its content keys the cached run)."""
    import re

    text = source.read_text()
    text = re.sub(r'^name\s*=\s*"[^"]*"', f'name = "{name}"', text, count=1, flags=re.M)
    lines = "".join(f'{k} = "{v}"\n' for k, v in options.items())
    text = re.sub(r"^\[model\]\n", lambda m: m.group(0) + lines, text, count=1, flags=re.M)
    path = CACHE / "projects" / f"{name}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def cached(key: str, func) -> dict:
    path = CACHE / "measured" / f"{key}.json"
    if path.exists():
        return json.loads(path.read_text())
    value = func()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))
    return value


def example_rows(name: str, toml: Path, targets: list[str], work: Path) -> tuple[list, list]:
    from kiloml.persist.pipeline_state import load_pipeline
    from kiloml.targets.estimate import estimate_resources
    from kiloml.targets.measure import measure_pipeline
    from kiloml.targets.profiles import load_profile
    from kiloml.verify.reference import REFERENCE_FILE, Reference

    out = example_run(name, toml)
    pipeline = load_pipeline(out / "pipeline.json")
    reference = Reference.load(out / "verify" / REFERENCE_FILE, pipeline)
    n_features = len(pipeline.feature_names())
    key = _digest((out / "firmware" / "kiloml_model.c").read_bytes())
    rows, notes = [], []
    for target in targets:
        profile = load_profile(target)
        try:
            measured = cached(f"{name}-{target}-{key}", lambda p=profile: {
                k: v for k, v in measure_pipeline(pipeline, p, reference.windows,
                                                  work / name / p.name, stages=False).items()
                if k in QUANTITIES or k == "instructions_mean"})
        except Exception as exc:
            notes.append(f"{name} on {target}: not measured: "
                         f"{''.join(traceback.format_exception_only(exc)).strip()[:300]}")
            continue
        estimate = estimate_resources(pipeline, profile, n_features)
        if "no coefficients for" in estimate["note"]:
            notes.append(f"{name} on {target}: no calibrated coefficients for "
                         + estimate["note"].split("no coefficients for: ", 1)[-1])
        rows += [_row(name, target, q, estimate[q], measured[q]) for q in QUANTITIES]
    return rows, notes


def network_models() -> dict[str, Path]:
    models = {p.name.removesuffix(".tflite"): p for p in sorted(FIXTURES.glob("*_int8.tflite"))}
    cnn = CACHE / "build" / "watch-cnn1d" / "model.tflite"
    if cnn.exists():
        models["watch_cnn1d"] = cnn
    return models


def network_rows(name: str, path: Path, targets: list[str], work: Path) -> tuple[list, list]:
    from kiloml.nn.load import load_model
    from kiloml.targets.estimate import estimate_graph
    from kiloml.targets.measure import measure_graph
    from kiloml.targets.profiles import load_profile

    graph = load_model(path)
    key = _digest(path.read_bytes())
    rows, notes = [], []
    for target in targets:
        profile = load_profile(target)
        try:
            measured = cached(f"nn-{name}-{target}-{key}", lambda p=profile: {
                k: v for k, v in measure_graph(graph, p, work / name / p.name,
                                               n_inputs=N_INPUTS).items()
                if k in QUANTITIES or k == "instructions_mean"})
        except Exception as exc:
            notes.append(f"{name} on {target}: not measured: "
                         f"{''.join(traceback.format_exception_only(exc)).strip()[:300]}")
            continue
        estimate = estimate_graph(graph, profile)
        if "no coefficients for" in estimate["note"]:
            notes.append(f"{name} on {target}: no calibrated coefficients for "
                         + estimate["note"].split("no coefficients for: ", 1)[-1])
        rows += [_row(name, target, q, estimate[q], measured[q]) for q in QUANTITIES]
    return rows, notes


def _row(name: str, target: str, quantity: str, estimate: float, measured: float) -> dict:
    error = None if not measured else round((estimate - measured) / measured, 4)
    return {"name": name, "target": target, "quantity": quantity, "estimate": int(estimate),
            "measured": int(measured), "error_fraction": error}


def summary(rows: list[dict]) -> list[dict]:
    out = []
    for q in QUANTITIES:
        qs = [r for r in rows if r["quantity"] == q and r["error_fraction"] is not None]
        if not qs:
            continue
        goal = GOALS.get(q)
        worst = max(qs, key=lambda r: abs(r["error_fraction"]))
        errors = sorted(abs(r["error_fraction"]) for r in qs)
        out.append({"quantity": q, "rows": len(qs), "goal": goal,
                    "within_goal": None if goal is None else
                    sum(abs(r["error_fraction"]) <= goal for r in qs),
                    "median_abs_error": errors[len(errors) // 2],
                    "worst_abs_error": abs(worst["error_fraction"]),
                    "worst": f"{worst['name']} on {worst['target']}"})
    return out


def markdown(rows: list[dict], notes: list[str], calibration: dict) -> str:
    lines = ["# The resource estimator against measurement", "",
             "Estimates from `kiloml.targets.estimate` (nothing compiled) against the "
             "emulated targets' measurements. Goals (issue 8): flash and RAM within +-10%, "
             "instructions per inference within +-20%; the stack has no goal.", "",
             "| quantity | rows | within goal | median abs error | worst abs error | worst row |",
             "|---|---:|---:|---:|---:|---|"]
    for s in summary(rows):
        within = "n/a (no goal)" if s["goal"] is None else \
            f"{s['within_goal']}/{s['rows']} (+-{s['goal']:.0%})"
        lines.append(f"| {s['quantity']} | {s['rows']} | {within} | "
                     f"{s['median_abs_error']:.1%} | {s['worst_abs_error']:.1%} | "
                     f"{s['worst']} |")
    lines += ["", "## Every row", "",
              "| name | target | quantity | estimate | measured | error | goal |",
              "|---|---|---|---:|---:|---:|---|"]
    for r in rows:
        goal = GOALS.get(r["quantity"])
        e = r["error_fraction"]
        verdict = "-" if goal is None or e is None else ("met" if abs(e) <= goal
                                                         else "**missed**")
        lines.append(f"| {r['name']} | {r['target']} | {r['quantity']} | {r['estimate']:,} | "
                     f"{r['measured']:,} | {'n/a' if e is None else f'{e:+.1%}'} | "
                     f"{verdict} |")
    if notes:
        lines += ["", "## Not measured, and kernels the sweep did not calibrate", "",
                  *[f"- {n}" for n in notes]]
    lines += ["", "## How", "",
              "- measured: flash and static RAM = what the library adds to a minimal firmware "
              "linked with --gc-sections at the target's memory sizes (the budget probe); "
              "instructions = the QEMU TCG plugin's count around one inference, the maximum "
              "over every held-out window (examples) or over "
              f"{N_INPUTS} random int8 inputs (networks); stack = painting, deepest. "
              "arm-none-eabi-gcc -O2 with each profile's cflags; networks use the DSP "
              "kernels where the core has them.",
              "- estimated: `estimate_resources(pipeline, profile, n_features)` for the "
              "examples, `estimate_graph(graph, profile)` for the networks. Forest "
              "instructions are the worst case (every tree's deepest path), so they bound "
              "the held-out maximum from above.",
              "- calibration (fitted on a synthetic sweep, none of the rows above):"]
    for cls, info in calibration.items():
        lines.append(f"  - {cls}: {info.get('cases')} cases on {info.get('machine')}, "
                     f"{info.get('compiler')}, fitted {info.get('date')}")
    lines += ["", "Reproduce: `python -m kiloml.targets.calibrate` (about 15 min, cached), "
              "then `python bench/estimator.py`."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    import tempfile

    from kiloml.progress import console, track
    from kiloml.targets.estimate import CALIBRATION_DIR

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--only", help="comma-separated example or network names")
    args = parser.parse_args(argv)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    only = set(args.only.split(",")) if args.only else None
    rows: list[dict] = []
    notes: list[str] = []
    work = Path(tempfile.mkdtemp(prefix="kiloml-bench-estimator-"))
    try:
        jobs: list[tuple[str, object]] = []
        examples = dict(EXAMPLES)
        for name, (source, options) in COMPACTED.items():
            if only is None or name in only:
                examples[name] = compacted_project(name, source, options)
        for name, toml in examples.items():
            if only is None or name in only:
                jobs.append((name, lambda n=name, t=toml: example_rows(n, t, targets, work)))
        # the watch CNN's model.tflite comes from its example run
        if only is None or "watch_cnn1d" in only:
            try:
                example_run("watch-cnn1d", EXAMPLES["watch-cnn1d"])
            except Exception as exc:
                notes.append(f"watch_cnn1d: {exc}")
        for name, path in network_models().items():
            if only is None or name in only:
                jobs.append((name, lambda n=name, p=path: network_rows(n, p, targets, work)))
        for name, job in track(jobs, "estimator bench", total=len(jobs)):
            console.print(f"{name}: estimate and measure on {', '.join(targets)}")
            try:
                r, n = job()  # type: ignore[operator]
            except Exception as exc:
                r, n = [], [f"{name}: {''.join(traceback.format_exception_only(exc)).strip()}"]
            rows += r
            notes += n
    finally:
        shutil.rmtree(work, ignore_errors=True)
    calibration = {p.stem: json.loads(p.read_text()).get("fitted", {})
                   for p in sorted(CALIBRATION_DIR.glob("*.json"))}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "estimator.json").write_text(json.dumps(rows, indent=1) + "\n")
    text = markdown(rows, notes, calibration)
    (RESULTS / "estimator.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
