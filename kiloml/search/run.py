"""`kiloml search`: explore the project's ``[search.space]`` under its target's budget.

1. expand the space into candidate projects (checked like project files);
2. estimate each one's flash, RAM, stack and latency before training (the calibrated
   estimator) and reject those over the budget without training them;
3. cross-validate the rest on the training groups (a local pool or Ray), appending
   each result to ``candidates.jsonl`` as it arrives, so a rerun resumes;
4. keep the Pareto front (score against flash, RAM, latency and energy), pick one by
   the project's policy, write it as ``chosen.toml`` and, unless told not to, run it
   (``kiloml run``: C library, parity on the emulated MCU, measured cost), whose
   report then shows the search.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from kiloml.atomic import write_text_atomically
from kiloml.errors import KilomlError
from kiloml.outputs import Protected, check_output_folder, mark, marker_kind, project_inputs
from kiloml.progress import console, quiet, track
from kiloml.project import LoadedProject, find_key_line, load_project
from kiloml.search import evaluate as ev
from kiloml.search.executors import make_executor
from kiloml.search.pareto import OBJECTIVES, pareto_front, pick
from kiloml.search.space import Candidate, SearchSpace, read_raw_project
from kiloml.search.store import RESULTS_FILE, ResultStore
from kiloml.search.toml_out import to_toml

SUMMARY_FILE = "search.json"
CHOSEN_FILE = "chosen.toml"


@dataclass
class SearchResult:
    directory: Path
    summary: dict
    run_ok: bool | None  # the chosen candidate's run (None when not run)


def search_directory(project: LoadedProject) -> Path:
    scfg = project.config.search
    if scfg is not None and scfg.dir:
        return project.resolve(scfg.dir)
    out = project.output_dir
    return out.with_name(f"{out.name}-search")


def search_project(project_path: str | Path, *, executor: str = "local",
                   address: str | None = None, workers: int | None = None,
                   fresh: bool = False, run_chosen: bool = True,
                   emulate: bool = True, out: str | Path | None = None) -> SearchResult:
    base = load_project(project_path)
    scfg = base.config.search
    if scfg is None:
        raise KilomlError("the project has no [search] section; add [search.space] with the "
                          "values to explore (see README, 'Searching')", file=base.path)
    raw_project = read_raw_project(base.path)
    space = SearchSpace(base, raw_project)
    folds = scfg.folds or base.config.evaluation.cv_folds
    if folds < 2:
        raise KilomlError("a search cross-validates: set [search] folds (2 or more) or "
                          "[evaluation] cv_folds", file=base.path,
                          line=find_key_line(space.text, ("search",), "folds"))
    candidates, total = space.candidates(scfg.max_candidates, scfg.seed)
    for c in candidates:
        c.raw.setdefault("evaluation", {})["cv_folds"] = folds
    profile = base.target_profile()
    tcfg = base.config.target
    budget = ev.SearchBudget(
        flash_bytes=tcfg.flash_budget_bytes or profile.flash_bytes,
        ram_bytes=tcfg.ram_budget_bytes or profile.ram_bytes,
        latency_us=None if tcfg.latency_budget_ms is None else tcfg.latency_budget_ms * 1000,
        margin=scfg.margin)
    directory = Path(out).resolve() if out else search_directory(base)
    if out:
        name, line = "--out", None
    elif scfg.dir:
        name, line = "[search] dir", find_key_line(space.text, ("search",), "dir")
    else:
        name, line = "search folder (<output dir>-search)", None
    check_output_folder(directory, "search", [*project_inputs(base), Protected(
        "the project's run output folder", base.output_dir, folder=True)], name=name,
        file=base.path, line=line)
    console.print(f"search: {len(candidates)} candidates"
                  f"{f' (a seeded sample of {total})' if total > len(candidates) else ''}; "
                  f"budget on {profile.name}: {budget.describe()}; {folds}-fold grouped CV")

    pool = make_executor(executor, address, workers)  # fails fast, before anything is written
    existed = directory.exists()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if marker_kind(directory) is None:
            mark(directory, "search")
    except OSError as exc:
        pool.close()
        raise KilomlError(f"the search folder cannot be written: {exc.strerror or exc}",
                          file=directory) from None
    try:
        return _search(base, space, candidates, total, folds, profile, budget, directory,
                       pool, fresh, run_chosen, emulate)
    except KilomlError:
        if not existed and not (directory / RESULTS_FILE).exists():
            # nothing fits before training: leave no folder behind (only a features cache)
            shutil.rmtree(directory, ignore_errors=True)
        raise
    finally:
        pool.close()


def _search(base: LoadedProject, space: SearchSpace, candidates: list[Candidate], total: int,
            folds: int, profile, budget: ev.SearchBudget, directory: Path, pool, fresh: bool,
            run_chosen: bool, emulate: bool) -> SearchResult:
    def job(c: Candidate) -> dict:
        return {"project_path": str(base.path), "raw": c.raw, "key": c.key,
                "budget": budget.__dict__, "cache_dir": str(directory / "cache"),
                "label": c.label, "index": c.index}

    # 1. estimates before training, in this process (no training: seconds in all)
    before: dict[str, dict] = {}
    unbuildable: dict[str, str] = {}  # candidates whose settings cannot be built at all
    for c in track(candidates, "estimating before training"):
        with quiet():
            try:
                before[c.key] = ev.estimate_before(job(c))
            except KilomlError as exc:
                unbuildable[c.key] = str(exc)
    estimated = [c for c in candidates if c.key in before]
    feasible = [c for c in estimated if not before[c.key]["over_budget"]]
    if not estimated:
        first = candidates[0]
        raise KilomlError(f"no candidate can be built; the first, '{first.label}': "
                          f"{unbuildable[first.key]}", file=base.path)
    if not feasible:
        smallest = min(estimated, key=lambda c: _size_rank(
            before[c.key]["estimate_before_training"], budget))
        raise KilomlError(
            f"no candidate fits the budget on {profile.name} ({budget.describe()}); the "
            f"smallest, '{smallest.label}', needs "
            f"{_needs(before[smallest.key]['estimate_before_training'])}",
            file=base.path, line=find_key_line(space.text, ("target",), None))
    console.print(f"  {len(estimated) - len(feasible)} rejected before training (over "
                  f"budget by the estimate), "
                  + (f"{len(unbuildable)} that cannot be built, " if unbuildable else "")
                  + f"{len(feasible)} to train")

    # 2. train and cross-validate the rest, persisting as results arrive
    store = ResultStore(directory, fresh=fresh)
    if store.ignored:
        console.print(f"  {store.ignored} rows of {_rel(store.path)} are not results this "
                      f"kiloml can read; those candidates are evaluated again")
    for c in candidates:
        if c.key in unbuildable:
            store.add({"key": c.key, "index": c.index, "label": c.label, "choices": c.choices,
                       "status": "failed", "error": unbuildable[c.key]})
            continue
        if c in feasible or store.done(c.key):
            continue
        store.add({"key": c.key, "index": c.index, "label": c.label, "choices": c.choices,
                   "status": "rejected before training",
                   "over_budget": before[c.key]["over_budget"], **before[c.key]})
    todo = [c for c in feasible if not store.done(c.key)]
    if len(todo) < len(feasible):
        console.print(f"  resuming: {len(feasible) - len(todo)} already evaluated in "
                      f"{_rel(store.path)}")
    started = time.time()
    where = pool.describe()
    if todo:
        console.print(f"  training on: {where}")
        by_key = {c.key: c for c in todo}
        results = pool.map(ev.evaluate, [job(c) for c in todo])
        for j, row in track(results, "training candidates", total=len(todo)):
            c = by_key[j["key"]]
            row.update(key=c.key, index=c.index, label=c.label, choices=c.choices,
                       **before[c.key])
            store.add(row)
    summary = _summarize(base, candidates, store, budget, profile.name, folds, total)
    summary["executor"] = where if todo else "(all candidates already evaluated)"
    summary["seconds_training"] = round(time.time() - started, 1)
    chosen_path = _write_outputs(base, directory, summary, candidates)
    _print_summary(summary, directory)
    run_ok = None
    if run_chosen:
        from kiloml.run import run_project

        console.print(f"running the chosen candidate: kiloml run {_rel(chosen_path)}")
        result = run_project(chosen_path, emulate=emulate, extra_metrics={"search": summary})
        run_ok = result.ok
        summary["chosen_run"] = {"output_dir": str(result.output_dir), "ok": result.ok,
                                 "measured": result.metrics["resources"].get(profile.name),
                                 "test_accuracy": result.metrics["evaluation"]["accuracy"]}
        _write_json(directory / SUMMARY_FILE, summary)
    return SearchResult(directory, summary, run_ok)


def _size_rank(estimate: dict, budget: ev.SearchBudget) -> float:
    """How far over the budget, as the worst of the fractions (for 'the smallest')."""
    fractions = [estimate["flash_bytes"] / budget.flash_bytes,
                 (estimate["ram_bytes"] + estimate["stack_bytes"]) / budget.ram_bytes]
    if budget.latency_us:
        fractions.append(estimate["latency_us"] / budget.latency_us)
    return max(fractions)


def _needs(estimate: dict) -> str:
    return (f"flash {estimate['flash_bytes']:,} B, RAM "
            f"{estimate['ram_bytes'] + estimate['stack_bytes']:,} B, latency "
            f"{estimate['latency_us'] / 1000:,.2f} ms")


def _summarize(base: LoadedProject, candidates: list[Candidate], store: ResultStore,
               budget: ev.SearchBudget, target: str, folds: int, total: int) -> dict:
    scfg = base.config.search
    assert scfg is not None
    rows = []
    for c in candidates:
        row = dict(store.rows.get(c.key, {}))
        if not row:
            continue
        if "estimate" not in row and "estimate_before_training" in row:
            row["estimate"] = row["estimate_before_training"]
        if row.get("status") in ("evaluated", "over budget after training"):
            row["score"] = row[scfg.score]
        rows.append(row)
    fitting = [r for r in rows if r.get("status") == "evaluated"]
    if not fitting:
        failed = [r for r in rows if r.get("status") == "failed"]
        detail = f"; first failure: {failed[0]['error']}" if failed else \
            "; the candidates that were trained are over the budget after training"
        raise KilomlError(f"no candidate was evaluated within the budget ({budget.describe()})"
                          f"{detail}", file=base.path)
    front = pareto_front(fitting)
    chosen = pick(front, scfg.pick, scfg.cost, scfg.accuracy_tolerance_points)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    return {
        "project": base.config.name, "target": target, "budget": budget.__dict__,
        "score": scfg.score, "folds": folds, "policy": {
            "pick": scfg.pick, "cost": scfg.cost,
            "accuracy_tolerance_points": scfg.accuracy_tolerance_points},
        "space_size": total, "n_candidates": len(candidates), "status_counts": counts,
        "objectives": list(OBJECTIVES), "front": [r["key"] for r in front],
        "chosen": chosen["key"], "chosen_label": chosen["label"],
        "rows": [{k: v for k, v in r.items() if k != "traceback"} for r in rows],
    }


def _write_outputs(base: LoadedProject, directory: Path, summary: dict,
                   candidates: list[Candidate]) -> Path:
    chosen = next(c for c in candidates if c.key == summary["chosen"])
    raw = dict(chosen.raw)
    raw = _absolute_paths(base, raw)
    raw["name"] = f"{base.config.name}-chosen"
    raw["output"] = {"dir": str(directory / "chosen")}
    header = (f"The candidate `kiloml search {base.path}` picked ({summary['policy']['pick']}"
              f" by {summary['score']}):\n{chosen.label}")
    path = directory / CHOSEN_FILE
    write_text_atomically(path, to_toml(raw, header))
    _write_json(directory / SUMMARY_FILE, summary)
    from kiloml.report.search_section import render_search_report

    write_text_atomically(directory / "report.html", render_search_report(summary))
    return path


def _absolute_paths(base: LoadedProject, raw: dict) -> dict:
    """chosen.toml lives in the search folder: paths of the project must not move."""
    raw = json.loads(json.dumps(raw))
    data = raw.get("data", {})
    if data.get("path"):
        data["path"] = str(base.resolve(data["path"]))
    model = raw.get("model", {})
    if model.get("path"):
        model["path"] = str(base.resolve(model["path"]))
    target = raw.get("target", {})
    if str(target.get("name", "")).endswith(".toml"):
        target["name"] = str(base.resolve(target["name"]))
    return raw


def _write_json(path: Path, obj: dict) -> None:
    write_text_atomically(path, json.dumps(obj, indent=1, default=str))


def _print_summary(summary: dict, directory: Path) -> None:
    from rich.table import Table

    by_key = {r["key"]: r for r in summary["rows"]}
    table = Table(title=f"Pareto front ({len(summary['front'])} of "
                        f"{summary['n_candidates']} candidates)", title_justify="left")
    for col in ("", "candidate", summary["score"], "flash B", "RAM+stack B", "latency ms",
                "uJ/inf"):
        table.add_column(col, justify="left" if col in ("", "candidate") else "right",
                         overflow="fold", ratio=4 if col == "candidate" else None)
    for key in summary["front"]:
        r = by_key[key]
        e = r["estimate"]
        table.add_row("*" if key == summary["chosen"] else "", r["label"],
                      f"{r['score']:.4f}", f"{e['flash_bytes']:,}",
                      f"{e['ram_bytes'] + e['stack_bytes']:,}", f"{e['latency_us'] / 1000:.3f}",
                      f"{e['energy_uj']:.2f}")
    console.print(table)
    counts = ", ".join(f"{n} {s}" for s, n in summary["status_counts"].items())
    console.print(f"candidates: {counts}")
    console.print(f"picked (*): {summary['chosen_label']}")
    console.print(f"results: {_rel(directory)} (candidates.jsonl, search.json, chosen.toml, "
                  f"report.html)")


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
