"""Every bad input the foundation issue lists: one line naming the file and the line or
field, exit code 2, no traceback, and nothing written to the output folder."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
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


# --- what a recording path can be instead of a file -----------------------------------


def cli_with_timeout(*args: str, seconds: float = 120) -> tuple[int, str]:
    """The installed command in a child process: a read that blocks (a FIFO) fails the
    test by its timeout instead of hanging the suite."""
    exe = Path(sys.executable).with_name("kiloml")
    result = subprocess.run([str(exe), *args], capture_output=True, text=True,
                            timeout=seconds)
    return result.returncode, result.stderr


def test_fifo_recording_is_refused_without_blocking(csv_project: CsvProject) -> None:
    path = csv_project.file("walk", "s2")
    path.unlink()
    os.mkfifo(path)
    code, err = cli_with_timeout("run", str(csv_project.toml), "--no-emulator")
    assert code == 2 and err.count("\n") == 1, err
    assert "s2_rec.csv: matches '**/*.csv' but is a FIFO (named pipe)" in err


def test_fifo_project_file_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "kiloml.toml")
    code, err = cli_with_timeout("run", str(tmp_path))
    assert code == 2 and err.count("\n") == 1, err
    assert "kiloml.toml: is a FIFO (named pipe), not a file" in err


def test_socket_recording(csv_project: CsvProject) -> None:
    path = csv_project.file("walk", "s2")
    path.unlink()
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
        check(csv_project, "s2_rec.csv", "but is a socket, not a file")


def test_device_as_recording_and_as_data_path(csv_project: CsvProject) -> None:
    path = csv_project.file("walk", "s2")
    path.unlink()
    path.symlink_to("/dev/zero")
    check(csv_project, "s2_rec.csv", "but is a device, not a file")
    csv_project.set_toml('path = "data"', 'path = "/dev/null"')
    check(csv_project, "/dev/null", "[data] path", "the data path is a device")


def test_broken_and_looping_symbolic_links(csv_project: CsvProject) -> None:
    path = csv_project.file("walk", "s2")
    path.unlink()
    path.symlink_to("gone.csv")
    check(csv_project, "s2_rec.csv", "is a broken symbolic link (to 'gone.csv'")
    path.unlink()
    loop = path.with_name("s9_rec.csv")
    path.symlink_to(loop.name)
    loop.symlink_to(path.name)
    check(csv_project, "_rec.csv", "is a symbolic link that loops")


def test_folder_link_loop_and_the_same_file_twice(csv_project: CsvProject) -> None:
    up = csv_project.root / "data" / "walk" / "up"
    up.symlink_to("..")
    check(csv_project, "data/walk/up", "a symbolic link loop: it leads back to")
    up.unlink()
    twin = csv_project.root / "data" / "walk" / "s5_rec.csv"
    twin.symlink_to(csv_project.file("idle", "s1"))
    check(csv_project, "s5_rec.csv", "the same file as", "a recording must appear once")


def test_linked_class_folder_is_read(csv_project: CsvProject) -> None:
    """A class folder that is a symbolic link to one elsewhere is followed (pathlib's glob
    skipped it in silence: a class lost)."""
    elsewhere = csv_project.root / "elsewhere"
    (csv_project.root / "data" / "walk").rename(elsewhere)
    (csv_project.root / "data" / "walk").symlink_to(elsewhere)
    result = run_cli("run", str(csv_project.toml), "--no-emulator")
    assert result.exit_code in (0, 1), result.stderr
    metrics = json.loads((csv_project.out / "metrics.json").read_text())
    assert metrics["data"]["class_names"] == ["idle", "shake", "walk"]
    assert metrics["data"]["n_recordings"] == 12


def test_folder_named_like_a_recording(csv_project: CsvProject) -> None:
    (csv_project.root / "data" / "walk" / "s5_rec.csv").mkdir()
    check(csv_project, "s5_rec.csv", "a folder named like a recording matches '**/*.csv'")


def test_unreadable_recording(csv_project: CsvProject) -> None:
    """Permission denied. Root reads everything, so as root the command runs without the
    capabilities that override file permissions (setpriv)."""
    prefix: list[str] = []
    if os.geteuid() == 0:
        caps = "-dac_override,-dac_read_search"
        prefix = [shutil.which("setpriv") or "setpriv", f"--bounding-set={caps}",
                  f"--inh-caps={caps}"]
    csv_project.file("walk", "s2").chmod(0)
    exe = Path(sys.executable).with_name("kiloml")
    result = subprocess.run([*prefix, str(exe), "run", str(csv_project.toml), "--no-emulator"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "s2_rec.csv: is not readable (permission denied)" in result.stderr


def test_empty_data_folder(csv_project: CsvProject) -> None:
    (csv_project.root / "empty").mkdir()
    csv_project.set_toml('path = "data"', 'path = "empty"')
    check(csv_project, "empty", "[data] path", "the data folder is empty")


def test_glob_matching_nothing(csv_project: CsvProject) -> None:
    csv_project.set_toml('path = "data"', 'path = "data"\nglob = "**/*.tsv"')
    check(csv_project, "data", "[data] path", "no files match '**/*.tsv'")


@pytest.mark.parametrize("pattern", ["/etc/*.csv", "../**/*.csv", ""])
def test_glob_outside_the_data_folder(csv_project: CsvProject, pattern: str) -> None:
    csv_project.set_toml('path = "data"', f'path = "data"\nglob = "{pattern}"')
    check(csv_project, "kiloml.toml:6:", "[data] glob", "a pattern inside the data folder")


def test_class_folder_without_recordings(csv_project: CsvProject) -> None:
    (csv_project.root / "data" / "jump").mkdir()
    (csv_project.root / "data" / ".cache").mkdir()  # hidden folders are not classes
    check(csv_project, "data/jump", "the class folder 'jump' holds no file matching "
          "'**/*.csv'")
