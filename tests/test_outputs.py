"""Issue 13 item 0: kiloml never deletes or overwrites what it did not create. An output
folder that is, contains or lies inside the data or project folder is refused, and so is
an existing folder that kiloml did not make (output folders carry a marker)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from kiloml.outputs import MARKER_FILE, marker_kind
from tests.conftest import CsvProject, assert_user_error, run_cli

FIXTURES = Path(__file__).parent / "nn" / "fixtures"
PROFILES = Path(__file__).parents[1] / "kiloml" / "targets" / "profiles"


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _set_output(project: CsvProject, value: str) -> int:
    project.set_toml('dir = "out"', f"dir = {value}")
    return project.toml.read_text().splitlines().index(f"dir = {value}") + 1


@pytest.mark.parametrize("value, fragment", [
    ('"data"', "is the data folder"),
    ('"."', "is the project folder"),
    ('".."', "contains the project folder"),
    ('"data/walk"', "lies inside the data folder"),
    ('"data/out"', "lies inside the data folder"),
])
def test_output_folder_over_the_users_files_is_refused(csv_project: CsvProject, value: str,
                                                       fragment: str) -> None:
    before = _snapshot(csv_project.root)
    line = _set_output(csv_project, value)
    before["kiloml.toml"] = csv_project.toml.read_bytes()
    assert_user_error(run_cli("run", str(csv_project.toml), "--no-emulator"),
                      f"kiloml.toml:{line}:", "[output] dir", fragment)
    assert _snapshot(csv_project.root) == before  # nothing deleted, nothing added
    assert not [p for p in csv_project.root.parent.iterdir() if ".partial-" in p.name]


def test_an_existing_folder_kiloml_did_not_make_is_refused(csv_project: CsvProject) -> None:
    mine = csv_project.root / "out"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    assert_user_error(run_cli("run", str(csv_project.toml), "--no-emulator"),
                      "[output] dir", "is not a kiloml output folder", MARKER_FILE)
    assert (mine / "notes.txt").read_text() == "mine"
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_a_file_where_the_output_folder_goes_is_refused(csv_project: CsvProject) -> None:
    (csv_project.root / "out").write_text("a file")
    assert_user_error(run_cli("run", str(csv_project.toml), "--no-emulator"),
                      "[output] dir", "exists and is not a folder")
    assert (csv_project.root / "out").read_text() == "a file"


def test_a_profile_file_inside_the_output_folder_is_refused(csv_project: CsvProject) -> None:
    board = csv_project.root / "out" / "board.toml"
    board.parent.mkdir()
    shutil.copy(PROFILES / "cortex-m4f.toml", board)
    csv_project.set_toml('name = "cortex-m4f"', 'name = "out/board.toml"')
    assert_user_error(run_cli("run", str(csv_project.toml), "--no-emulator"),
                      "[output] dir", "contains the target profile")
    assert board.exists()


def test_runs_mark_their_folder_and_replace_only_marked_folders(csv_project: CsvProject
                                                                ) -> None:
    empty = csv_project.root / "out"
    empty.mkdir()  # an empty folder holds nothing to lose
    assert run_cli("run", str(csv_project.toml), "--no-emulator").exit_code == 0
    assert marker_kind(empty) == "run"
    info = json.loads((empty / MARKER_FILE).read_text())
    assert info["kind"] == "run" and info["kiloml_version"]
    first = (empty / "metrics.json").read_bytes()
    # a second run replaces the first one's folder (kiloml made it)
    assert run_cli("run", str(csv_project.toml), "--no-emulator").exit_code == 0
    assert (empty / "metrics.json").read_bytes() != first  # elapsed_s at least differs
    # without the marker, the folder is no longer recognizably kiloml's
    (empty / MARKER_FILE).unlink()
    assert_user_error(run_cli("run", str(csv_project.toml), "--no-emulator"),
                      "is not a kiloml output folder")
    assert (empty / "metrics.json").exists()


def test_a_run_refuses_a_search_folder(csv_project: CsvProject) -> None:
    search = csv_project.root / "out"
    search.mkdir()
    (search / MARKER_FILE).write_text(json.dumps({"kind": "search"}))
    (search / "candidates.jsonl").write_text("{}\n")
    assert_user_error(run_cli("run", str(csv_project.toml), "--no-emulator"),
                      "is a search folder, not a run folder")
    assert (search / "candidates.jsonl").exists()


@pytest.mark.parametrize("out, fragment", [
    ("data", "is the data folder"),
    (".", "is the project folder"),
    ("out", "the project's run output folder"),
])
def test_search_folder_over_the_users_files_is_refused(csv_project: CsvProject, out: str,
                                                       fragment: str) -> None:
    csv_project.toml.write_text(csv_project.toml.read_text() + """
