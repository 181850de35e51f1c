"""The benchmark scripts run and write what the README promises (in a temporary folder),
so `make bench` cannot rot unnoticed. Their figures are not asserted: speed is measured in
benchmarks, not tests; agreement with scikit-learn and parity are."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(script: str, out: Path) -> None:
    env = dict(os.environ, KILOML_BENCH_RESULTS=str(out))
    result = subprocess.run([sys.executable, str(ROOT / "bench" / script)], env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.slow
def test_foundation_and_trees_benchmarks(tmp_path: Path) -> None:
    run("run.py", tmp_path)
    assert (tmp_path / "foundation.md").exists()
    run("trees.py", tmp_path)
    rows = json.loads((tmp_path / "trees.json").read_text())
    ours = [r for r in rows if r["tool"] == "kiloml"]
    assert {r["dataset"] for r in ours} == {"digits", "watch features"}
    assert all(r["agreement_with_reference"] == 1.0 for r in ours)
    assert all(r["agreement_with_sklearn"] == 1.0 for r in ours if "int16" not in r["variant"])
    assert any("int16" in r["variant"] for r in ours)
    for key in ("instructions_mean", "instructions_max", "flash_bytes", "ram_bytes"):
        assert all(key in r for r in rows)


@pytest.mark.slow
def test_dsp_benchmark(tmp_path: Path) -> None:
    run("dsp.py", tmp_path)
    rows = json.loads((tmp_path / "dsp.json").read_text())
    assert {(r["block"], r["tool"]) for r in rows} >= {
        ("rfft", "kiloml"), ("rfft", "CMSIS-DSP"), ("mfcc frame", "kiloml"),
        ("mfcc frame", "CMSIS-DSP")}
    fft = [r for r in rows if r["block"] == "rfft"]
    assert all(r["max_rel_error_vs_numpy"] < 1e-5 for r in fft)  # both FFTs are right
    assert all(r["target"] == "cortex-m4f" and r["instructions"] > 0 for r in rows)


@pytest.mark.slow
def test_monitor_benchmark(tmp_path: Path) -> None:
    run("monitor.py", tmp_path)
    result = json.loads((tmp_path / "monitor.json").read_text())
    assert result["target"] == "cortex-m4f" and len(result["sizes"]) == 6
    for row in result["streams"]:
        for where in ("host", "qemu"):
            parity = row[where]
            assert parity["windows_equal"] == parity["windows"] > 0
            assert parity["records_equal"] == parity["records"] > 0
        assert row["instructions_max"] > 0
