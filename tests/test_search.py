"""kiloml search: the space, rejection before training, the front and the pick,
resuming, the local pool and Ray, and the errors a user can make."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kiloml.search.pareto import dominates, pareto_front, pick
from tests.conftest import CsvProject, assert_user_error, run_cli, write_toy_project

SPACE = """
[search]
pick = "cheapest_within"
cost = "flash"
accuracy_tolerance_points = 5.0
folds = 3

[search.space]
"window.window_ms" = [1000, 2000]
features = [["statistics"], [{stage = "statistics", statistics = ["mean", "std"]}]]
model = [
  {kind = "random_forest", n_estimators = [2, 8], max_depth = [2, 6]},
  {kind = "decision_tree", max_depth = 3},
]
"""
N_CANDIDATES = 2 * 2 * (4 + 1)


def _row(key: str, score: float, flash: int, ram: int = 100, latency: float = 10.0,
         energy: float = 1.0) -> dict:
    return {"key": key, "score": score, "estimate": {
        "flash_bytes": flash, "ram_bytes": ram, "stack_bytes": 0, "latency_us": latency,
        "energy_uj": energy}}


def test_pareto_front_and_the_pick_policies() -> None:
    a = _row("a", 0.90, 10_000)
    b = _row("b", 0.85, 4_000)
    c = _row("c", 0.80, 5_000)  # worse and bigger than b: dominated
    d = _row("d", 0.95, 20_000, energy=3.0)
    assert dominates(b, c) and not dominates(a, b) and not dominates(b, a)
    front = pareto_front([a, b, c, d])
    assert [r["key"] for r in front] == ["d", "a", "b"]
    assert pick(front, "most_accurate", "flash", 1.0)["key"] == "d"
    assert pick(front, "cheapest_within", "flash", 5.0)["key"] == "a"   # within 5 points
    assert pick(front, "cheapest_within", "flash", 10.0)["key"] == "b"  # within 10 points
    assert pick(front, "cheapest_within", "energy", 0.0)["key"] == "d"


def _search_project(root: Path, space: str = SPACE, target: str = "") -> Path:
    toml = write_toy_project(root)
    text = toml.read_text()
    if target:
        text = text.replace('name = "cortex-m4f"\n', f'name = "cortex-m4f"\n{target}')
    toml.write_text(text + space)
    return toml


def _summary(root: Path) -> dict:
    return json.loads((root / "out-search" / "search.json").read_text())


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The toy project searched once in a local pool of 2 workers (the chosen candidate
    run without the emulator)."""
    root = tmp_path_factory.mktemp("search")
    toml = _search_project(root, target="latency_budget_ms = 10\n")
    result = run_cli("search", str(toml), "--workers", "2", "--no-emulator")
    assert result.exit_code == 0, result.stderr + result.stdout
    return toml


def test_search_keeps_a_pareto_front_picks_by_policy_and_runs_the_pick(searched: Path) -> None:
    root = searched.parent
    summary = _summary(root)
    rows = {r["key"]: r for r in summary["rows"]}
    assert summary["n_candidates"] == N_CANDIDATES == len(rows)
    evaluated = [r for r in rows.values() if r["status"] == "evaluated"]
    assert evaluated and all(0 <= r["score"] <= 1 for r in evaluated)
    front = [rows[k] for k in summary["front"]]
    # nothing evaluated dominates a member of the front; every other row is dominated
    for r in front:
        assert not any(dominates(o, r) for o in evaluated)
    for r in evaluated:
        if r["key"] not in summary["front"]:
            assert any(dominates(f, r) for f in front)
    chosen = rows[summary["chosen"]]
    best = max(r["score"] for r in front)
    assert 100 * (best - chosen["score"]) <= 5.0 + 1e-9
    within = [r for r in front if 100 * (best - r["score"]) <= 5.0 + 1e-9]
    assert chosen["estimate"]["flash_bytes"] == min(r["estimate"]["flash_bytes"]
                                                    for r in within)
    # every trained candidate has its cost on every built-in target
    assert {"cortex-m0plus", "cortex-m4f", "cortex-m7"} <= set(chosen["estimates_by_target"])
    # the pick as a project, run: its report holds the Pareto chart and the trade-offs
    chosen_toml = root / "out-search" / "chosen.toml"
    assert "[search" not in chosen_toml.read_text()
    run = summary["chosen_run"]
    report = (Path(run["output_dir"]) / "report.html").read_text()
    assert "<h2>Search</h2>" in report and "Trade-offs on the Pareto front" in report
    assert (root / "out-search" / "report.html").exists()
    metrics = json.loads((Path(run["output_dir"]) / "metrics.json").read_text())
    assert metrics["search"]["chosen"] == summary["chosen"]


