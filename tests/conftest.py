"""Shared helpers: small real-format projects written into a temporary folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from kiloml.cli import app

RATE_HZ = 50.0
CLASSES = {"idle": 0.0, "walk": 2.0, "shake": 7.0}  # dominant frequency in Hz
SUBJECTS = ["s1", "s2", "s3", "s4"]

PROJECT_TOML = """\
name = "{name}"

[data]
source = "csv"
path = "data"
sample_rate_hz = 50
timestamp_column = "t"
label_from_folder = true
group_pattern = "(?P<group>s\\\\d+)_"

[window]
window_ms = 1000
stride_ms = 500

[[features]]
stage = "statistics"

[model]
kind = "random_forest"
n_estimators = 5
max_depth = 6

[evaluation]
test_groups = ["s4"]
cv_folds = 3

[target]
name = "cortex-m4f"

[output]
dir = "out"
"""


def signal(label: str, seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE_HZ)) / RATE_HZ
    f = CLASSES[label]
    base = np.sin(2 * np.pi * f * t) if f else np.zeros_like(t)
    ax = base + 0.2 * rng.standard_normal(len(t))
    ay = 0.5 * base + 0.2 * rng.standard_normal(len(t)) + 1.0
    az = 0.1 * rng.standard_normal(len(t)) - 0.3 * (f > 0)
    return np.column_stack([t, ax, ay, az])


def csv_text(rows: np.ndarray, header: str = "t,ax,ay,az") -> str:
    lines = [header] + [",".join(f"{v:.6f}" for v in row) for row in rows]
    return "\n".join(lines) + "\n"


@dataclass
class CsvProject:
    root: Path
    toml: Path

    @property
    def out(self) -> Path:
        return self.root / "out"

    def file(self, label: str, subject: str) -> Path:
        return self.root / "data" / label / f"{subject}_rec.csv"

    def set_toml(self, old: str, new: str) -> None:
        text = self.toml.read_text()
        assert old in text, old
        self.toml.write_text(text.replace(old, new))


def write_toy_project(root: Path, seconds: float = 8.0, rate_scale: int = 1) -> Path:
    """Three activities x four subjects, one CSV recording each with timestamps (50 Hz, or
    50 x rate_scale Hz); returns the kiloml.toml (output folder root/out)."""
    seed = 0
    for label in CLASSES:
        for subject in SUBJECTS:
            path = root / "data" / label / f"{subject}_rec.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            rows = signal(label, seconds, seed)
            rows[:, 0] /= rate_scale
            path.write_text(csv_text(rows))
            seed += 1
    toml = root / "kiloml.toml"
    toml.write_text(PROJECT_TOML.format(name="toy"))
    return toml


def write_activity_project(root: Path, minutes: dict[str, float], segment_s: float = 10.0
                           ) -> Path:
    """One CSV per subject with a label column: the toy activities in segments of
    ``segment_s`` in random order (a device's day is many activities, not three blocks)."""
    (root / "data").mkdir(parents=True)
    for k, (subject, m) in enumerate(minutes.items()):
        rng = np.random.default_rng(k)
        parts, labels = [], []
        for i in range(int(m * 60 / segment_s)):
            label = list(CLASSES)[rng.integers(len(CLASSES))]
            rows = signal(label, segment_s, seed=1000 * k + i)
            rows[:, 0] += i * segment_s
            parts.append(rows)
            labels += [label] * len(rows)
        rows = np.concatenate(parts)
        lines = ["t,ax,ay,az,label"] + [",".join(f"{v:.6f}" for v in r) + f",{lab}"
                                        for r, lab in zip(rows, labels, strict=True)]
        (root / "data" / f"{subject}_day.csv").write_text("\n".join(lines) + "\n")
    toml = root / "kiloml.toml"
    toml.write_text(PROJECT_TOML.format(name="activity").replace(
        "label_from_folder = true", 'label_column = "label"'))
    return toml


@pytest.fixture
def csv_project(tmp_path: Path) -> CsvProject:
    """The toy project: three activities x four subjects, 8 s each."""
    return CsvProject(tmp_path, write_toy_project(tmp_path))


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


def run_cli(*args: str) -> CliResult:
    result = CliRunner().invoke(app, list(args), prog_name="kiloml")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return CliResult(result.exit_code, result.stdout, result.stderr)


def assert_user_error(result: CliResult, *fragments: str) -> str:
    """Exit code 2, one line on stderr holding every fragment, no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.stderr, result.stdout)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    line = lines[0]
    assert line.startswith("kiloml: error: "), line
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    return line


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The toy project run once per test module (no emulator): a finished run to work on."""
    toml = write_toy_project(tmp_path_factory.mktemp("toy_run"))
    result = run_cli("run", str(toml), "--no-emulator")
    assert result.exit_code == 0, result.stderr
    return toml
