"""bench/nn.py runs and writes what it promises (one small fixture, no example training, in
a temporary folder), so the network benchmark cannot rot unnoticed. Its figures are not
asserted against the goals: speed is measured in benchmarks, not tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KEYS = ("kiloml_arena_bytes", "tflm_arena_bytes", "kiloml_host_instructions",
        "tflm_host_instructions", "m4_instructions_per_mac", "kiloml_flash_bytes",
        "weights_bytes")


@pytest.mark.slow
def test_nn_benchmark_on_one_fixture(tmp_path: Path) -> None:
    env = dict(os.environ, KILOML_BENCH_RESULTS=str(tmp_path))
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "nn.py"), "--models",
                             "mlp_int8", "--skip-example", "--inferences", "5"], env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = json.loads((tmp_path / "nn.json").read_text())
    assert [r["model"] for r in rows] == ["mlp_int8"]
    row = rows[0]
    assert row["errors"] == []
    for key in KEYS:
        assert isinstance(row[key], int | float) and row[key] > 0, (key, row[key])
    assert row["host_bit_exact_vs_tflm"] == "5/5"  # same inputs, same int8 outputs
    assert row["kiloml_code_flash_bytes"] < row["kiloml_flash_bytes"]
    assert {la["op"] for la in row["layers"]} == {"FULLY_CONNECTED"}
    md = (tmp_path / "nn.md").read_text()
    assert "| mlp_int8 |" in md and "tflite-micro" in md and "valgrind" in md
