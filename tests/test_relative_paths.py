"""Issue 13 item 2: every command works with relative paths for every path argument,
from any working folder (`kiloml model compile M --target cortex-m4f --out some_dir`
crashed: a relative executable run in another folder)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from kiloml.outputs import marker_kind
from tests.conftest import run_cli, write_toy_project

FIXTURES = Path(__file__).parent / "nn" / "fixtures"
PROFILES = Path(__file__).parents[1] / "kiloml" / "targets" / "profiles"

SEARCH = """
[search]
folds = 2
[search.space]
"window.window_ms" = [1000]
model = [{kind = "random_forest", n_estimators = 2, max_depth = 3}]
"""


@pytest.fixture
def layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tmp/proj (a toy project), tmp/models (an int8 model), and the working folder
    tmp/work/deeper, from which everything is named relatively."""
    toml = write_toy_project(tmp_path / "proj")
    toml.with_name("search.toml").write_text(toml.read_text().replace('name = "toy"',
                                                                      'name = "toys"') + SEARCH)
    profile = (PROFILES / "cortex-m4f.toml").read_text().replace(
        'name = "cortex-m4f"', 'name = "board"')
    (tmp_path / "proj" / "board.toml").write_text(profile)
    (tmp_path / "models").mkdir()
    shutil.copy(FIXTURES / "mlp_int8.tflite", tmp_path / "models")
    work = tmp_path / "work" / "deeper"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    return tmp_path


def ok(*args: str) -> str:
    result = run_cli(*args)
    assert result.exit_code == 0, (args, result.stderr, result.stdout)
    return result.stdout


def test_project_commands_with_relative_paths(layout: Path) -> None:
    ok("init", "../new")
    assert (layout / "work" / "new" / "kiloml.toml").is_file()
    ok("run", "../../proj/kiloml.toml", "--no-emulator")
    out = layout / "proj" / "out"  # [output] dir is relative to the project file
    assert marker_kind(out) == "run"
    ok("run", "../../proj", "--no-emulator")  # the folder holding kiloml.toml
    ok("verify", "../../proj", "--target", "../../proj/board.toml")
    m = json.loads((out / "metrics.json").read_text())
    assert m["parity"]["board"]["all_decisions_equal"]
    ok("stress", "../../proj", "--perturbations", "gain", "--severities", "0,6",
       "--no-augment")
    ok("check-data", "../../proj", "--json", "checks.json")
    assert json.loads(Path("checks.json").read_text())
    ok("search", "../../proj/search.toml", "--out", "found", "--no-run", "--workers", "1")
    assert marker_kind(Path("found")) == "search" and Path("found/chosen.toml").is_file()
    # a project without [output] dir writes build/<name> in the current folder
    plain = layout / "proj" / "plain.toml"
    plain.write_text((layout / "proj" / "kiloml.toml").read_text()
                     .replace('[output]\ndir = "out"\n', "").replace('"toy"', '"plain"'))
    ok("run", "../../proj/plain.toml", "--no-emulator")
    assert marker_kind(Path("build/plain")) == "run"


def test_model_commands_with_relative_paths(layout: Path) -> None:
    model = "../../models/mlp_int8.tflite"
    assert "FULLY_CONNECTED" in ok("model", "info", model)
    x = np.random.default_rng(0).integers(-128, 128, size=(3, 24)).astype(np.int8)
    np.save("x.npy", x)
    ok("model", "run", model, "--inputs", "x.npy", "--output", "y.npy")
    assert np.load("y.npy").shape == (3, 7)
    ok("model", "compile", model, "--target", "cortex-m4f", "--out", "some_relative_dir")
    resources = json.loads(Path("some_relative_dir/resources.json").read_text())
    assert resources["parity"]["cortex-m4f"]["bit_exact"] == resources["parity"]["cortex-m4f"]["n"]
    ok("model", "compile", model, "--target", "host", "--out", "../host_lib")
    ok("model", "verify", model, "--inputs", "x.npy", "--target", "cortex-m4f", "--output",
       "z.npy")
    assert np.array_equal(np.load("z.npy"), np.load("y.npy"))