[search]
folds = 2
[search.space]
"window.window_ms" = [1000]
""")
    before = _snapshot(csv_project.root)
    assert_user_error(run_cli("search", str(csv_project.toml), "--out",
                              str(csv_project.root / out), "--no-run"), "--out", fragment)
    assert _snapshot(csv_project.root) == before


def test_model_compile_refuses_folders_it_did_not_make(tmp_path: Path) -> None:
    model = tmp_path / "models" / "mlp_int8.tflite"
    model.parent.mkdir()
    shutil.copy(FIXTURES / "mlp_int8.tflite", model)
    assert_user_error(run_cli("model", "compile", str(model), "--target", "host", "--out",
                              str(model.parent)), "--out", "contains the model file")
    assert_user_error(run_cli("model", "compile", str(model), "--target", "host", "--out",
                              str(model)), "--out", "is the model file")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.c").write_text("int x;\n")
    assert_user_error(run_cli("model", "compile", str(model), "--target", "host", "--out",
                              str(mine)), "--out", "is not a kiloml output folder")
    assert (mine / "keep.c").read_text() == "int x;\n"
    assert model.read_bytes() == (FIXTURES / "mlp_int8.tflite").read_bytes()
    out = tmp_path / "lib"
    for _ in range(2):  # the second compile replaces the first one's folder
        result = run_cli("model", "compile", str(model), "--target", "host", "--out", str(out))
        assert result.exit_code == 0, result.stderr
        assert marker_kind(out) == "model-compile"
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name or ".old-" in p.name]


def test_model_run_and_verify_never_write_over_their_inputs(tmp_path: Path) -> None:
    import numpy as np

    model = tmp_path / "mlp_int8.tflite"
    shutil.copy(FIXTURES / "mlp_int8.tflite", model)
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((2, 24), np.int8))
    before = model.read_bytes(), x.read_bytes()
    for command in (["run"], ["verify", "--target", "host"]):
        for output, fragment in ((model, "is the model file"), (x, "is the inputs file"),
                                 (tmp_path, "is a folder"),
                                 (tmp_path / "no" / "y.npy", "output folder does not exist")):
            assert_user_error(run_cli("model", command[0], str(model), "--inputs", str(x),
                                      *command[1:], "--output", str(output)), fragment)
    assert (model.read_bytes(), x.read_bytes()) == before
    result = run_cli("model", "run", str(model), "--inputs", str(x), "--output",
                     str(tmp_path / "y.npy"))
    assert result.exit_code == 0, result.stderr
    assert np.load(tmp_path / "y.npy", allow_pickle=False).shape == (2, 7)


def test_commands_that_update_a_run_folder_need_kiloml_s_marker(
        csv_project: CsvProject) -> None:
    assert run_cli("run", str(csv_project.toml), "--no-emulator").exit_code == 0
    (csv_project.out / MARKER_FILE).unlink()
    before = _snapshot(csv_project.out)
    for args in (["verify"], ["stress", "--perturbations", "gain", "--no-augment"],
                 ["check-data"]):
        assert_user_error(run_cli(args[0], str(csv_project.toml), *args[1:]),
                          "not a run folder made by kiloml", MARKER_FILE)
    assert _snapshot(csv_project.out) == before
