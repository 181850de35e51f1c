"""[monitor] in a project: fitted in `kiloml run`, in the generated library (kml_decide_latest
updates it; kml_monitor_flags / kml_monitor_snapshot), its flags and telemetry records equal
to the Python twin's on the host and on QEMU for every held-out stream, in `kiloml run` and
`kiloml verify`; a project without it unchanged; bad [monitor] values one line each."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import CsvProject, assert_user_error, run_cli

from kiloml.codegen.library import write_library
from kiloml.persist.pipeline_state import load_pipeline
from kiloml.verify.reference import Reference

MONITOR = """[monitor]
features = 4
snapshot_every = 8

[target]"""


def test_monitor_parity_on_host_and_qemu_in_run_and_verify(csv_project: CsvProject) -> None:
    csv_project.set_toml("[target]", MONITOR)
    result = run_cli("run", str(csv_project.toml))
    assert result.exit_code == 0, result.stderr
    m = json.loads((csv_project.out / "metrics.json").read_text())
    reference = Reference.load(csv_project.out / "verify" / "reference.npz")
    n = len(reference.stream_recording)
    assert n > 0 and reference.stream_monitor_flags is not None
    for where in ("host", "cortex-m4f"):
        mon = m["parity"][where]["streaming"]["monitor"]
        assert mon["flags_equal"] and mon["snapshots_equal"], (where, mon)
        assert mon["n"] == n
        # every recording's 8th, 16th ... window wrote a record
        per_rec = np.bincount(reference.stream_recording)
        assert mon["n_snapshots"] == int((per_rec // 8).sum()) > 0
    assert m["parity"]["cortex-m4f"]["emulated"]
    assert "monitor flags" in result.stdout and "records equal" in result.stdout
    res = m["monitor"]["resources"]["cortex-m4f"]
    assert res["flash_bytes"] > 0 and res["ram_bytes"] > 0
    assert res["instructions_per_update_max"] > 0  # QEMU's count (deterministic)
    # records carry the library's model id
    rec = reference.stream_monitor_records[np.any(reference.stream_monitor_records, axis=1)]
    assert bytes(rec[0, 4:12]).hex() == m["library"]["model_id"]
    pipeline = load_pipeline(csv_project.out / "pipeline.json")
    assert pipeline.monitor is not None and pipeline.monitor_snapshot_every == 8
    firmware = csv_project.out / "firmware"
    assert (firmware / "kml_monitor.c").exists() and (firmware / "kml_monitor.h").exists()
    header = (firmware / "kiloml_model.h").read_text()
    assert "uint16_t kml_monitor_flags(void);" in header
    assert "void kml_monitor_snapshot(uint32_t uptime_s" in header

    again = run_cli("verify", str(csv_project.toml))
    assert again.exit_code == 0, again.stderr
    assert "monitor flags" in again.stdout and "MISMATCH" not in again.stdout

    # a reference whose monitor disagrees with the C: verify says so and fails
    path = csv_project.out / "verify" / "reference.npz"
    arrays = dict(np.load(path))
    arrays["stream_monitor_flags"] = arrays["stream_monitor_flags"] ^ 1
    np.savez_compressed(path, **arrays)
    bad = run_cli("verify", str(csv_project.toml))
    assert bad.exit_code != 0
    assert "monitor MISMATCH (flags differ, records equal, first at window 0)" in bad.stdout


def test_a_project_without_monitor_is_unchanged(csv_project: CsvProject, tmp_path: Path
                                                ) -> None:
    """No monitor: no monitor file, name or pipeline field; and a monitor run's pipeline with
    the monitor taken away generates the library of the run without [monitor] (the same
    files, byte for byte, as before the monitor existed: checked against main by hand)."""
    result = run_cli("run", str(csv_project.toml), "--no-emulator")
    assert result.exit_code == 0, result.stderr
    plain = csv_project.out / "firmware"
    assert not (plain / "kml_monitor.c").exists()
    assert "monitor" not in (plain / "kiloml_model.c").read_text()
    assert "monitor" not in (csv_project.out / "pipeline.json").read_text()
    assert "monitor" not in json.loads((csv_project.out / "metrics.json").read_text())
    info = json.loads((csv_project.out / "metrics.json").read_text())["library"]
    plain_pipeline = load_pipeline(csv_project.out / "pipeline.json")
    assert plain_pipeline.monitor is None
    rebuilt = write_library(plain_pipeline, tmp_path / "rebuilt",
                            created_utc=info["created_utc"])
    assert rebuilt.info["model_id"] == info["model_id"]
    for path in plain.iterdir():
        assert path.read_bytes() == (tmp_path / "rebuilt" / path.name).read_bytes(), path.name

    names = sorted(p.name for p in plain.iterdir())
    csv_project.set_toml("[target]", MONITOR)
    result = run_cli("run", str(csv_project.toml), "--no-emulator")
    assert result.exit_code == 0, result.stderr
    with_monitor = load_pipeline(csv_project.out / "pipeline.json")
    assert with_monitor.monitor is not None
    stripped = write_library(dataclasses.replace(with_monitor, monitor=None),
                             tmp_path / "stripped", created_utc=info["created_utc"])
    assert stripped.info["model_id"] == info["model_id"]
    assert sorted(p.name for p in (tmp_path / "stripped").iterdir()) == names
    for name in names:
        assert (tmp_path / "stripped" / name).read_bytes() == \
            (tmp_path / "rebuilt" / name).read_bytes(), name


def test_a_prefixed_library_names_the_monitor_with_its_prefix(csv_project: CsvProject
                                                               ) -> None:
    csv_project.set_toml("[target]", '[library]\nprefix = "gesture"\n\n' + MONITOR)
    result = run_cli("run", str(csv_project.toml), "--no-emulator")
    assert result.exit_code == 0, result.stderr
    mon = json.loads((csv_project.out / "metrics.json").read_text())["parity"]["host"][
        "streaming"]["monitor"]
    assert mon["flags_equal"] and mon["snapshots_equal"] and mon["n_snapshots"] > 0
    firmware = csv_project.out / "firmware"
    header = (firmware / "gesture_model.h").read_text()
    source = (firmware / "gesture_model.c").read_text()
    assert "uint16_t gesture_monitor_flags(void);" in header
    assert "#define GESTURE_MONITOR 1" in header
    assert "gesture_mo_params" in source and "kml_mo_" not in source + header
    assert "kml_monitor_update(" in source  # the shared runtime keeps its names
    assert (firmware / "kml_monitor.c").exists()


@pytest.mark.parametrize(("setting", "fragments"), [
    ("features = 0", ("features", "greater than or equal to 1")),
    ("alpha = 2.0", ("alpha", "less than or equal to 1")),
    ("range_quantiles = [0.9, 0.1]", ("range_quantiles", "0 <= lo < hi <= 1")),
    ("snapshot_evry = 8", ("snapshot_evry", "did you mean 'snapshot_every'")),
    ('false_alarm_every = "30 days"', ("false_alarm_every",)),
    ("stuck_windows = 0", ("stuck_windows",)),
])
def test_bad_monitor_values_are_one_line(csv_project: CsvProject, setting: str,
                                         fragments: tuple[str, ...]) -> None:
    csv_project.set_toml("[target]", f"[monitor]\n{setting}\n\n[target]")
    assert_user_error(run_cli("run", str(csv_project.toml), "--no-emulator"), "kiloml.toml",
                      *fragments)
    assert not csv_project.out.exists()


def test_a_monitor_over_its_ram_budget_names_budget_and_users(csv_project: CsvProject
                                                              ) -> None:
    csv_project.set_toml("[target]", "[monitor]\nfeatures = 12\nram_budget_bytes = 200\n\n"
                                     "[target]")
    line = assert_user_error(run_cli("run", str(csv_project.toml), "--no-emulator"),
                             "kiloml.toml", "[monitor]", "budget of 200 B", "state 124 B",
                             "12 monitored features", "3 channels")
    assert "228 B of RAM" in line
    assert not csv_project.out.exists()