def test_search_resumes_where_it_stopped(searched: Path) -> None:
    store = searched.parent / "out-search" / "candidates.jsonl"
    lines = store.read_text().splitlines()
    trained = [json.loads(x) for x in lines if json.loads(x)["status"] == "evaluated"]
    assert len(lines) == N_CANDIDATES
    # as if killed after all but the last two trained candidates (and mid-write)
    keep = [x for x in lines if json.loads(x)["key"] not in {r["key"] for r in trained[-2:]}]
    store.write_text("\n".join(keep) + '\n{"key": "half-writ')
    result = run_cli("search", str(searched), "--workers", "1", "--no-run")
    assert result.exit_code == 0, result.stderr
    assert f"resuming: {len(trained) - 2} already evaluated" in result.stdout
    again = [json.loads(x) for x in store.read_text().splitlines()[len(keep):]]
    assert sorted(r["key"] for r in again) == sorted(r["key"] for r in trained[-2:])
    for new in again:  # the same candidate gives the same score (seeded)
        old = next(r for r in trained if r["key"] == new["key"])
        assert new["balanced_accuracy"] == old["balanced_accuracy"]


def test_over_budget_candidates_are_rejected_before_training(tmp_path: Path) -> None:
    # a budget between the smallest and the largest candidate's flash
    toml = _search_project(tmp_path, target="flash_budget_bytes = 3000\n")
    result = run_cli("search", str(toml), "--workers", "1", "--no-run")
    assert result.exit_code == 0, result.stderr + result.stdout
    rows = _summary(tmp_path)["rows"]
    rejected = [r for r in rows if r["status"] == "rejected before training"]
    trained = [r for r in rows if r["status"] != "rejected before training"]
    assert rejected and trained
    for r in rejected:
        assert "seconds" not in r and "cv" not in r  # never trained
        assert r["estimate_before_training"]["flash_bytes"] > 0.95 * 3000  # the 5% margin
        assert any(reason.startswith("flash") for reason in r["over_budget"])
    for r in trained:  # the prediction before training (from a few trees) holds after it
        before, after = r["estimate_before_training"], r["estimate"]
        assert before["flash_bytes"] >= 0.85 * after["flash_bytes"], r["label"]


def test_budgets_no_candidate_can_meet(tmp_path: Path) -> None:
    toml = _search_project(tmp_path, target="flash_budget_bytes = 1000\n")
    line = assert_user_error(run_cli("search", str(toml)), "no candidate fits the budget",
                             "flash 1,000 B", "the smallest", "needs flash")
    n = toml.read_text().splitlines().index("[target]") + 1
    assert f"kiloml.toml:{n}:" in line
    assert not (tmp_path / "out-search").exists()  # nothing half-written


@pytest.mark.parametrize("space, fragments", [
    ('"windw.window_ms" = [1000]', ("unknown dimension 'windw.window_ms'",
                                    "did you mean 'window'")),
    ('"window.window_sm" = [1000]', ("unknown key 'window_sm' in [window]",
                                     "did you mean 'window_ms'")),
    ('features = [["statistcs"]]', ("unknown feature stage 'statistcs'",
                                    "did you mean 'statistics'")),
    ('model = [{kind = "random_forest", max_dept = [2, 4]}]',
     ("unknown parameter 'max_dept' for model 'random_forest'", "did you mean 'max_depth'")),
    ('model = [{kind = "random_forrest"}]', ("unknown model kind 'random_forrest'",
                                             "did you mean 'random_forest'")),
    ('"window.window_ms" = 1000', ("'window.window_ms' must be a non-empty list",)),
    ('"window.window_ms" = [-5]', ("is not a valid project", "window_ms")),
])
def test_a_typo_in_the_search_space(tmp_path: Path, space: str, fragments: tuple) -> None:
    toml = _search_project(tmp_path, space=f"\n[search]\n\n[search.space]\n{space}\n")
    n = toml.read_text().splitlines().index(space) + 1
    line = assert_user_error(run_cli("search", str(toml)), "[search.space]", *fragments)
    assert f"kiloml.toml:{n}:" in line


