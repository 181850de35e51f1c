"""`kiloml run` end to end: recordings in, verified C library, metrics and report out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import CsvProject, run_cli, signal
from scipy.io import wavfile

ROOT = Path(__file__).resolve().parents[1]


def metrics_of(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


def assert_verified(m: dict) -> None:
    host = m["parity"]["host"]
    assert host["n"] == m["evaluation"]["n_test_windows"] > 0
    assert host["decisions_equal"] == host["n"] and host["all_decisions_equal"]
    assert host["max_abs_score_diff"] <= 1e-6
    assert host["features_bit_exact"]
    stream = host["streaming"]
    assert stream["windows_equal"] and stream["all_decisions_equal"]
    assert stream["decisions_equal"] == stream["n_windows"] > 0


def test_csv_project_end_to_end(csv_project: CsvProject) -> None:
    result = run_cli("run", str(csv_project.toml))
    assert result.exit_code == 0, result.stderr
    out = csv_project.out
    for name in ("firmware/kiloml_model.h", "firmware/kiloml_model.c", "firmware/kml_config.h",
                 "firmware/kml_statistics.c", "firmware/kml_trees.c", "metrics.json",
                 "report.html", "pipeline.json", "pipeline.npz"):
        assert (out / name).is_file(), name
    m = metrics_of(out)
    ev = m["evaluation"]
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "confusion_matrix",
                "per_group_accuracy", "n_test_windows", "test_groups", "cross_validation"):
        assert key in ev, key
    assert ev["test_groups"] == ["s4"] and list(ev["per_group_accuracy"]) == ["s4"]
    assert ev["n_test_windows"] == 3 * 15  # 3 recordings of 8 s, 1 s windows every 0.5 s
    assert ev["accuracy"] > 0.9  # the toy classes are far apart
    assert ev["cross_validation"]["folds"] == 3
    assert_verified(m)
    r = m["resources"]["cortex-m4f"]
    assert r["flash_bytes"] > 0 and r["ram_bytes"] >= 4 * 50 * 3  # the ring buffer at least
    assert r["within_budget"] and r["status"] == "ok"
    assert "test accuracy" in result.stdout and "decisions equal" in result.stdout
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 4


def test_rerun_replaces_the_output_folder(csv_project: CsvProject) -> None:
    assert run_cli("run", str(csv_project.toml)).exit_code == 0
    stale = csv_project.out / "stale.txt"
    stale.write_text("from an earlier run")
    assert run_cli("run", str(csv_project.toml)).exit_code == 0
    assert not stale.exists() and (csv_project.out / "metrics.json").exists()
    assert [p.name for p in csv_project.root.iterdir() if p.name.startswith(".out")] == []


def test_over_budget_fails_but_keeps_the_report(csv_project: CsvProject) -> None:
    csv_project.set_toml('name = "cortex-m4f"', 'name = "cortex-m4f"\nflash_budget_bytes = 1000')
    result = run_cli("run", str(csv_project.toml))
    assert result.exit_code == 1
    r = metrics_of(csv_project.out)["resources"]["cortex-m4f"]
    assert r["status"] == "fail" and not r["within_budget"]
    assert "over the budget of 1000 B" in r["notes"][0]


def test_budget_headroom_warning(csv_project: CsvProject) -> None:
    assert run_cli("run", str(csv_project.toml)).exit_code == 0
    flash = metrics_of(csv_project.out)["resources"]["cortex-m4f"]["flash_bytes"]
    budget = int(flash / 0.8)  # the library uses 80% of it: above the 70% headroom line
    csv_project.set_toml('name = "cortex-m4f"',
                         f'name = "cortex-m4f"\nflash_budget_bytes = {budget}')
    assert run_cli("run", str(csv_project.toml)).exit_code == 0
    r = metrics_of(csv_project.out)["resources"]["cortex-m4f"]
    assert r["status"] == "warn" and r["within_budget"]
    assert "above 70%" in r["notes"][0]


def test_per_sample_labels_stream_through_mixed_windows(tmp_path: Path) -> None:
    """Continuous recordings with a label column: the streaming API sees every window,
    including the mixed and unlabeled ones training dropped."""
    for i, subject in enumerate(["s1", "s2", "s3"]):
        parts, labels = [], []
        for j, label in enumerate(["idle", "walk", "shake", "walk"]):
            rows = signal(label, 4.0, 10 * i + j)
            parts.append(rows[:, 1:])
            labels += [label] * len(rows)
        samples = np.concatenate(parts)
        labels[:10] = [""] * 10
        t = np.arange(len(samples)) / 50.0
        lines = ["t,ax,ay,az,activity"] + [
            f"{t[k]:.4f},{samples[k, 0]:.5f},{samples[k, 1]:.5f},{samples[k, 2]:.5f},"
            f"{labels[k]}" for k in range(len(samples))]
        (tmp_path / "data").mkdir(exist_ok=True)
        (tmp_path / "data" / f"{subject}.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "kiloml.toml").write_text(
        'name = "cont"\n[data]\nsource = "csv"\npath = "data"\ntimestamp_column = "t"\n'
        'label_column = "activity"\ngroup_pattern = "(?P<group>s\\\\d)"\n'
        '[window]\nwindow_ms = 1000\nstride_ms = 250\n[model]\nkind = "extra_trees"\n'
        'n_estimators = 7\n[evaluation]\ntest_groups = ["s3"]\ncv_folds = 0\n'
        '[output]\ndir = "out"\n')
    result = run_cli("run", str(tmp_path / "kiloml.toml"))
    assert result.exit_code == 0, result.stderr
    m = metrics_of(tmp_path / "out")
    assert_verified(m)
    stream = m["parity"]["host"]["streaming"]
    assert stream["n_windows"] == (16 * 50 - 50) // 12 + 1  # every window of the recording
    assert stream["n_windows"] > m["evaluation"]["n_test_windows"]
    assert m["evaluation"]["windows_dropped_low_label_coverage"] > 0


def test_wav_project(tmp_path: Path) -> None:
    rate = 2000
    t = np.arange(rate) / rate
    rng = np.random.default_rng(0)
    for label, f in (("low", 50.0), ("high", 400.0)):
        for subject in range(4):
            d = tmp_path / "data" / label
            d.mkdir(parents=True, exist_ok=True)
            tone = 0.5 * np.sin(2 * np.pi * f * t + subject) + 0.05 * rng.standard_normal(rate)
            wavfile.write(d / f"u{subject}.wav", rate, (tone * 32767).astype(np.int16))
    (tmp_path / "kiloml.toml").write_text(
        'name = "tones"\n[data]\nsource = "wav"\npath = "data"\nlabel_from_folder = true\n'
        'group_pattern = "(?P<group>u\\\\d)"\n[window]\nwindow_ms = 100\nstride_ms = 50\n'
        '[model]\nkind = "decision_tree"\n[evaluation]\ntest_groups = ["u3"]\ncv_folds = 3\n'
        '[output]\ndir = "out"\n')
    result = run_cli("run", str(tmp_path / "kiloml.toml"))
    assert result.exit_code == 0, result.stderr
    m = metrics_of(tmp_path / "out")
    assert m["data"]["channels"] == ["ch0"] and m["evaluation"]["accuracy"] == 1.0
    assert_verified(m)


@pytest.mark.slow
def test_watch_example_is_the_demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = run_cli("run", str(ROOT / "examples" / "watch" / "kiloml.toml"))
    assert result.exit_code == 0, result.stderr
    m = metrics_of(tmp_path / "build" / "watch")
    assert m["data"]["n_recordings"] == 140 and len(m["data"]["class_names"]) == 7
    ev = m["evaluation"]
    assert ev["test_groups"] == ["9", "10"]
    assert ev["accuracy"] > 0.7  # held-out subjects; 7 classes, chance is 0.14
    assert set(ev["train_groups"]) == {str(i) for i in range(1, 9)}
    assert_verified(m)
    assert m["resources"]["cortex-m4f"]["within_budget"]
    assert "build/watch/report.html" in result.stdout
