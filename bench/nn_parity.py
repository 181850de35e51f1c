"""Parity of kiloml's generated C on every conformance case and converter fixture.

Every operator x 40 generated cases (kiloml.nn.conformance, the same cases the reference
interpreter is checked against TFLM with), 40 random conv/depthwise/pool chains (where
the planner writes outputs over dying inputs) and every int8 fixture in
tests/nn/fixtures (100 random inputs each), compiled by kiloml's C generator and run:
  - on the host (gcc -O2; the portable kernels),
  - on the emulated Cortex-M4F (QEMU mps2-an386) with the DSP fast paths,
  - on the emulated Cortex-M4F with the portable kernels (-DKML_NN_DSP=0),
each output compared bit for bit with the reference interpreter.

Writes bench/results/nn_parity.json and nn_parity.md. `--cases N` takes fewer cases.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.progress import Progress

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kiloml.nn.c_parity import ParityRunner  # noqa: E402
from kiloml.nn.conformance import GENERATORS, random_case, random_chain  # noqa: E402
from kiloml.nn.load import load_model  # noqa: E402
from kiloml.nn.reference import Interpreter  # noqa: E402

FIXTURES = ROOT / "tests" / "nn" / "fixtures"
RESULTS = Path(os.environ.get("KILOML_BENCH_RESULTS", ROOT / "bench" / "results"))
PLATFORMS = [("host", False, "host, portable"), ("cortex-m4f", False, "M4, DSP"),
             ("cortex-m4f", True, "M4, portable")]


def _equal(got: list[np.ndarray], want: list[np.ndarray]) -> bool:
    return len(got) == len(want) and all(
        np.array_equal(g.reshape(-1), w.reshape(-1)) for g, w in zip(got, want, strict=True))


def _sweep(runner: ParityRunner, cases: int, label: str, name: str, mismatches: list[str],
           advance, make) -> list[int]:
    """[bit-exact, total] over ``cases`` generated graphs (make(seed) -> graph, inputs)."""
    ok = 0
    for seed in range(cases):
        graph, inputs = make(seed)
        if _equal(runner.run(graph, [x[None] for x in inputs]), Interpreter(graph).run(inputs)):
            ok += 1
        else:
            mismatches.append(f"{label}: {name} case {seed}")
        advance()
    return [ok, cases]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=40, help="cases per operator")
    parser.add_argument("--inputs", type=int, default=100, help="random inputs per fixture")
    args = parser.parse_args(argv)
    kinds = sorted(GENERATORS)
    fixtures = sorted(FIXTURES.glob("*_int8.tflite"))
    counts: dict[str, dict[str, list[int]]] = {label: {} for *_, label in PLATFORMS}
    mismatches: list[str] = []
    start = time.time()
    with tempfile.TemporaryDirectory(prefix="kiloml-parity-") as tmp, Progress() as progress:
        for target, portable, label in PLATFORMS:
            runner = ParityRunner(Path(tmp) / label.replace(", ", "_"), target,
                                  portable=portable)
            task = progress.add_task(label, total=(len(kinds) + 1) * args.cases + len(fixtures))
            def advance() -> None:
                progress.advance(task)  # noqa: B023 (called before the loop moves on)

            for kind in kinds:
                counts[label][kind] = _sweep(runner, args.cases, label, kind, mismatches,
                                             advance, lambda seed, k=kind: random_case(k, seed))
            counts[label]["chains (outputs over inputs)"] = _sweep(
                runner, args.cases, label, "chain", mismatches, advance, random_chain)
            for path in fixtures:
                graph = load_model(path)
                shape = graph.input_tensors[0].shape
                rng = np.random.default_rng(5)
                n = args.inputs if shape[0] == 1 else 1
                x = rng.integers(-128, 128, size=(n, *shape[1:]) if shape[0] == 1
                                 else (1, *shape)).astype(np.int8)
                got = runner.run(graph, [x])[0]
                ref = Interpreter(graph)
                ok = sum(np.array_equal(got[i].reshape(-1), ref.run(
                    [x[i:i + 1] if shape[0] == 1 else x[i]])[0].reshape(-1)) for i in range(n))
                if ok != n:
                    mismatches.append(f"{label}: {path.name} {n - ok} of {n} inputs")
                counts[label][path.stem] = [int(ok), n]
                progress.advance(task)
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = {"cases_per_operator": args.cases, "inputs_per_fixture": args.inputs,
              "counts": counts, "mismatches": mismatches,
              "seconds": round(time.time() - start, 1)}
    (RESULTS / "nn_parity.json").write_text(json.dumps(result, indent=1) + "\n")
    labels = [label for *_, label in PLATFORMS]
    lines = ["# Generated C against the reference interpreter: bit-exact counts", "",
             f"Every operator x {args.cases} conformance cases and every converter-made int8 "
             f"fixture x {args.inputs} random inputs; host gcc -O2; Cortex-M4F on QEMU "
             f"mps2-an386 (arm-none-eabi-gcc -O2). Regenerate: `python bench/nn_parity.py`.",
             "", "| model | " + " | ".join(labels) + " |",
             "|---|" + "---:|" * len(labels)]
    for name in counts[labels[0]]:
        lines.append(f"| {name} | " + " | ".join(
            f"{counts[lb][name][0]}/{counts[lb][name][1]}" for lb in labels) + " |")
    totals = {lb: [sum(v[0] for k, v in counts[lb].items() if k in GENERATORS),
                   sum(v[1] for k, v in counts[lb].items() if k in GENERATORS)]
              for lb in labels}
    lines.append("| **all operators** | " + " | ".join(
        f"**{totals[lb][0]}/{totals[lb][1]}**" for lb in labels) + " |")
    lines += ["", f"Mismatches: {len(mismatches)}" + (": " + "; ".join(mismatches[:20])
                                                       if mismatches else ""), ""]
    (RESULTS / "nn_parity.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
