"""Issue 13 item 4 and "nothing half-written": whatever goes wrong reaches the command
line as one line, never a traceback. Bad input exits 2; a bug in kiloml exits 3 with the
traceback in a log file; Ctrl-C exits 130; a write the machine refuses (disk full, a
file-size limit) exits 2 naming the file, and no output folder is left half-written."""

from __future__ import annotations

import os
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kiloml.outputs import MARKER_FILE
from tests.conftest import CsvProject, assert_user_error, run_cli, write_toy_project

ROOT = Path(__file__).parents[1]
KILOML = [sys.executable, "-m", "kiloml.cli"]


def _kiloml(*args: str, cwd: Path | None = None, env: dict | None = None,
            preexec=None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([*KILOML, *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, preexec_fn=preexec,
                          timeout=timeout)


def _with_a_bug(code: str, *args: str, log_dir: Path) -> subprocess.CompletedProcess:
    """The real command line in a child process, with one library function replaced by a
    failing one (a genuine bug stands in for kiloml's own)."""
    script = f"{code}\nimport sys\nfrom kiloml.cli import main\nsys.argv = ['kiloml', " \
             f"{', '.join(map(repr, args))}]\nmain()\n"
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "KILOML_LOG_DIR": str(log_dir)}, timeout=300)


def test_a_bug_is_one_line_with_the_traceback_in_a_log(tmp_path: Path) -> None:
    result = _with_a_bug("import kiloml.targets.profiles as p\n"
                         "def broken():\n    return 1 // 0\n"
                         "p.profile_names = broken", "targets", log_dir=tmp_path)
    assert result.returncode == 3, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    m = re.fullmatch(r"kiloml: internal error: ZeroDivisionError: integer division or modulo "
                     r"by zero \(details in (.+)\)", lines[0])
    assert m, lines[0]
    log = Path(m.group(1))
    assert log.parent == tmp_path
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "def broken" not in text
    assert "in broken" in text and "ZeroDivisionError" in text
    assert "command: kiloml targets" in text


def test_a_bug_inside_a_subcommand_group_is_caught_too(tmp_path: Path) -> None:
    model = ROOT / "tests" / "nn" / "fixtures" / "mlp_int8.tflite"
    result = _with_a_bug("import kiloml.nn.load as load\n"
                         "def broken(path):\n    raise KeyError('tensor')\n"
                         "load.load_model = broken", "model", "info", str(model),
                         log_dir=tmp_path)
    assert result.returncode == 3, result.stderr
    assert result.stderr.startswith("kiloml: internal error: KeyError: 'tensor' (details in ")
    assert len(result.stderr.strip().splitlines()) == 1


def test_bad_input_stays_exit_2_in_a_real_process(tmp_path: Path) -> None:
    result = _kiloml("run", str(tmp_path / "missing.toml"))
    assert result.returncode == 2
    assert result.stderr == f"kiloml: error: {tmp_path / 'missing.toml'}: project file not " \
                            f"found\n"


def test_a_closed_pipe_ends_quietly() -> None:
    r = subprocess.run(f"{sys.executable} -m kiloml.cli targets | head -c 10 >/dev/null",
                       shell=True, capture_output=True, text=True, timeout=120)
    assert r.stderr == ""