def test_a_project_without_a_search_section(csv_project: CsvProject) -> None:
    assert_user_error(run_cli("search", str(csv_project.toml)), "no [search] section")


def test_an_unreachable_ray_address_fails_within_seconds(tmp_path: Path) -> None:
    toml = _search_project(tmp_path)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    assert_user_error(run_cli("search", str(toml), "--executor", "ray", "--address",
                              f"127.0.0.1:{port}"),
                      f"cannot reach the Ray cluster at 127.0.0.1:{port}")
    assert time.monotonic() - started < 10
    assert_user_error(run_cli("search", str(toml), "--executor", "ray"), "needs --address")
    assert not (tmp_path / "out-search").exists()


def test_an_address_where_something_else_listens(tmp_path: Path) -> None:
    toml = _search_project(tmp_path)
    with socket.socket() as server:  # accepts connections and never answers
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        port = server.getsockname()[1]
        started = time.monotonic()
        assert_user_error(run_cli("search", str(toml), "--executor", "ray", "--address",
                                  f"127.0.0.1:{port}"),
                          f"cannot reach the Ray cluster at 127.0.0.1:{port}",
                          "no Ray head answered")
        assert time.monotonic() - started < 15
    assert not (tmp_path / "out-search").exists()


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory):
    """A local Ray instance started as a cluster head (what `ray start --head` gives)."""
    ray = shutil.which("ray", path=str(Path(sys.executable).parent))
    assert ray, "ray is a dependency of kiloml search"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tmp = tmp_path_factory.mktemp("ray")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    subprocess.run([ray, "start", "--head", f"--port={port}", "--num-cpus=2",
                    "--include-dashboard=false", f"--temp-dir={tmp}",
                    "--disable-usage-stats"], check=True, capture_output=True, env=env,
                   timeout=120)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([ray, "stop", "--force"], capture_output=True, env=env, timeout=120)


def test_the_same_search_on_a_ray_cluster(ray_cluster: str, searched: Path,
                                          tmp_path: Path) -> None:
    toml = _search_project(tmp_path, target="latency_budget_ms = 10\n")
    result = run_cli("search", str(toml), "--executor", "ray", "--address", ray_cluster,
                     "--no-run")
    assert result.exit_code == 0, result.stderr + result.stdout
    assert f"Ray cluster at {ray_cluster}" in result.stdout
    on_ray = _summary(tmp_path)
    local = _summary(searched.parent)
    assert on_ray["executor"].startswith("Ray cluster")
    # the same candidates, the same scores, the same front and pick as the local pool
    score = {r["key"]: r.get("score") for r in local["rows"]}
    assert {r["key"]: r.get("score") for r in on_ray["rows"]} == score
    assert on_ray["front"] == local["front"] and on_ray["chosen"] == local["chosen"]
    workers = {r["worker"] for r in on_ray["rows"] if "worker" in r}
    assert workers and all(":" in w for w in workers)


NETWORK_SPACE = """
[search]
folds = 3

[search.space]
[[search.space.model]]
kind = "mlp"
hidden = [[24, 12]]
epochs = 8
optimize = [{}, {prune = "structured", sparsity = 0.5, fine_tune_epochs = 2}]
"""


def test_network_candidates_are_estimated_as_pruning_will_leave_them(tmp_path: Path) -> None:
    toml = _search_project(tmp_path, space=NETWORK_SPACE)
    result = run_cli("search", str(toml), "--workers", "1", "--no-run")
    assert result.exit_code == 0, result.stderr + result.stdout
    rows = {("prune" in json.dumps(r["choices"])): r for r in _summary(tmp_path)["rows"]}
    full, pruned = rows[False], rows[True]
    assert full["status"] == pruned["status"] == "evaluated"
    # a network's size is known before training, pruned or not: the estimates agree
    for r in (full, pruned):
        for q in ("flash_bytes", "ram_bytes", "instructions_per_inference"):
            assert r["estimate_before_training"][q] == r["estimate"][q], (q, r["label"])
    assert pruned["macs"] < 0.7 * full["macs"]
    assert pruned["estimate"]["instructions_per_inference"] < \
        full["estimate"]["instructions_per_inference"]
