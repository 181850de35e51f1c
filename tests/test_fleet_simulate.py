"""`kiloml fleet simulate`: simulated devices run the run's C library compiled for the
host; their records decode, carry the library's model id and a regular uptime, equal the
Python twin's byte for byte, show the injected drifts; the same seed gives the same bytes;
bad input is one line (exit 2) and leaves nothing; ingest + report read the output."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import CsvProject, assert_user_error, run_cli, write_toy_project

from kiloml.monitor import evaluate as ev
from kiloml.persist.pipeline_state import load_pipeline, save_pipeline
from kiloml.telemetry import simulate as sim
from kiloml.telemetry.codec import RECORD_SIZE, TelemetryError, iter_records
from kiloml.telemetry.simulate_twin import twin_records

DAYS = "0.02"  # 1728 s of device time: 28 records a device at 60 s
ARGS = ["--devices", "6", "--drifting", "2", "--days", DAYS, "--seed", "1"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The toy project with a [monitor], run once (no emulator); its library prefixed (the
    driver is written against the kml_ names)."""
    root = tmp_path_factory.mktemp("fleet_sim_run")
    project = CsvProject(root, write_toy_project(root))
    project.set_toml("[target]", '[library]\nprefix = "gesture"\n\n[monitor]\nfeatures = 4'
                     '\n\n[target]')
    result = run_cli("run", str(project.toml), "--no-emulator")
    assert result.exit_code == 0, result.stderr
    return project.out


