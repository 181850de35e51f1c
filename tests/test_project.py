"""The project file: schema, defaults, did-you-mean, init."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import assert_user_error, run_cli

from kiloml.errors import KilomlError
from kiloml.project import load_project

ROOT = Path(__file__).resolve().parents[1]


def test_watch_example_loads() -> None:
    p = load_project(ROOT / "examples" / "watch" / "kiloml.toml")
    assert p.config.name == "watch"
    assert p.config.data.source == "watch"
    assert p.config.evaluation.test_groups == ["9", "10"]
    assert p.config.features[0].stage == "statistics"
    assert len(p.config.features[0].statistics) == 10
    assert p.output_dir == Path.cwd() / "build" / "watch"


def test_folder_argument_finds_kiloml_toml() -> None:
    assert load_project(ROOT / "examples" / "watch").config.name == "watch"


def test_init_writes_a_project_that_loads(tmp_path: Path) -> None:
    result = run_cli("init", str(tmp_path / "new"))
    assert result.exit_code == 0, result.stderr
    p = load_project(tmp_path / "new" / "kiloml.toml")
    assert p.config.name == "new"
    assert p.config.data.source == "csv" and p.config.data.label_from_folder
    assert p.resolve("recordings") == (tmp_path / "new" / "recordings").resolve()
    assert_user_error(run_cli("init", str(tmp_path / "new")), "already exists")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "kiloml.toml"
    path.write_text(text)
    return path


BASE = """name = "x"
[data]
source = "watch"
[window]
window_ms = 2000
stride_ms = 500
[model]
kind = "decision_tree"
"""


def test_defaults(tmp_path: Path) -> None:
    p = load_project(write(tmp_path, BASE))
    c = p.config
    assert c.target.name == "cortex-m4f"
    assert c.evaluation.cv_folds == 5 and c.evaluation.test_groups is None
    assert c.data.min_label_coverage == 0.8
    assert [f.stage for f in c.features] == ["statistics"]


@pytest.mark.parametrize(("extra", "fragment"), [
    ('[data]\nsource = "csv"\npath = "d"\n', "exactly one of label_column"),
    ('[data]\nsource = "csv"\npath = "d"\nlabel_pattern = "([a-z]+)"\n', "(?P<label>"),
    ('[data]\nsource = "csv"\npath = "d"\nlabel_pattern = "(?P<label>[a-z"\n',
     "not a valid regular expression"),
    ('[data]\nsource = "wav"\npath = "d"\nlabel_column = "y"\n', "WAV files have no label"),
    ('[data]\nsource = "watch"\npath = "d"\n', "does not apply to the built-in data set"),
    ('[data]\nsource = "csv"\nlabel_from_folder = true\n', "needs 'path'"),
])
def test_data_section_rules(tmp_path: Path, extra: str, fragment: str) -> None:
    text = BASE.replace('[data]\nsource = "watch"\n', extra)
    with pytest.raises(KilomlError) as err:
        load_project(write(tmp_path, text))
    assert fragment in str(err.value)
    assert "kiloml.toml" in str(err.value)


def test_missing_section(tmp_path: Path) -> None:
    with pytest.raises(KilomlError, match="missing required key 'model'"):
        load_project(write(tmp_path, BASE.replace('[model]\nkind = "decision_tree"\n', "")))


def test_unknown_statistic(tmp_path: Path) -> None:
    text = BASE + '[[features]]\nstage = "statistics"\nstatistics = ["mean", "median"]\n'
    with pytest.raises(KilomlError, match="statistics"):
        load_project(write(tmp_path, text))


def test_misspelled_nested_key_names_its_line(tmp_path: Path) -> None:
    text = BASE.replace('kind = "decision_tree"', 'kind = "decision_tree"\nn_estimator = 3')
    with pytest.raises(KilomlError) as err:
        load_project(write(tmp_path, text))
    assert str(err.value).endswith("kiloml.toml:9: [model] unknown key 'n_estimator'; did you "
                                   "mean 'n_estimators'?")


def test_unrelated_key_lists_known_keys(tmp_path: Path) -> None:
    text = BASE.replace("stride_ms = 500", "stride_ms = 500\nzzz = 1")
    with pytest.raises(KilomlError, match="known keys: window_ms, stride_ms"):
        load_project(write(tmp_path, text))
