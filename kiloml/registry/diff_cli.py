"""`kiloml diff REG A B [--recordings DIR] --out DIR`: what changes on the devices when
version B replaces version A (kiloml.registry.diff). The command imports the engine when
it runs, so `kiloml` itself starts without it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["diff_command"]


def diff_command(
    registry: Annotated[Path, typer.Argument(help="The registry folder")],
    a: Annotated[str, typer.Argument(help="Version or alias (production, canary, previous) "
                                     "of the baseline")],
    b: Annotated[str, typer.Argument(help="Version or alias of the one compared with it")],
    out: Annotated[Path, typer.Option("--out", help="Folder to write diff.json and diff.html "
                                      "into (made by kiloml, or new)")],
    recordings: Annotated[Path | None, typer.Option(
        "--recordings", help="A folder of recordings, read as A's project reads its data "
        "(default: A's held-out streams)")] = None,
) -> None:
    """Stream the same recordings through both versions' C libraries (compiled on the host)
    and compare their decisions: transitions, changed segments, events gained and lost."""
    from kiloml.display import shown_path
    from kiloml.registry.diff_output import diff_versions

    diff = diff_versions(registry, a, b, recordings, out)
    s = diff.summary
    r = s["recordings"]
    print(f"diff           {s['a']['label']} -> {s['b']['label']} on {r['n']} recordings "
          f"({r['seconds'] / 60:.1f} min): {s['changed_windows']:,} of {s['n_windows']:,} "
          f"decisions changed ({100 * s['changed_fraction']:.1f}%) in "
          f"{len(s['segments']):,} segments")
    t = s["transitions"]
    moves = sorted(((n, t["a"][i], t["b"][j]) for i, row in enumerate(t["counts"])
                    for j, n in enumerate(row) if n and t["a"][i] != t["b"][j]), reverse=True)
    if moves:
        print("transitions    " + ", ".join(f"{x} -> {y} {n:,}" for n, x, y in moves[:6])
              + (f" (+{len(moves) - 6} more)" if len(moves) > 6 else ""))
    ev, conf = s["events"], s["confidence"]
    print(f"events         {ev['a']:,} -> {ev['b']:,}: {ev['n_lost']:,} lost, "
          f"{ev['n_gained']:,} gained")
    if conf["a"] is not None and conf["b"] is not None:
        print(f"confidence     {conf['a']:.3f} -> {conf['b']:.3f} (mean top smoothed score)")
    print(f"wrote          {shown_path(out / 'diff.json')}, {shown_path(out / 'diff.html')}")
