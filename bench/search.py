"""`kiloml search` on the watch example under cortex-m4f's 64 KB / 256 KB / 10 ms budget:
the Pareto front, the pick, and the pick measured on QEMU against its estimate.

Writes bench/results/search.md and search.json (KILOML_BENCH_RESULTS overrides the folder).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kiloml.search.run import search_project  # noqa: E402

PROJECT = ROOT / "examples" / "watch" / "search.toml"
RESULTS = Path(os.environ.get("KILOML_BENCH_RESULTS", ROOT / "bench" / "results"))


def main() -> None:
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="kiloml-bench-search-") as tmp:
        result = search_project(PROJECT, out=Path(tmp) / "search", fresh=True)
        summary = result.summary
    minutes = (time.time() - started) / 60
    rows = {r["key"]: r for r in summary["rows"]}
    chosen = rows[summary["chosen"]]
    measured = summary["chosen_run"]["measured"]
    est = chosen["estimate"]
    lines = [
        "# kiloml search on the watch example",
        "",
        f"`python bench/search.py`: `kiloml search {PROJECT.relative_to(ROOT)}` (budget on "
        f"{summary['target']}: flash {summary['budget']['flash_bytes']:,} B, RAM "
        f"{summary['budget']['ram_bytes']:,} B, latency "
        f"{summary['budget']['latency_us'] / 1000:g} ms, {summary['budget']['margin']:.0%} "
        f"margin), {summary['folds']}-fold grouped cross-validation on subjects 1-8, "
        f"{summary['executor']}; {minutes:.1f} min in all on {os.cpu_count()} cores "
        f"({platform.machine()}, Python {platform.python_version()}).",
        "",
        f"Candidates: {summary['n_candidates']} "
        f"({', '.join(f'{n} {s}' for s, n in summary['status_counts'].items())}); "
        f"Pareto front: {len(summary['front'])}; pick ({summary['policy']['pick']}, "
        f"{summary['policy']['cost']}, {summary['policy']['accuracy_tolerance_points']:g} "
        f"points): **{summary['chosen_label']}**.",
        "",
        "| the pick | flash B | static RAM B | stack B | instructions |",
        "|---|---:|---:|---:|---:|",
        f"| estimated | {est['flash_bytes']:,} | {est['ram_bytes']:,} | {est['stack_bytes']:,} | "
        f"{est['instructions_per_inference']:,} |",
        f"| measured ({measured['measured_on']}) | {measured['flash_bytes']:,} | "
        f"{measured['ram_bytes']:,} | {measured['stack_bytes']:,} | "
        f"{measured['instructions_per_inference']:,} |",
        "",
        f"Held-out accuracy of the pick (subjects 9 and 10): "
        f"{summary['chosen_run']['test_accuracy']:.4f}.",
        "",
        "## Rejected before training",
        "",
    ]
    for r in summary["rows"]:
        if r["status"] == "rejected before training":
            lines.append(f"- {r['label']}: {'; '.join(r['over_budget'])}")
    lines += ["", "## The Pareto front (estimates)", "",
              f"| | candidate | CV {summary['score'].replace('_', ' ')} | flash B | RAM+stack B "
              f"| instructions | latency ms | uJ / inference |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]
    for key in summary["front"]:
        r = rows[key]
        e = r["estimate"]
        lines.append(f"| {'*' if key == summary['chosen'] else ''} | {r['label']} | "
                     f"{r['score']:.4f} | {e['flash_bytes']:,} | "
                     f"{e['ram_bytes'] + e['stack_bytes']:,} | "
                     f"{e['instructions_per_inference']:,} | {e['latency_us'] / 1000:.3f} | "
                     f"{e['energy_uj']:.2f} |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "search.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "search.json").write_text(json.dumps(
        {k: v for k, v in summary.items() if k != "rows"} |
        {"front_rows": [rows[k] for k in summary["front"]], "minutes": round(minutes, 2)},
        indent=1, default=str))
    print(f"wrote {RESULTS / 'search.md'}")


if __name__ == "__main__":
    main()
