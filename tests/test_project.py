"""The project file: schema, defaults, did-you-mean, init."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from conftest import CsvProject, assert_user_error, run_cli

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
    ('[data]\nsource = "watch"\nchannels = ["ax", "ax"]\n', "channel 'ax' is listed twice"),
    ('[data]\nsource = "watch"\nchannels = []\n', "name at least one channel"),
    ('[data]\nsource = "watch"\nchannels = ["ax", " "]\n', "a channel name is empty"),
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


# --- regular expressions in TOML: single quotes ---------------------------------------

TEMPLATE = ROOT / "kiloml" / "templates" / "kiloml.toml"
README = ROOT / "README.md"


def _project_keys() -> set[str]:
    """Every key of every section of the schema (the names README examples may use)."""
    from kiloml import project as schema

    keys: set[str] = set()
    for value in vars(schema).values():
        if isinstance(value, type) and issubclass(value, schema.Section):
            keys.update(value.model_fields)
    return keys


def test_init_template_commented_settings_parse(tmp_path: Path) -> None:
    """`kiloml init` loads, and every commented-out setting in it is valid TOML once
    uncommented (the regular expressions among them compile with their named group)."""
    assert run_cli("init", str(tmp_path / "p")).exit_code == 0
    text = (tmp_path / "p" / "kiloml.toml").read_text()
    load_project(tmp_path / "p" / "kiloml.toml")
    settings: list[str] = []
    for line in text.splitlines():
        body = line[1:].strip() if line.startswith("#") else None
        if body is None:
            continue
        if settings and settings[-1].count("[") > settings[-1].count("]"):
            settings[-1] += " " + body  # a list continued on the next comment line
        elif re.match(r"[a-z_]+ = ", body):
            settings.append(body)
    assert len(settings) >= 15, settings
    for line in settings:
        value = tomllib.loads(line)
        for key in ("label_pattern", "group_pattern"):
            if key in value:
                assert f"(?P<{key.split('_')[0]}>" in value[key]
                assert re.compile(value[key]).groupindex
    patterns = [s for s in settings if "_pattern" in s]
    assert len(patterns) == 2 and all(" = '" in s for s in patterns), patterns


def _readme_toml() -> list[str]:
    """The TOML a reader copies from README: fenced ```toml blocks, and each `key = value`
    line (a known project key) in indented code blocks and inline code."""
    text = README.read_text()
    blocks = re.findall(r"^```toml\n(.*?)^```", text, re.M | re.S)
    keys = _project_keys()
    lines = []
    for line in text.splitlines():
        if line.startswith("    "):
            lines.append(re.sub(r"^\s*#?\s*", "", line))
    lines += re.findall(r"`([^`\n]+)`", text)
    singles = [s for s in lines if (m := re.match(r"([a-z_]+) = (.+)$", s))
               and m.group(1) in keys and "..." not in m.group(2)]
    return blocks + singles


def test_readme_toml_parses() -> None:
    found = _readme_toml()
    assert sum("\n" in b for b in found) >= 2  # the fenced blocks
    assert any("group_pattern" in s for s in found) and any("label_pattern" in s for s in found)
    for snippet in found:
        try:
            tomllib.loads(snippet)
        except tomllib.TOMLDecodeError as exc:
            raise AssertionError(f"README TOML does not parse: {snippet!r}: {exc}") from None


def test_examples_use_literal_strings_for_patterns() -> None:
    for toml in (ROOT / "examples").glob("*/*.toml"):
        for line in toml.read_text().splitlines():
            if re.match(r"\s*(label|group)_pattern\s*=", line):
                assert "= '" in line, (toml, line)
        tomllib.loads(toml.read_text())


def test_double_quoted_regex_says_use_single_quotes(tmp_path: Path) -> None:
    text = BASE.replace('[data]\nsource = "watch"\n',
                        '[data]\nsource = "csv"\npath = "d"\nlabel_from_folder = true\n'
                        'group_pattern = "(?P<group>subject\\d+)"\n')
    line = assert_user_error(run_cli("run", str(write(tmp_path, text))), "kiloml.toml:6:",
                             "invalid TOML", "single quotes")
    assert "'(?P<group>s\\d+)'" in line


def test_toml_escape_inside_a_pattern_is_refused(tmp_path: Path) -> None:
    """"\\b" is a valid TOML escape (backspace), so the regex silently changes: refused."""
    text = BASE.replace('[data]\nsource = "watch"\n',
                        '[data]\nsource = "csv"\npath = "d"\nlabel_from_folder = true\n'
                        'group_pattern = "\\b(?P<group>s[0-9]+)"\n')
    assert_user_error(run_cli("run", str(write(tmp_path, text))), "kiloml.toml:6:",
                      "[data] group_pattern", "control character", "single quotes")
    literal = text.replace('"\\b(?P<group>s[0-9]+)"', "'\\b(?P<group>s[0-9]+)'")
    assert load_project(write(tmp_path, literal)).config.data.group_pattern == \
        "\\b(?P<group>s[0-9]+)"


# --- strict types: no silent coercion ------------------------------------------------


@pytest.mark.parametrize(("old", "new", "fragments"), [
    ("window_ms = 2000", 'window_ms = "2000"', ("5:", "[window] window_ms", "valid number",
                                                "'2000'")),
    ("window_ms = 2000", "window_ms = true", ("5:", "[window] window_ms", "valid number")),
    ('kind = "decision_tree"', 'kind = "decision_tree"\nmax_depth = 8.0',
     ("9:", "[model] max_depth", "valid integer", "8.0")),
    ('kind = "decision_tree"', 'kind = "decision_tree"\nmax_depth = "8"',
     ("9:", "[model] max_depth", "valid integer")),
    ('kind = "decision_tree"', 'kind = "decision_tree"\nrandom_state = false',
     ("9:", "[model] random_state", "valid integer")),
    ('kind = "decision_tree"', 'kind = "decision_tree"\nmax_features = true',
     ("9:", "[model] max_features", "'sqrt', 'log2' or 'all'", "valid integer")),
    ('name = "x"', "name = 5", ("1:", "name", "valid string")),
    ('source = "watch"', 'source = "watch"\nchannels = ["acc_x", 2]',
     ("4:", "[data] channels item 2", "valid string")),
    ('source = "watch"', 'source = "watch"\nresample = 1', ("4:", "[data] resample",
                                                             "valid boolean")),
    ('source = "watch"', 'source = "watch"\nmin_label_coverage = "0.9"',
     ("4:", "[data] min_label_coverage", "valid number")),
    ("stride_ms = 500", "stride_ms = 500\n[evaluation]\ncv_folds = 3.0",
     ("8:", "[evaluation] cv_folds", "valid integer")),
    ("stride_ms = 500", "stride_ms = 500\n[evaluation]\ntest_groups = [true]",
     ("8:", "[evaluation] test_groups item 1", "valid string")),
    ("stride_ms = 500", "stride_ms = 500\n[evaluation]\ntest_groups = [9.5]",
     ("8:", "[evaluation] test_groups item 1", "valid string")),
    ("stride_ms = 500", "stride_ms = 500\n[target]\nram_budget_bytes = 1e4",
     ("8:", "[target] ram_budget_bytes", "valid integer")),
    ("stride_ms = 500", "stride_ms = 500\n[output]\ndir = 4", ("8:", "[output] dir",
                                                              "valid string")),
    ("stride_ms = 500", "stride_ms = 500\n[decision]\nsmoothing_windows = 2.5",
     ("8:", "[decision] smoothing_windows", "valid integer")),
    ("stride_ms = 500", 'stride_ms = 500\n[[features]]\nstage = "spectral"\nfft_length = 64.0',
     ("9:", "[features.0] fft_length", "valid integer")),
    ("stride_ms = 500", 'stride_ms = 500\n[[features]]\nstage = "spectral"\nlog = 0',
     ("9:", "[features.0] log", "valid boolean")),
    ("stride_ms = 500", 'stride_ms = 500\n[[preprocess]]\nstage = "filter"\ntype = "lowpass"\n'
                        'cutoff_hz = "5"', ("10:", "[preprocess.0] cutoff_hz", "valid number")),
    ("stride_ms = 500", 'stride_ms = 500\n[[preprocess]]\nstage = "decimate"\nfactor = 2.0',
     ("9:", "[preprocess.0] factor", "valid integer")),
    ("stride_ms = 500", "stride_ms = 500\n[augment]\ncopies = true",
     ("8:", "[augment] copies", "valid integer")),
    ("stride_ms = 500", 'stride_ms = 500\n[search]\nfolds = "3"', ("8:", "[search] folds",
                                                                   "valid integer")),
])
def test_wrong_types_are_refused_with_key_and_line(tmp_path: Path, old: str, new: str,
                                                    fragments: tuple[str, ...]) -> None:
    assert old in BASE
    toml = write(tmp_path, BASE.replace(old, new))
    line = assert_user_error(run_cli("run", str(toml)), "kiloml.toml:" + fragments[0],
                             *fragments[1:])
    assert "Input should be" in line and "got" in line


def test_ints_stay_numbers_and_group_names(tmp_path: Path) -> None:
    """What strictness keeps: an int where a float belongs, whole-number group names,
    a count or a fraction for max_features, [low, high] cutoffs given as ints."""
    text = (BASE.replace('kind = "decision_tree"', 'kind = "random_forest"\nmax_features = 3')
            + "[evaluation]\ntest_groups = [9, 10]\n[[preprocess]]\nstage = \"filter\"\n"
              "type = \"bandpass\"\ncutoff_hz = [1, 5]\n")
    c = load_project(write(tmp_path, text)).config
    assert c.window.window_ms == 2000 and isinstance(c.window.window_ms, float)
    assert c.evaluation.test_groups == ["9", "10"]
    assert c.model.max_features == 3 and isinstance(c.model.max_features, int)
    assert c.preprocess[0].cutoff_hz == [1.0, 5.0]
    text = text.replace("max_features = 3", "max_features = 0.5")
    assert load_project(write(tmp_path, text)).config.model.max_features == 0.5


@pytest.mark.parametrize("old, new, fragment", [
    ('stage = "statistics"', "stage = []", "[features.0]"),
    ('kind = "random_forest"', "kind = [1]", "[model] kind"),
    ('stage = "statistics"', "stage = {a = 1}", "[features.0]"),
])
def test_a_stage_or_kind_that_is_not_text(csv_project: CsvProject, old: str, new: str,
                                          fragment: str) -> None:
    # found by the mutation fuzzer: a list where a stage name belongs was a TypeError
    csv_project.set_toml(old, new)
    assert_user_error(run_cli("run", str(csv_project.toml)), "kiloml.toml", fragment)
