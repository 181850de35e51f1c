"""Every bad input the foundation issue lists: one line naming the file and the line or
field, exit code 2, no traceback, and nothing written to the output folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import CsvProject, assert_user_error, csv_text, run_cli, signal


def run(project: CsvProject) -> str:
    return str(project.toml)


def check(project: CsvProject, *fragments: str) -> str:
    line = assert_user_error(run_cli("run", run(project)), *fragments)
    assert not project.out.exists(), "the output folder must not be created on an error"
    leftovers = [p.name for p in project.root.iterdir() if p.name.startswith(".out")]
    assert leftovers == [], leftovers
    return line


def test_missing_project_file(tmp_path: Path) -> None:
    assert_user_error(run_cli("run", str(tmp_path / "nope.toml")), "nope.toml",
                      "project file not found")


def test_missing_data_path(csv_project: CsvProject) -> None:
    csv_project.set_toml('path = "data"', 'path = "missing"')
    check(csv_project, "missing", "[data] path", "not found")


def test_missing_data_file(csv_project: CsvProject) -> None:
    csv_project.set_toml('path = "data"', 'path = "data/walk/s9_rec.csv"')
    check(csv_project, "s9_rec.csv", "not found")


def test_empty_csv(csv_project: CsvProject) -> None:
    csv_project.file("walk", "s2").write_text("")
    check(csv_project, "s2_rec.csv", "empty")


def test_header_only_csv(csv_project: CsvProject) -> None:
    csv_project.file("walk", "s2").write_text("t,ax,ay,az\n")
    check(csv_project, "s2_rec.csv", "no data rows")


def test_non_numeric_cell(csv_project: CsvProject) -> None:
    path = csv_project.file("walk", "s2")
    lines = path.read_text().splitlines()
    cells = lines[5].split(",")
    cells[2] = "abc"
    lines[5] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    check(csv_project, "s2_rec.csv:6:", "column 'ay'", "'abc' is not a number")


def test_empty_cell(csv_project: CsvProject) -> None:
    path = csv_project.file("idle", "s1")
    lines = path.read_text().splitlines()
    cells = lines[3].split(",")
    cells[1] = ""
    lines[3] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    check(csv_project, "s1_rec.csv:4:", "column 'ax'", "empty")


def test_nan_sample(csv_project: CsvProject) -> None:
    path = csv_project.file("shake", "s3")
    lines = path.read_text().splitlines()
    cells = lines[10].split(",")
    cells[3] = "nan"
    lines[10] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    check(csv_project, "s3_rec.csv:11:", "column 'az'", "NaN")


def test_inf_sample(csv_project: CsvProject) -> None:
    path = csv_project.file("shake", "s3")
    lines = path.read_text().splitlines()
    cells = lines[7].split(",")
    cells[1] = "-inf"
    lines[7] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    check(csv_project, "s3_rec.csv:8:", "column 'ax'", "not a finite sample")


def test_wrong_number_of_columns(csv_project: CsvProject) -> None:
    path = csv_project.file("walk", "s1")
    lines = path.read_text().splitlines()
    lines[20] = lines[20] + ",0.5"
    path.write_text("\n".join(lines) + "\n")
    check(csv_project, "s1_rec.csv:21:", "expected 4 columns", "found 5")


def test_timestamps_not_increasing(csv_project: CsvProject) -> None:
    path = csv_project.file("idle", "s2")
    rows = signal("idle", 8.0, 99)
    rows[30, 0] = rows[28, 0]
    path.write_text(csv_text(rows))
    check(csv_project, "s2_rec.csv:32:", "column 't'", "not after the previous one")


def test_rate_off_declared(csv_project: CsvProject) -> None:
    path = csv_project.file("idle", "s2")
    rows = signal("idle", 8.0, 99)
    rows[:, 0] *= 1.07  # timestamps of a 46.7 Hz recording
    path.write_text(csv_text(rows))
    check(csv_project, "s2_rec.csv", "column 't'", "off the declared sample_rate_hz = 50")


def test_label_column_missing(csv_project: CsvProject) -> None:
    csv_project.set_toml("label_from_folder = true", 'label_column = "activity"')
    check(csv_project, "_rec.csv:1:", "label_column 'activity' is not in the header")


def test_class_without_training_windows(csv_project: CsvProject) -> None:
    # Only subject s4 (the test group) has a "jump" recording.
    path = csv_project.root / "data" / "jump" / "s4_rec.csv"
    path.parent.mkdir()
    path.write_text(csv_text(signal("shake", 8.0, 5)))
    check(csv_project, "kiloml.toml", "class 'jump' has no training windows")


def test_window_longer_than_recording(csv_project: CsvProject) -> None:
    path = csv_project.file("walk", "s3")
    path.write_text(csv_text(signal("walk", 0.5, 3)))
    check(csv_project, "s3_rec.csv", "25 samples", "a window needs 50 samples")


def test_unknown_target(csv_project: CsvProject) -> None:
    csv_project.set_toml('name = "cortex-m4f"', 'name = "cortex-m4x"')
    line = check(csv_project, "kiloml.toml:28:", "unknown target 'cortex-m4x'")
    assert "did you mean 'cortex-m4f'" in line


def test_misspelled_key(csv_project: CsvProject) -> None:
    csv_project.set_toml("window_ms = 1000", "windw_ms = 1000")
    check(csv_project, "kiloml.toml:12:", "[window] unknown key 'windw_ms'",
          "did you mean 'window_ms'?")


def test_misspelled_top_level_key(csv_project: CsvProject) -> None:
    csv_project.set_toml('name = "toy"', 'name = "toy"\nmodle = 3')
    check(csv_project, "kiloml.toml:2:", "unknown key 'modle'", "did you mean 'model'?")


def test_misspelled_feature_key(csv_project: CsvProject) -> None:
    csv_project.set_toml('stage = "statistics"', 'stage = "statistics"\nstatistic = ["mean"]')
    check(csv_project, "kiloml.toml:17:", "unknown key 'statistic'",
          "did you mean 'statistics'?")


def test_output_folder_cannot_be_written(csv_project: CsvProject) -> None:
    blocker = csv_project.root / "blocker"
    blocker.write_text("a file where a folder should be")
    csv_project.set_toml('dir = "out"', 'dir = "blocker/out"')
    assert_user_error(run_cli("run", str(csv_project.toml)), "blocker/out",
                      "output folder cannot be written")
    assert blocker.read_text() == "a file where a folder should be"


def test_invalid_toml(csv_project: CsvProject) -> None:
    csv_project.set_toml("window_ms = 1000", "window_ms = = 1000")
    check(csv_project, "kiloml.toml:12:", "invalid TOML")


def test_bad_value(csv_project: CsvProject) -> None:
    csv_project.set_toml("window_ms = 1000", "window_ms = -5")
    check(csv_project, "kiloml.toml:12:", "[window] window_ms", "greater than 0")


def test_console_script_exit_code_and_no_traceback(csv_project: CsvProject) -> None:
    """The installed `kiloml` command, not only the in-process runner."""
    csv_project.set_toml("window_ms = 1000", "windw_ms = 1000")
    exe = Path(sys.executable).with_name("kiloml")
    result = subprocess.run([str(exe), "run", str(csv_project.toml)], capture_output=True,
                            text=True)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "did you mean 'window_ms'?" in result.stderr
