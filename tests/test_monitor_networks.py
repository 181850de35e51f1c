"""The monitor of a neural network: the energy score of its logits as the OOD input
(kml_monitor_energy / _s8 against kiloml.monitor.energy, bit for bit on hostile logits, on
the host and QEMU; the polynomials' accuracy), kml_monitor_update_ood against the twin, and
in a project: an MLP on features (energy) and a CNN on the raw window (channel means and
variances + energy), flags and records equal on the host and QEMU in `kiloml run` and
`kiloml verify` (and `kiloml fleet simulate`'s C records equal to the twin's); a
false-alarm budget calibrates on a network project, and its evaluation runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import CsvProject, run_cli, write_activity_project, write_toy_project

from kiloml.codegen.nn_planner import Buffer, MemoryPlan
from kiloml.errors import KilomlError
from kiloml.evaluate.perturb import ChannelScale
from kiloml.monitor import FLAGS, Monitor, MonitorConfig, delays, fit_monitor
from kiloml.monitor import evaluate as ev
from kiloml.monitor import harness as mh
from kiloml.monitor.energy import EXP2_MIN, energies, exp2
from kiloml.monitor.project import fit_for_run
from kiloml.monitor.signals import channel_moments, channel_moments_many, log2_many
from kiloml.nn.graph import Graph, Quantization, Tensor
from kiloml.nn.logits import Logits, LogitsError, dequantize, find_logits, survive
from kiloml.persist.pipeline_state import load_pipeline
from kiloml.project import MonitorSection
from kiloml.telemetry import simulate as sim
from kiloml.telemetry.simulate_twin import twin_records
from kiloml.verify.reference import Reference

F32 = np.float32
BIG = F32(3.4028235e38)
TREE = '[model]\nkind = "random_forest"\nn_estimators = 5\nmax_depth = 6\n'
MLP = '[model]\nkind = "mlp"\nhidden = [16]\nepochs = 10\nvalidation_groups = 1\n'
CNN = ('[model]\nkind = "cnn1d"\nfilters = [8, 8]\nepochs = 10\nlearning_rate = 0.01\n'
       'validation_groups = 1\n')
# alpha 1 and a narrow range: the running signals are the window's, so flags are raised and
# the records' OOD field is each window's energy (a parity that can fail)
MONITOR = ('[monitor]\nfeatures = 4\nsnapshot_every = 8\nalpha = 1.0\n'
           'range_quantiles = [0.3, 0.7]\nevaluate = false\n\n[target]')
# measured (float32 evaluation against float64 numpy): exp2's relative error at most 1.79e-7
# on [-126, 0]; log2's absolute error at most 2.85e-5 on [1, 2) (the polynomial) and 3.21e-5
# over all normal floats (plus the rounding of exponent + polynomial: half an ulp of the
# result); the energy within 2.0e-5 of float64 logsumexp for logits within +-20 (the log2's
# error times ln 2: the sum of exponentials lies in [1, classes])
EXP2_REL_MAX, LOG2_ABS_MAX, ENERGY_ABS_MAX = 2.0e-7, 3.3e-5, 2.5e-5


def hostile_logits() -> np.ndarray:
    return np.array([
        [0, 0, 0, 0], [5, 5, 5, 5], [1e38, 0, 0, 0], [-1e38, -1e38, -1e38, -1e38],
        [BIG, BIG, -BIG, 0], [np.inf, 0, 0, 0], [-np.inf] * 4, [np.nan, 1, 2, 3],
        [np.nan] * 4, [1e-45, -1e-45, 0.0, -0.0], [88, 89, 90, -200], [-100, -50, -130, -127],
        [-1e30, 0, 1e-30, -87.5], [1e4, 1e4 - 1, 1e4 - 200, 3]], F32)


@pytest.fixture(scope="module")
def energy_qemu(tmp_path_factory: pytest.TempPathFactory) -> mh.QemuMonitor:
    return mh.build_qemu(tmp_path_factory.mktemp("energy_qemu"), harness=mh.ENERGY_HARNESS)


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.all(a.view(np.uint32) == b.view(np.uint32)))


def test_energy_equals_the_c_bit_for_bit_on_hostile_logits(tmp_path: Path,
                                                            energy_qemu: mh.QemuMonitor) -> None:
    exe = mh.build_host(tmp_path / "host", harness=mh.ENERGY_HARNESS)
    x = hostile_logits()
    want = energies(x)
    assert same(mh.run_energy_host(exe, tmp_path / "h", x), want)
    got, counts = mh.run_energy_qemu(energy_qemu, tmp_path / "q", x)
    assert same(got, want) and len(counts) == len(x)
    # all equal: -(l + ln 4); one huge / all very negative: clamped to -+1e30; a NaN never
    # wins the maximum and adds nothing; all NaN or -inf: the 1e30 end
    assert abs(float(want[0]) + np.log(4.0)) < 2e-5 and abs(float(want[1]) + 5 + np.log(4.0)) < 2e-5
    assert want[2] == -F32(1e30) and want[3] == F32(1e30) and want[6] == F32(1e30)
    assert abs(float(want[7]) + float(np.log(np.exp([1.0, 2.0, 3.0]).sum()))) < 2e-5
    assert np.isfinite(want).all()
    # a single class: the energy is minus the logit
    one = np.array([[0.0], [7.25], [-3.5], [1e38]], F32)
    assert same(mh.run_energy_host(exe, tmp_path / "h1", one), energies(one))
    assert np.array_equal(energies(one)[:3], -one[:3, 0])
    # int8 logits as the library reads them from the arena: scale x (q - zero point)
    rng = np.random.default_rng(16)
    q = np.concatenate([rng.integers(-128, 128, (300, 7)), np.full((1, 7), -128),
                        np.full((1, 7), 127), [[127, -128, -128, -128, -128, -128, -128]]]
                       ).astype(np.int8)
    logits = Logits(0, "int8", float(F32(0.0371)), -9, 7, True)
    want = energies(dequantize(q, logits))
    assert same(mh.run_energy_host(exe, tmp_path / "h8", q, logits.scale, -9), want)
    got, counts = mh.run_energy_qemu(energy_qemu, tmp_path / "q8", q, logits.scale, -9)
    assert same(got, want)
    assert 0 < counts.max() < 700  # instructions per energy of 7 int8 logits (measured ~459)


def test_polynomials_against_numpy() -> None:
    t = np.concatenate([np.linspace(-126, 0, 400_001, dtype=F32),
                        -np.logspace(-30, 2, 2000).astype(F32), [F32(0.0), F32(-0.0)]])
    e = exp2(t).astype(np.float64)
    exact = np.exp2(t.astype(np.float64))
    rel = np.abs(e - exact) / exact
    assert rel.max() < EXP2_REL_MAX
    assert exp2(np.array([0.0, -0.0], F32)).tolist() == [1.0, 1.0]  # the max term: exactly 1
    assert exp2(np.array([EXP2_MIN - F32(0.5), -np.inf, np.nan], F32)).tolist() == [0, 0, 0]
    x = np.concatenate([np.geomspace(1.2e-38, 3e38, 200_001).astype(F32),
                        np.linspace(1, 2, 100_001, dtype=F32)])
    err = np.abs(log2_many(x).astype(np.float64) - np.log2(x.astype(np.float64)))
    assert err.max() < LOG2_ABS_MAX
    rng = np.random.default_rng(0)
    logits = (rng.normal(size=(20_000, 6)) * rng.uniform(0.1, 8, (20_000, 1))).astype(F32)
    logits = np.clip(logits, -20, 20)
    ref = -np.log(np.exp(logits.astype(np.float64)).sum(axis=1))
    assert np.abs(energies(logits) - ref).max() < ENERGY_ABS_MAX


def test_channel_moments_and_update_ood_match_the_c(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    w = rng.normal(size=(40, 25, 3)).astype(F32) * F32(3) + F32(1)
    many = channel_moments_many(w)
    assert same(many[7], channel_moments(w[7]))
    assert same(channel_moments(np.roll(w[3], 4, axis=0), start_row=4), many[3])
    # a monitor of channel statistics and the energy, the C's update_ood against the twin
    train = channel_moments_many(rng.normal(size=(600, 25, 3)).astype(F32))
    sm = rng.dirichlet(np.full(4, 0.4), size=600).astype(F32)
    energy_train = rng.normal(-3, 0.5, 600).astype(F32)
    p = fit_monitor(train, train[:, 3:], MonitorConfig(), rng.random(6), n_classes=4,
                    smoothed_train=sm, inputs="channels", energy_train=energy_train,
                    names=[f"s{i}" for i in range(6)])
    assert p.energy and p.inputs == "channels" and p.energy_offset < -3.5
    n = 300
    feats = channel_moments_many((rng.normal(size=(n, 25, 3)) * 1.5).astype(F32))
    energy = rng.normal(-3, 0.5, n).astype(F32)
    energy[100:200] += np.linspace(0, 6, 100, dtype=F32)  # drifting out of distribution
    energy[250:260] = [1e30, -1e30, 0, 1e30, 1e30, -1e30, 3e38, -3e38, 0, 1e-30]
    s = mh.Stream(feats, feats[:, 3:], rng.dirichlet(np.full(4, 0.4), size=n).astype(F32),
                  rng.integers(-1, 4, n), rng.random(n) < 0.2,
                  np.arange(n, dtype=np.uint32), energy)
    m = Monitor(p)
    steps = m.run(s.features, s.channel_variance, s.smoothed, s.decisions, s.uncertain, s.ood)
    assert (steps.flags & FLAGS["OOD"]).any()
    twin = Monitor(p)
    records = []
    for i in range(n):
        twin.update(s.features[i], s.channel_variance[i], s.smoothed[i], int(s.decisions[i]),
                    bool(s.uncertain[i]), s.ood[i])
        if (i + 1) % 50 == 0:
            records.append(twin.snapshot(bytes(8), int(s.uptime_s[i])))
    host = mh.run_host(mh.build_host(tmp_path / "h"), p, s, bytes(8), 50, tmp_path / "h")
    qemu = mh.run_qemu(mh.build_qemu(tmp_path / "q"), p, s, bytes(8), 50, tmp_path / "q")
    for out in (host, qemu):
        assert np.array_equal(out.flags, steps.flags)
        assert np.array_equal(out.returned, steps.flags)
        assert same(out.signals, steps.signals) and out.records == records
    assert 0 < qemu.instructions.max() < 1000  # kml_monitor_update_ood, 6 of 6 inputs
    with pytest.raises(ValueError, match="energy"):
        Monitor(p).update(s.features[0], s.channel_variance[0], s.smoothed[0], 0, False)


def network_project(root: Path, model: str, raw_window: bool) -> CsvProject:
    project = CsvProject(root, write_toy_project(root))
    toml = project.toml.read_text().replace(TREE, model).replace("cv_folds = 3",
                                                                  "cv_folds = 0")
    if raw_window:
        toml = toml.replace('[[features]]\nstage = "statistics"\n', "")
    project.toml.write_text(toml.replace("[target]", MONITOR))
    return project


@pytest.mark.parametrize(("model", "raw_window"), [(MLP, False), (CNN, True)],
                         ids=["mlp-features-energy", "cnn-raw-window-channels-energy"])
def test_network_monitor_parity_in_run_and_verify(tmp_path: Path, model: str,
                                                  raw_window: bool) -> None:
    project = network_project(tmp_path, model, raw_window)
    result = run_cli("run", str(project.toml))
    assert result.exit_code == 0, result.stderr
    m = json.loads((project.out / "metrics.json").read_text())
    params = m["monitor"]["params"]
    assert params["ood"] == "energy"
    assert params["inputs"] == ("channels" if raw_window else "features")
    assert params["fit"]["importance"] == "ANOVA F across the classes"  # no importances
    if raw_window:  # k of the 3 channels' means and variances
        assert len(params["index"]) == 4 and max(params["index"]) < 6
        assert all(n.startswith(("mean(", "variance(")) for n in params["names"])
    reference = Reference.load(project.out / "verify" / "reference.npz")
    n = len(reference.stream_recording)
    for where in ("host", "cortex-m4f"):
        mon = m["parity"][where]["streaming"]["monitor"]
        assert mon["flags_equal"] and mon["snapshots_equal"], (where, mon)
        assert mon["n"] == n and mon["n_snapshots"] > 0 and mon["windows_flagged"] > 0
    # the records' OOD field is the window's energy less the offset (alpha 1), Q8.8: it
    # varies, so the C's energy from the arena is the twin's
    rec = reference.stream_monitor_records[np.any(reference.stream_monitor_records, axis=1)]
    ood = rec[:, 40].astype(np.uint16) | (rec[:, 41].astype(np.uint16) << 8)
    assert len(np.unique(ood)) > 1
    res = m["monitor"]["resources"]["cortex-m4f"]
    assert res["flash_bytes"] > 0 and 0 < res["instructions_per_update_max"] < 1500
    source = (project.out / "firmware" / "kiloml_model.c").read_text()
    assert "kml_monitor_update_ood(" in source and "kml_monitor_energy_s8(" in source
    assert ("kml_monitor_channel_moments(" in source) == raw_window
    assert "kml_monitor_update(" not in source
    pipeline = load_pipeline(project.out / "pipeline.json")
    assert pipeline.monitor.energy and pipeline.monitor.inputs == params["inputs"]
    assert pipeline.monitor.energy_offset == params["energy_offset"]
    # logits the energy cannot read (not one per class here) are one line, located
    train = np.arange(len(reference.features))
    with pytest.raises(KilomlError, match="energy score cannot read this network's logits") \
            as info:
        fit_for_run(MonitorSection(), pipeline.model, reference.features, reference.windows,
                    train, None, 4, reference.features.shape[1], project.toml)
    assert info.value.where == "[monitor]" and "one value per class (4)" in info.value.message
    again = run_cli("verify", str(project.toml))
    assert again.exit_code == 0, again.stderr
    assert "monitor flags" in again.stdout and "MISMATCH" not in again.stdout
    if raw_window:  # kiloml fleet simulate: the compiled C's records are the twin's
        fleet = tmp_path / "fleet"
        done = run_cli("fleet", "simulate", str(project.out), "--devices", "2", "--drifting",
                       "1", "--days", "0.005", "--seed", "1", "--out", str(fleet))
        assert done.exit_code == 0, done.stderr
        truth = json.loads((fleet / "truth.json").read_text())
        run = sim.load_run(project.out)
        n = truth["samples_per_device"]
        for plan in sim.plan_fleet(2, 1, n, list(sim.DEFAULT_PERTURBATIONS), 1):
            x = np.concatenate(list(sim.device_chunks(run, plan, n)))
            twin = twin_records(run.pipeline, x, 60, bytes.fromhex(truth["model_id"]))
            assert twin == (fleet / f"{plan.name}.bin").read_bytes(), plan.name


def test_a_false_alarm_budget_calibrates_on_a_network(tmp_path: Path) -> None:
    """The raw-window CNN (channel statistics + energy) on the 12 held-out minutes: the
    limits are calibrated and the C holds them; the evaluation's streams are the device's
    and its drift delays those of the whole drifted stream."""
    toml = write_activity_project(tmp_path, {"s1": 3, "s2": 3, "s3": 3, "s4": 12})
    project = CsvProject(tmp_path, toml)
    text = toml.read_text().replace(TREE, CNN.replace("epochs = 10", "epochs = 4"))
    text = text.replace('[[features]]\nstage = "statistics"\n', "").replace(
        "cv_folds = 3", "cv_folds = 0")
    toml.write_text(text.replace("[target]", '[monitor]\nfeatures = 4\nsnapshot_every = 16\n'
                                             'false_alarm_every = "2h"\n\n'
                                             "[target]"))
    result = run_cli("run", str(toml), "--no-emulator")
    assert result.exit_code == 0, result.stderr
    mon = json.loads((project.out / "metrics.json").read_text())["monitor"]
    cal = mon["calibration"]
    assert cal["budget_windows"] == 14400 and cal["devices"] == ["s4"]
    assert cal["gumbel"]["ood"]["scale"] > 0  # the energy's running mean was calibrated
    assert mon["params"]["thresholds"]["source"].startswith("calibrated")
    assert mon["params"]["ood"] == "energy" and mon["params"]["inputs"] == "channels"
    assert 0 < mon["reference"]["top_score_p50"] <= 1
    report = (project.out / "report.html").read_text()
    part = report[report.index("id='monitor'"):]
    names = ", ".join(mon["params"]["names"])
    assert names.startswith(("mean(", "variance(")) and names in part
    assert "energy of the network" in part  # the OOD score row
    out = json.loads((project.out / "metrics.json").read_text())["parity"]["host"]
    assert out["streaming"]["monitor"]["flags_equal"]
    # the held-out stream through evaluate.stream_of gives the flags the C gave
    pipeline = load_pipeline(project.out / "pipeline.json")
    reference = Reference.load(project.out / "verify" / "reference.npz")
    s = ev.stream_of(pipeline, reference.stream_samples)
    assert s.ood is not None and s.features.shape[1] == 6
    flags = Monitor(pipeline.monitor).run(s.features, s.channel_variance, s.smoothed,
                                          s.decisions, s.uncertain, s.ood).flags
    assert np.array_equal(flags, reference.stream_monitor_flags)
    # the evaluation ran on the network's streams: the dense onsets' fast path (only the
    # windows a drift touches) gives the delay the whole drifted stream gives
    summary = mon["evaluation"]["summary"]["kiloml monitor (calibrated)"]
    assert len(summary["drift"]) == 14 and all(d["streams"] == 17 for d in summary["drift"])
    scale = ChannelScale(*(np.asarray(mon["channel_scale"][k]) for k in ("std", "low", "high")))
    base = delays.clean_device(pipeline, pipeline.monitor, reference.stream_samples, s)
    rate = pipeline.input_rate_hz
    for pert, sev, share in (("offset", 2.0, 0.2), ("gain", 50.0, 0.3)):
        onset = int(len(reference.stream_samples) * share)
        y = ev.gradual(reference.stream_samples, pert, sev, scale, rate, onset,
                       int(ev.RAMP_S * rate))
        whole = ev.monitor_detector(pipeline.monitor)(ev.stream_of(pipeline, y))
        ends = np.arange(len(whole)) * pipeline.stride_samples + pipeline.window_samples
        onset_w = int(np.searchsorted(ends, onset + 1))
        expected = ev.delay(whole[:onset_w + int(delays.HORIZON_S / 0.5)], onset_w, 0.5)
        assert delays.drift_delay(pipeline, pipeline.monitor, base, y, onset) == expected


def int8_tensor(graph: Graph, name: str, shape: tuple[int, ...], dtype: str = "int8") -> int:
    quant = Quantization.per_tensor(0.1, -3) if dtype == "int8" else None
    return graph.add_tensor(Tensor(name, shape, dtype, quant))


def test_which_tensor_is_the_logits_and_whether_it_survives() -> None:
    g = Graph([], [], [], [], name="g")
    x, l0, p, y = (int8_tensor(g, "x", (1, 4)), int8_tensor(g, "l", (1, 3)),
                   int8_tensor(g, "p", (1, 3)), int8_tensor(g, "y", (1, 3), "float32"))
    g.add_op("RELU", [x], [l0])
    g.add_op("SOFTMAX", [l0], [p])
    g.add_op("DEQUANTIZE", [p], [y])
    g.inputs, g.outputs = [x], [y]
    found = find_logits(g, 3)  # through the DEQUANTIZE to the softmax's input
    assert (found.index, found.dtype, found.softmax, found.zero_point) == (l0, "int8", True, -3)
    g.outputs = [l0]  # no softmax: the output is the logits
    assert find_logits(g, 3).index == l0 and not find_logits(g, 3).softmax
    with pytest.raises(LogitsError, match="one value per class"):
        find_logits(g, 4)
    # the arena holds the logits after the last op unless a later buffer is laid over them
    logits, later = Buffer(f"t{l0}", 4, 0, 1, [l0]), Buffer(f"t{y}", 12, 2, 3, [y])
    plan = MemoryPlan({l0: 0, y: 4}, {}, 16, 16, "s", {}, [], [logits, later])
    assert survive(plan, l0)
    plan.offsets[y] = 0
    assert not survive(plan, l0)