def test_ctrl_c_leaves_nothing_half_written(tmp_path: Path) -> None:
    """SIGINT in the middle of a run: exit 130, one line, the previous output folder
    intact, no staging folder left."""
    toml = write_toy_project(tmp_path)
    out = tmp_path / "out"
    assert _kiloml("run", str(toml), "--no-emulator").returncode == 0
    before = (out / "metrics.json").read_bytes()
    proc = subprocess.Popen([*KILOML, "run", str(toml)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until the run writes into its staging folder
        staging = [p for p in tmp_path.iterdir() if ".partial-" in p.name]
        if staging and (staging[0] / "firmware").exists():
            break
        time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("the run never reached its staging folder")
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines() == [
        "kiloml: interrupted; nothing was left half-written"], stderr
    assert (out / "metrics.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "kiloml.toml", "out"]


def _file_size_limit(limit_bytes: int):
    def apply() -> None:
        # a write past the limit fails with EFBIG instead of killing the process
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
    return apply


def test_a_file_size_limit_is_one_line_and_leaves_no_folder(csv_project: CsvProject) -> None:
    result = _kiloml("run", str(csv_project.toml), "--no-emulator",
                     preexec=_file_size_limit(64 * 1024))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert re.fullmatch(r"kiloml: error: \S+: file too large \(a file-size limit\); nothing "
                        r"was left half-written", lines[0]), lines[0]
    assert sorted(p.name for p in csv_project.root.iterdir()) == ["data", "kiloml.toml"]


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 1 MB tmpfs (needs root and a kernel that lets the sandbox mount)."""
    where = tmp_path / "disk"
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def test_a_full_disk_is_one_line_and_leaves_no_folder(small_disk: Path,
                                                      csv_project: CsvProject) -> None:
    csv_project.set_toml('dir = "out"', f'dir = "{small_disk / "out"}"')
    # fill most of the disk so the run's output cannot fit
    (small_disk / "filler").write_bytes(b"\0" * (1024 * 1024 - 96 * 1024))
    result = _kiloml("run", str(csv_project.toml), "--no-emulator")
    line = assert_user_error(type("R", (), {"exit_code": result.returncode,
                                            "stderr": result.stderr,
                                            "stdout": result.stdout})())
    assert "no space left on the device" in line, line
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]


def test_interrupt_and_internal_error_in_process(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    import kiloml.targets.profiles as profiles

    def interrupted() -> list[str]:
        raise KeyboardInterrupt

    monkeypatch.setattr(profiles, "profile_names", interrupted)
    result = run_cli("targets")
    assert result.exit_code == 130
    assert result.stderr == "kiloml: interrupted; nothing was left half-written\n"
    monkeypatch.setenv("KILOML_LOG_DIR", str(tmp_path))

    def bug() -> list[str]:
        raise RuntimeError("line one\nline two")

    monkeypatch.setattr(profiles, "profile_names", bug)
    result = run_cli("targets")
    assert result.exit_code == 3
    assert result.stderr.startswith("kiloml: internal error: RuntimeError: line one line two "
                                    "(details in ")
    assert len(list(tmp_path.glob("internal-error-*.log"))) == 1


def test_marker_is_written_before_anything_else(csv_project: CsvProject) -> None:
    assert run_cli("run", str(csv_project.toml), "--no-emulator").exit_code == 0
    assert (csv_project.out / MARKER_FILE).is_file()


@pytest.mark.parametrize("args, fragments", [
    (["stress", "--copies", "abc"], ["kiloml stress:", "--copies", "(see 'kiloml stress --help')"]),
    (["runn"], ["No such command 'runn'", "Did you mean 'run'?"]),
    (["--bogus"], ["No such option: --bogus"]),
    (["model", "compile", "m.tflite"], ["kiloml model compile:", "Missing option '--target'"]),
    (["model", "info"], ["Missing argument 'model'"]),
    (["check-data", "--strict", "x", "y"], ["unexpected extra argument(s) (y)"]),
])
def test_a_command_line_that_does_not_parse_is_one_line(args: list[str],
                                                        fragments: list[str]) -> None:
    for result in (run_cli(*args), _kiloml(*args)):
        code = getattr(result, "exit_code", None)
        code = result.returncode if code is None else code
        assert code == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("kiloml: error: "), lines[0]
        for fragment in fragments:
            assert fragment in lines[0], (fragment, lines[0])


def test_ctrl_c_during_verify_keeps_the_earlier_verify(tmp_path: Path) -> None:
    toml = write_toy_project(tmp_path)
    assert _kiloml("run", str(toml)).returncode == 0
    verify = tmp_path / "out" / "verify"
    before = (verify / "cortex-m4f" / "instructions_per_window.npy").read_bytes()
    metrics = (tmp_path / "out" / "metrics.json").read_bytes()
    proc = subprocess.Popen([*KILOML, "verify", str(toml)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        if [p for p in verify.iterdir() if p.name.startswith(".cortex-m4f.partial-")]:
            break
        time.sleep(0.02)
    else:
        proc.kill()
        pytest.fail("the verify never made its staging folder")
    time.sleep(0.5)  # into the build
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert (verify / "cortex-m4f" / "instructions_per_window.npy").read_bytes() == before
    assert (tmp_path / "out" / "metrics.json").read_bytes() == metrics
    assert sorted(p.name for p in verify.iterdir()) == ["cortex-m4f", "host", "reference.npz"]
