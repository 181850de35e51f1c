"""[monitor] false_alarm_every in `kiloml run`: the limits calibrated on the held-out
devices' clean streams reach the C library (parity holds with them), metrics.json holds
monitor.calibration and monitor.evaluation, the report a monitor section with its plots;
too little held-out data for the budget is one line naming how much it needs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from conftest import CsvProject, assert_user_error, run_cli, write_activity_project

from kiloml.evaluate.perturb import ChannelScale
from kiloml.monitor import delays, evaluate
from kiloml.monitor.twin import Monitor
from kiloml.persist.pipeline_state import load_pipeline
from kiloml.verify.reference import Reference


def monitor_toml(every: str | None, evaluate: bool = True) -> str:
    return ("[monitor]\nfeatures = 4\nsnapshot_every = 16\n"
            + (f'false_alarm_every = "{every}"\n' if every else "")
            + ("" if evaluate else "evaluate = false\n") + "\n[target]")


def test_too_little_held_out_data_is_one_line(csv_project: CsvProject) -> None:
    csv_project.set_toml("[target]", monitor_toml("30d"))
    line = assert_user_error(run_cli("run", str(csv_project.toml), "--no-emulator"),
                             "[monitor] false_alarm_every: '30d' (5184000 windows at 0.5 s)",
                             "cannot be calibrated on", "clean held-out windows",
                             "needs at least 51840 windows (7.2 h)")
    text = csv_project.toml.read_text().splitlines()
    number = int(line.split("kiloml.toml:")[1].split(":")[0])
    assert text[number - 1].startswith("false_alarm_every")
    assert not (csv_project.root / "out").exists()  # nothing half-written


def test_calibrated_limits_reach_the_c_and_are_evaluated(tmp_path: Path) -> None:
    # the held-out subject s4 is 12 minutes of device time
    toml = write_activity_project(tmp_path, {"s1": 3, "s2": 3, "s3": 3, "s4": 12})
    project = CsvProject(tmp_path, toml)
    project.set_toml("[target]", monitor_toml("2h"))
    result = run_cli("run", str(toml), "--no-emulator")
    assert result.exit_code == 0, result.stderr
    out = tmp_path / "out"
    m = json.loads((out / "metrics.json").read_text())
    mon = m["monitor"]
    cal = mon["calibration"]
    assert cal["false_alarm_every"] == "2h" and cal["budget_windows"] == 14400
    assert cal["devices"] == ["s4"] and cal["clean_windows"] > 1000
    lo, hi = cal["arl_interval_windows"]
    assert lo < 2 * 14400 < hi  # the estimate at the limits: SAFETY x the budget, inside
    thresholds = mon["params"]["thresholds"]
    assert thresholds["source"].startswith("calibrated: estimated mean run length")
    assert thresholds["ood_limit"] == cal["limits"]["ood_limit"]
    pipeline = load_pipeline(out / "pipeline.json")
    assert pipeline.monitor.thresholds.source == thresholds["source"]
    # the C holds the calibrated limits: its flags equal the twin's on the held-out stream
    par = m["parity"]["host"]["streaming"]["monitor"]
    assert par["flags_equal"] and par["snapshots_equal"]
    # the evaluation's streams are the device's: the twin on evaluate.stream_of of the
    # held-out recording gives the flags the C gave in verification, window for window
    reference = Reference.load(out / "verify" / "reference.npz")
    s = evaluate.stream_of(pipeline, reference.stream_samples)
    steps = Monitor(pipeline.monitor).run(s.features, s.channel_variance, s.smoothed,
                                          s.decisions, s.uncertain)
    assert np.array_equal(steps.flags, reference.stream_monitor_flags)
    # the dense onsets' fast path (only the windows a drift touches) gives the delay the
    # whole drifted stream gives
    scale = ChannelScale(*(np.asarray(mon["channel_scale"][k]) for k in ("std", "low", "high")))
    base = delays.clean_device(pipeline, pipeline.monitor, reference.stream_samples, s)
    rate = pipeline.input_rate_hz
    for pert, sev, share in (("offset", 2.0, 0.2), ("clipping", 0.25, 0.4), ("gain", 20.0, 0.3)):
        onset = int(len(reference.stream_samples) * share)
        y = evaluate.gradual(reference.stream_samples, pert, sev, scale, rate, onset,
                             int(evaluate.RAMP_S * rate))
        whole = evaluate.stream_of(pipeline, y)
        flags = evaluate.monitor_detector(pipeline.monitor)(whole)
        ends = np.arange(len(flags)) * pipeline.stride_samples + pipeline.window_samples
        onset_w = int(np.searchsorted(ends, onset + 1))
        horizon = onset_w + int(delays.HORIZON_S / 0.5)
        expected = evaluate.delay(flags[:horizon], onset_w, 0.5)
        assert delays.drift_delay(pipeline, pipeline.monitor, base, y, onset) == expected
    # the clean held-out devices' telemetry trend values, for the fleet report's reference
    ref = mon["reference"]
    assert set(ref) == {"top_score_p50", "drift_z", "ood_score", "out_of_range_rate"}
    assert 0 < ref["top_score_p50"] <= 1 and 0 <= ref["out_of_range_rate"] < 0.5
    ev = mon["evaluation"]
    assert ev["devices"] == ["s4"] and ev["false_alarm_every"] == "2h"
    names = ev["detectors"]
    assert names[:3] == ["kiloml monitor (calibrated)", "kiloml monitor (training defaults)",
                         "do-nothing"] and "ADWIN (river defaults)" in names
    summary = ev["summary"]
    assert summary["do-nothing"]["clean_alarms"] == 0
    drifts = summary["kiloml monitor (calibrated)"]["drift"]
    # the first onset and the dense ones (12 min: 4 min of onsets every 15 s)
    assert len(drifts) == 14 and all(d["streams"] == 17 for d in drifts)
    baseline = summary["do-nothing"]["drift"]
    assert all(d["streams"] == 1 and d["detected"] == 0 for d in baseline)  # the first
    strong_offset = next(d for d in drifts if d["perturbation"] == "offset" and
                         d["severity"] == 2.0)
    assert strong_offset["detected"] == 17  # two training sd: from every onset
    assert ev["leave_one_device_out"] == []  # one held-out device: nothing to leave out
    assert [t["what"] for t in ev["timelines"]] == ["clean", "offset 2 from 240 s"]
    report = (out / "report.html").read_text()
    part = report[report.index("id='monitor'"):]
    part = part[:part.index("</section>")]
    assert "Alarm limits from the false-alarm budget" in part
    assert part.count("data:image/png;base64,") == 2  # the alarm timeline, delay vs severity
    assert "Detection delay of gradual drifts" in part


def test_evaluate_false_without_a_budget_adds_nothing(csv_project: CsvProject) -> None:
    csv_project.set_toml("[target]", monitor_toml(None, evaluate=False))
    result = run_cli("run", str(csv_project.toml), "--no-emulator")
    assert result.exit_code == 0, result.stderr
    mon = json.loads((csv_project.root / "out" / "metrics.json").read_text())["monitor"]
    assert "calibration" not in mon and "evaluation" not in mon
    assert mon["params"]["thresholds"]["source"].startswith("training-distribution defaults")
