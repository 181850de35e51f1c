"""A fuzz campaign: N mutants per format through the worker pool; the summary table.

``python tests/fuzz/campaign.py`` (what `make fuzz` runs) writes the table to
bench/results/fuzz.md and fuzz.json; the test suite runs a smaller campaign
(tests/fuzz/test_fuzz.py). Every mutant that ends in something other than a
clean load or a KilomlError is kept under build/fuzz-reproducers/<format>/.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(HERE), str(REPO / "tests")]

from formats import FORMATS  # noqa: E402
from pool import Job, Result, WorkerPool, keep_reproducer  # noqa: E402
from source import MutantSource  # noqa: E402

REPRODUCERS = REPO / "build" / "fuzz-reproducers"
MODEL_FORMATS = ("tflite", "onnx")


def jobs(source: MutantSource, count: int, campaign: str) -> Iterator[Job]:
    """``count`` mutants of the format's seeds, round robin, keyed for reproduction (the
    workers generate the bytes from the key)."""
    for i in range(count):
        k, key = source.key(campaign, i)
        yield Job(source.format, key, k, source.seeds[k].name)


@dataclass
class FormatSummary:
    format: str
    mutants: int = 0
    outcomes: Counter = field(default_factory=Counter)
    sites: Counter = field(default_factory=Counter)
    reproducers: dict[str, str] = field(default_factory=dict)  # site -> first reproducer
    seconds: float = 0.0
    slowest_s: float = 0.0

    def row(self) -> dict:
        return {"format": self.format, "mutants": self.mutants,
                "loaded": self.outcomes["loaded"], "clean_error": self.outcomes["error"],
                "other": self.outcomes["other"], "distinct_sites": len(self.sites),
                "wall_s": round(self.seconds, 1), "slowest_mutant_s": round(self.slowest_s, 2),
                "sites": dict(self.sites.most_common()), "reproducers": self.reproducers}


def run_format(fmt: str, count: int, *, workers: int, timeout_s: float, campaign: str,
               reproducers: Path = REPRODUCERS, scratch: Path | None = None,
               codegen: bool = False) -> FormatSummary:
    summary = FormatSummary(fmt)
    start = time.monotonic()
    source = MutantSource(fmt)
    with tempfile.TemporaryDirectory(prefix=f"kiloml-fuzz-{fmt}-", dir=scratch) as tmp:
        pool = WorkerPool(workers, timeout_s, Path(tmp), codegen=codegen)
        try:
            for result in pool.run(jobs(source, count, campaign)):
                _record(summary, result, source, reproducers)
        finally:
            pool.close()
    summary.seconds = time.monotonic() - start
    return summary


def _record(summary: FormatSummary, result: Result, source: MutantSource,
            reproducers: Path) -> None:
    summary.mutants += 1
    summary.outcomes[result.outcome] += 1
    summary.slowest_s = max(summary.slowest_s, result.seconds)
    if result.outcome == "other":
        summary.sites[result.site] += 1
        path = keep_reproducer(result, source, reproducers)
        summary.reproducers.setdefault(result.site, str(path.relative_to(REPO))
                                       if path.is_relative_to(REPO) else str(path))


def table(summaries: list[FormatSummary]) -> str:
    lines = ["| format | mutants | loaded | clean error | other | distinct fault sites | "
             "wall time (s) | slowest mutant (s) |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for s in summaries:
        r = s.row()
        lines.append(f"| {s.format} | {r['mutants']:,} | {r['loaded']:,} | {r['clean_error']:,} "
                     f"| {r['other']:,} | {r['distinct_sites']} | {r['wall_s']:.1f} | "
                     f"{r['slowest_mutant_s']:.2f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", type=int, default=10_000, help="mutants per model format")
    parser.add_argument("--recordings", type=int, default=2_000,
                        help="mutants per recording / project format")
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds per mutant")
    parser.add_argument("--campaign", default="make-fuzz")
    parser.add_argument("--codegen", action="store_true",
                        help="also generate the C library of each int8 model that loads")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "fuzz")
    args = parser.parse_args()
    summaries = []
    start = time.monotonic()
    for fmt in args.formats.split(","):
        count = args.models if fmt in MODEL_FORMATS else args.recordings
        s = run_format(fmt, count, workers=args.workers, timeout_s=args.timeout,
                       campaign=args.campaign, codegen=args.codegen)
        summaries.append(s)
        print(f"{fmt}: {s.mutants} mutants, {s.outcomes['loaded']} loaded, "
              f"{s.outcomes['error']} clean errors, {s.outcomes['other']} other "
              f"({len(s.sites)} sites), {s.seconds:.1f} s", flush=True)
        for site, n in s.sites.most_common():
            print(f"    {n:5d}  {site}  e.g. {s.reproducers[site]}", flush=True)
    total = time.monotonic() - start
    codegen_note = (" Int8 models that load also go through the C generator (`model compile` "
                    "up to the C sources)." if args.codegen else "")
    text = (f"# Mutation fuzzing of kiloml's loaders (`make fuzz`)\n\n"
            f"Campaign '{args.campaign}', {args.workers} worker processes, "
            f"{args.timeout:g} s per mutant; total wall time {total:.0f} s.\n"
            "Seeds: tests/nn/fixtures models; small generated CSV/WAV/NPY/NPZ recordings "
            f"and project files (tests/fuzz/formats.py).{codegen_note}"
            "\nOutcomes allowed: the file loads (and, for models, `model info` and one "
            "`model run` input succeed) or a one-line KilomlError. 'other' is anything "
            "else (exception, numpy RuntimeWarning, crash, hang); each is kept under "
            "build/fuzz-reproducers/<format>/.\n\n" + table(summaries) + "\n")
    others = [(s.format, site, n, s.reproducers[site]) for s in summaries
              for site, n in s.sites.most_common()]
    if others:
        text += "\nFault sites:\n\n" + "\n".join(
            f"- {fmt}: {site} ({n}x), e.g. {path}" for fmt, site, n, path in others) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps(
        {"campaign": args.campaign, "workers": args.workers, "timeout_s": args.timeout,
         "total_wall_s": round(total, 1), "formats": [s.row() for s in summaries]},
        indent=2) + "\n")
    print(table(summaries))
    return 1 if others else 0


if __name__ == "__main__":
    sys.exit(main())