@pytest.fixture(scope="module")
def fleet(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fleet_sim") / "fleet"
    result = run_cli("fleet", "simulate", str(run_dir), *ARGS, "--out", str(out))
    assert result.exit_code == 0, result.stderr
    assert "6 devices x 0.02 days, 28 records each; drifting: dev-" in result.stdout
    return out


def records(path: Path) -> list[dict]:
    out = []
    for _, _, rec in iter_records(path.read_bytes()):
        assert not isinstance(rec, TelemetryError), rec
        out.append(rec)
    return out


def test_files_truth_and_records(fleet: Path, run_dir: Path) -> None:
    truth = json.loads((fleet / "truth.json").read_text())
    names = [f"dev-{i:03d}" for i in range(6)]
    assert truth["devices"] == names
    assert sorted(p.name for p in fleet.iterdir()) == sorted(
        [".kiloml-output", "truth.json", *(f"{n}.bin" for n in names)])
    assert truth["days"] == 0.02 and truth["seed"] == 1 and truth["record_every_s"] == 60
    assert truth["run"] == str(run_dir.resolve())
    model_id = json.loads((run_dir / "metrics.json").read_text())["library"]["model_id"]
    assert truth["model_id"] == model_id
    assert len(truth["drifting"]) == 2
    defaults = dict(sim.DEFAULT_PERTURBATIONS)
    for d in truth["drifting"]:
        assert set(d) == {"device", "onset_s", "perturbation", "severity"}
        assert d["device"] in names
        assert 0.2 * 1728 <= d["onset_s"] <= 0.7 * 1728
        assert defaults[d["perturbation"]] == d["severity"]
    for name in names:
        assert (fleet / f"{name}.bin").stat().st_size == 28 * RECORD_SIZE
        recs = records(fleet / f"{name}.bin")
        assert [r["uptime_s"] for r in recs] == list(range(60, 28 * 60 + 1, 60))
        assert all(r["model_id"] == model_id and r["n_classes"] == 3 for r in recs)
        windows = [r["windows"] for r in recs]
        assert windows == sorted(windows) and windows[-1] > windows[0] > 0


def test_the_c_equals_the_python_twin(fleet: Path, run_dir: Path) -> None:
    """The records the compiled C wrote equal the monitor twin's on the same samples, for a
    clean device and a drifting one (days of stream, across recording joins)."""
    truth = json.loads((fleet / "truth.json").read_text())
    run = sim.load_run(run_dir)
    plans = sim.plan_fleet(6, 2, truth["samples_per_device"], list(sim.DEFAULT_PERTURBATIONS),
                           1)
    drifting = {d["device"] for d in truth["drifting"]}
    assert {p.name for p in plans if p.drift} == drifting
    clean = next(p for p in plans if p.drift is None)
    drift = next(p for p in plans if p.drift is not None)
    for plan in (clean, drift):
        x = np.concatenate(list(sim.device_chunks(run, plan, truth["samples_per_device"])))
        twin = twin_records(run.pipeline, x, 60, bytes.fromhex(truth["model_id"]))
        assert twin == (fleet / f"{plan.name}.bin").read_bytes(), plan.name


def test_drifting_devices_are_flagged_after_onset(fleet: Path) -> None:
    truth = json.loads((fleet / "truth.json").read_text())
    onsets = {d["device"]: d["onset_s"] for d in truth["drifting"]}
    for name in truth["devices"]:
        flagged = [r["uptime_s"] for r in records(fleet / f"{name}.bin") if r["flags"]]
        if name in onsets:
            assert flagged and flagged[0] > onsets[name], (name, flagged)
        else:  # the toy's clean devices stay inside the training defaults' limits
            assert not flagged, (name, flagged)


def test_same_seed_same_bytes_and_a_previous_output_is_replaced(
        fleet: Path, run_dir: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    result = run_cli("fleet", "simulate", str(run_dir), *ARGS, "--out", str(again),
                     "--jobs", "1")
    assert result.exit_code == 0, result.stderr
    for path in fleet.glob("*.bin"):
        assert (again / path.name).read_bytes() == path.read_bytes(), path.name
    assert json.loads((again / "truth.json").read_text()) == \
        json.loads((fleet / "truth.json").read_text())
    # a previous simulate output is replaced whole; another seed, other devices
    result = run_cli("fleet", "simulate", str(run_dir), "--devices", "2", "--drifting", "1",
                     "--days", "0.002", "--seed", "2", "--out", str(again),
                     "--perturbation", "offset:4")
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in again.glob("*.bin")) == ["dev-000.bin", "dev-001.bin"]
    truth = json.loads((again / "truth.json").read_text())
    assert [(d["perturbation"], d["severity"]) for d in truth["drifting"]] == [("offset", 4.0)]
    assert not list(tmp_path.glob(".again.*"))  # no staging or old folder left


def test_chunked_drifts_follow_the_device_time(run_dir: Path) -> None:
    """A drift applied chunk by chunk: the samples before the onset are the clean ones; the
    deterministic perturbations equal evaluate.gradual on the whole stream at once (ramp:
    the stress ramp from the onset to the last sample); chunk sizes do not matter."""
    run = sim.load_run(run_dir)
    n = 9000
    clean_plan = sim.DevicePlan("d", 0, 5, None)
    whole = np.concatenate(list(sim.device_chunks(run, clean_plan, n)))
    small = np.concatenate(list(sim.device_chunks(run, clean_plan, n, chunk=700)))
    assert np.array_equal(whole, small) and len(whole) == n
    onset, rate = 3100, run.rate_hz
    for name, severity in sim.DEFAULT_PERTURBATIONS:
        plan = dataclasses.replace(clean_plan, drift=sim.Drift(name, severity, onset))
        x = np.concatenate(list(sim.device_chunks(run, plan, n, chunk=700)))
        assert np.array_equal(x[:onset], whole[:onset]), name
        assert not np.array_equal(x[onset + 3000:], whole[onset + 3000:]), name
        assert np.array_equal(x, np.concatenate(list(sim.device_chunks(run, plan, n,
                                                                       chunk=700)))), name
        if name in ("gain", "offset", "clipping"):
            at_once = ev.gradual(whole, name, severity, run.scale, rate, onset,
                                 int(ev.RAMP_S * rate), seed=plan.seed)
            assert np.array_equal(x, at_once), name
        if name == "ramp":
            at_once = ev.gradual(whole, name, severity, run.scale, rate, onset,
                                 int(ev.RAMP_S * rate), seed=plan.seed)
            assert np.allclose(x, at_once, rtol=0, atol=1e-5), name


def test_severities_in_training_units_when_the_run_has_them(run_dir: Path, tmp_path: Path
                                                            ) -> None:
    # a run writes the training samples' scale (monitor.channel_scale)
    assert sim.load_run(run_dir).scale_units == "training"
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    metrics = json.loads((run / "metrics.json").read_text())
    del metrics["monitor"]["channel_scale"]  # a run from before it: the held-out recordings'
    (run / "metrics.json").write_text(json.dumps(metrics))
    assert sim.load_run(run).scale_units == "held-out"
    metrics["monitor"]["channel_scale"] = {"std": [2.0] * 3, "low": [-5.0] * 3,
                                           "high": [5.0] * 3}
    (run / "metrics.json").write_text(json.dumps(metrics))
    loaded = sim.load_run(run)
    assert loaded.scale_units == "training" and list(loaded.scale.std) == [2.0] * 3
    metrics["monitor"]["channel_scale"]["std"] = [1.0, 0.0, 1.0]  # not sound: held-out
    (run / "metrics.json").write_text(json.dumps(metrics))
    assert sim.load_run(run).scale_units == "held-out"


def test_ingest_and_report_read_the_output(fleet: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'fleet.db'}"
    result = run_cli("fleet", "ingest", str(fleet), "--db", db)
    assert result.exit_code == 0, result.stderr
    assert "6 files, 168 records: 168 stored, 0 duplicates; 0 bad" in result.stdout
    out = tmp_path / "fleet.json"
    result = run_cli("fleet", "report", "--db", db, "--out", str(tmp_path / "fleet.html"),
                     "--json", str(out))
    assert result.exit_code == 0, result.stderr
    truth = json.loads((fleet / "truth.json").read_text())
    devices = {d["device"]: d for d in json.loads(out.read_text())["devices"]}
    assert sorted(devices) == truth["devices"]
    alarmed = {name for name, d in devices.items() if d["alarm"]}
    assert alarmed == {d["device"] for d in truth["drifting"]}
    for d in truth["drifting"]:
        assert devices[d["device"]]["first_alarm_s"] > d["onset_s"]


# --- bad input: one line, exit 2, nothing written -----------------------------------------


def simulate(run_dir: Path, out: Path, *extra: str):
    return run_cli("fleet", "simulate", str(run_dir), "--out", str(out), *extra)


@pytest.mark.parametrize(("extra", "fragments"), [
    (["--devices", "3", "--drifting", "4"], ["--drifting", "4 drifting devices, but only 3"]),
    (["--devices", "0", "--drifting", "0"], ["--devices", "0 devices"]),
    (["--drifting", "-1"], ["--drifting", "-1 drifting"]),
    (["--days", "0"], ["--days", "positive number of days"]),
    (["--days", "-2"], ["--days", "positive number of days"]),
    (["--days", "0.0001"], ["--days", "shorter than one record period (60 s)"]),
    (["--record-every", "1.5s"], ["--record-every", "whole number of seconds"]),
    (["--record-every", "soon"], ["--record-every", "is not a duration"]),
    (["--jobs", "0"], ["--jobs", "0 jobs"]),
    (["--perturbation", "gain"], ["--perturbation", "'gain' is not NAME:SEVERITY"]),
    (["--perturbation", "gian:5"], ["--perturbation", "unknown perturbation 'gian'",
                                    "did you mean 'gain'"]),
    (["--perturbation", "rate_mismatch:5"], ["--perturbation", "no gradual form"]),
    (["--perturbation", "gain:lots"], ["--perturbation", "'lots' in 'gain:lots' is not a "
                                       "number"]),
    (["--perturbation", "gain:500"], ["--perturbation", "gain severity 500 is outside its "
                                      "valid range"]),
    (["--perturbation", "gain:0"], ["--perturbation", "leaves the samples unchanged"]),
])
def test_bad_arguments(run_dir: Path, tmp_path: Path, extra: list[str],
                       fragments: list[str]) -> None:
    out = tmp_path / "fleet"
    assert_user_error(simulate(run_dir, out, "--days", "0.01", *extra), *fragments)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_bad_folders(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "fleet"
    assert_user_error(simulate(tmp_path / "nowhere", out), "the run folder not found")
    plain = tmp_path / "plain"
    plain.mkdir()
    assert_user_error(simulate(plain, out), "not a run folder made by kiloml")
    # a run without [monitor]: its pipeline with the monitor taken away
    bare = tmp_path / "bare"
    shutil.copytree(run_dir, bare)
    pipeline = load_pipeline(bare / "pipeline.json")
    save_pipeline(dataclasses.replace(pipeline, monitor=None), bare / "pipeline.json")
    assert_user_error(simulate(bare, out), "no on-device monitor",
                      "add a [monitor] section", "run `kiloml run` again")
    # --out: someone's folder, a file, the run folder itself
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine\n")
    assert_user_error(simulate(run_dir, theirs), "--out", "is not a kiloml output folder")
    assert (theirs / "notes.txt").read_text() == "mine\n"
    assert_user_error(simulate(run_dir, theirs / "notes.txt"), "--out",
                      "exists and is not a folder")
    assert_user_error(simulate(run_dir, run_dir), "--out", "is the run folder")
    assert_user_error(simulate(run_dir, bare), "--out",
                      "is a run folder, not a `kiloml fleet simulate` folder")
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bare", "plain", "theirs"]


def test_an_edited_library_leaves_the_previous_output(run_dir: Path, tmp_path: Path) -> None:
    """The C is generated again from pipeline.json and must equal firmware/ (it is
    compiled and run); an error after the staging folder exists leaves nothing of it and
    the previous output as it was."""
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    out = tmp_path / "fleet"
    ok = simulate(run, out, "--devices", "1", "--drifting", "0", "--days", "0.001")
    assert ok.exit_code == 0, ok.stderr
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    source = run / "firmware" / "gesture_model.c"
    source.write_text(source.read_text() + "\n/* edited */\n")
    assert_user_error(simulate(run, out, "--devices", "2", "--drifting", "1", "--days",
                               "0.001"), "gesture_model.c", "differs from the library")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fleet", "run"]
