"""Command-line options and project values outside what can work are one line (exit 2),
checked before any work: seeds, worker counts, copies, output files over the inputs."""

from __future__ import annotations

import pytest

from tests.conftest import CsvProject, assert_user_error, run_cli

SEARCH = """
[search]
folds = 2
[search.space]
"window.window_ms" = [1000]
"""


@pytest.mark.parametrize("args, fragments", [
    (["stress", "--seed", "-1", "--no-augment"], ["--seed", "a seed is 0 to 4294967295"]),
    (["stress", "--seed", "4294967296", "--no-augment"], ["--seed"]),
    (["stress", "--copies", "100000"], ["--copies", "give 0 to 100"]),
    (["check-data", "--json", "{root}/kiloml.toml"], ["--json", "is the project file"]),
    (["check-data", "--json", "{root}"], ["--json", "is the project folder"]),
    (["check-data", "--json", "{root}/data/walk/s1_rec.csv"],
     ["--json", "lies inside the data folder"]),
    (["check-data", "--json", "{root}/nowhere/x.json"], ["--json", "does not exist"]),
])
def test_bad_options_of_project_commands(csv_project: CsvProject, args: list[str],
                                         fragments: list[str]) -> None:
    before = csv_project.file("walk", "s1").read_bytes()
    args = [a.format(root=csv_project.root) for a in args]
    assert_user_error(run_cli(args[0], str(csv_project.toml), *args[1:]), *fragments)
    assert csv_project.file("walk", "s1").read_bytes() == before
    assert not csv_project.out.exists()


@pytest.mark.parametrize("workers", ["0", "-3", "100000"])
def test_search_worker_counts(csv_project: CsvProject, workers: str) -> None:
    csv_project.toml.write_text(csv_project.toml.read_text() + SEARCH)
    assert_user_error(run_cli("search", str(csv_project.toml), "--workers", workers),
                      "--workers", "give 1 to 256")
    assert not (csv_project.root / "out-search").exists()


@pytest.mark.parametrize("section, key, value", [
    ("model", "random_state", "-1"), ("model", "random_state", "4294967296"),
    ("evaluation", "seed", "-5"), ("augment", "seed", "-1"), ("search", "seed", "-2"),
])
def test_seeds_outside_what_numpy_and_sklearn_take(csv_project: CsvProject, section: str,
                                                   key: str, value: str) -> None:
    text = csv_project.toml.read_text() + ("" if section != "search" else SEARCH)
    if f"[{section}]" not in text:
        text += f"\n[{section}]\n"
    text = text.replace(f"[{section}]\n", f"[{section}]\n{key} = {value}\n", 1)
    csv_project.toml.write_text(text)
    line = text.splitlines().index(f"{key} = {value}") + 1
    assert_user_error(run_cli("run", str(csv_project.toml)), f"kiloml.toml:{line}:", key)


@pytest.mark.parametrize("old, new, fragment", [
    ("window_ms = 1000", "window_ms = inf", "finite number"),
    ("window_ms = 1000", "window_ms = nan", "finite number"),
    ("stride_ms = 500", "stride_ms = 1e308", "less than or equal to 86400000"),
    ("sample_rate_hz = 50", "sample_rate_hz = 1e300", "less than or equal to"),
    ('stage = "statistics"', 'stage = "mfcc"\nframe_ms = 1e308', "frame_ms"),
    ('name = "cortex-m4f"', 'name = "cortex-m4f"\npower_budget_uw = -inf', "power_budget_uw"),
    ("cv_folds = 3", "cv_folds = 3\n[augment]\ncopies = 1\ngain_db = [-1e300, 0]",
     "decibels within +-120"),
])
def test_numbers_that_overflow_downstream(csv_project: CsvProject, old: str, new: str,
                                          fragment: str) -> None:
    csv_project.set_toml(old, new)
    assert_user_error(run_cli("run", str(csv_project.toml)), fragment)
    assert not csv_project.out.exists()
