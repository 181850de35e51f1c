"""`kiloml diff`: two released versions' C libraries compiled on the host, the same
recordings streamed through both, their decisions compared (kiloml.registry.diff)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_user_error, csv_text, run_cli, signal
from registry_helpers import LONGER_WINDOW, TWO_CHANNELS, WORSE_MODEL, release, toy_variant

from kiloml.decision.layer import UNCERTAIN
from kiloml.registry.contents import Package, read_package
from kiloml.registry.diff import behaviour_diff
from kiloml.registry.recordings import held_out_streams
from kiloml.registry.store import Registry


@dataclass
class Versions:
    registry: Path
    tmp: Path


@pytest.fixture(scope="module")
def versions(toy_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Versions:
    """1.0.0 the toy run; 1.1.0 a worse model (per-channel means only); 1.2.0 a longer
    window at another stride (same channels and rate); 2.0.0 two of the three channels."""
    tmp = tmp_path_factory.mktemp("diff")
    reg = tmp / "reg"
    release(toy_run, reg, "1.0.0")
    release(toy_variant(tmp / "worse", WORSE_MODEL), reg, "1.1.0")
    release(toy_variant(tmp / "window", LONGER_WINDOW), reg, "1.2.0")
    release(toy_variant(tmp / "channels", TWO_CHANNELS), reg, "2.0.0")
    return Versions(reg, tmp)


def package(v: Versions, version: str) -> Package:
    return read_package(Registry.open(v.registry).package_dir(version), version)


def diff_json(v: Versions, a: str, b: str, out: str, *extra: str) -> dict:
    folder = v.tmp / "diffs" / out
    result = run_cli("diff", str(v.registry), a, b, "--out", str(folder), *extra)
    assert result.exit_code == 0, result.stderr
    return json.loads((folder / "diff.json").read_text())


def test_diff_fields_and_transition_matrix(versions: Versions) -> None:
    d = diff_json(versions, "1.0.0", "1.1.0", "worse")
    for key in ("changed_windows", "n_windows", "transitions", "segments", "events",
                "per_class", "per_group", "per_recording", "confidence", "recordings"):
        assert key in d, key
    t = d["transitions"]
    counts = np.array(t["counts"])
    assert t["a"] == t["b"] == ["idle", "shake", "walk", "uncertain"]
    assert counts.sum() == d["n_windows"] == 45  # 3 held-out recordings x 15 windows
    assert d["changed_windows"] == counts.sum() - np.trace(counts) > 0
    assert d["changed_fraction"] == pytest.approx(d["changed_windows"] / d["n_windows"])
    # the changed segments cover exactly the changed decisions, inside their recordings
    assert sum(s["windows"] for s in d["segments"]) == d["changed_windows"]
    for s in d["segments"]:
        assert 0 < s["start_s"] < s["end_s"] <= 8.0 and s["a"] != s["b"]
    assert d["per_group"]["s4"]["changed"] == d["changed_windows"]
    assert sum(c["changed_from"] for c in d["per_class"].values()) == d["changed_windows"]
    assert d["events"]["n_gained"] + d["events"]["n_lost"] > 0
    assert d["confidence"]["b"] < d["confidence"]["a"]  # the worse model is less sure
    # the recordings as the run recorded them (metrics.json held_out_streams)
    names = d["recordings"]["names"]
    assert len(names) == 3 and all(n.endswith("s4_rec.csv") for n in names), names
    assert {s["recording"] for s in d["segments"]} <= set(names)


def test_diff_against_itself_is_empty(versions: Versions) -> None:
    d = diff_json(versions, "1.0.0", "1.0.0", "self")
    assert d["changed_windows"] == 0 and d["segments"] == [] and d["n_windows"] == 45
    assert d["events"]["lost"] == d["events"]["gained"] == []
    assert all(c["shift"] in (0.0, None) for c in d["confidence"]["per_class"].values())


def test_html_has_the_plots_embedded(versions: Versions) -> None:
    diff_json(versions, "1.0.0", "1.1.0", "html")
    text = (versions.tmp / "diffs" / "html" / "diff.html").read_text()
    assert text.count("data:image/png;base64,") == 3  # transitions, confidence, timelines
    assert "Changed segments" in text and "1.0.0" in text and "1.1.0" in text


def test_the_diff_compares_what_the_devices_decide(versions: Versions) -> None:
    """On A's own held-out streams the decisions compared are each package's
    reference.npz stream_decision (Python's twin, which the C matched in the run)."""
    a, b = package(versions, "1.0.0"), package(versions, "1.1.0")
    diff = behaviour_diff(a, b, held_out_streams(a))
    for p, d in ((a, diff.decisions_a), (b, diff.decisions_b)):
        assert np.array_equal(d.decision, p.reference.stream_decision)
        assert np.array_equal(d.sample, p.reference.stream_last_sample)
        assert np.array_equal(d.recording, p.reference.stream_recording)
    k = len(a.pipeline.class_names)
    for side, p in (("a", a), ("b", b)):
        expected = p.reference.stream_decision
        assert np.array_equal(getattr(diff.aligned, side),
                              np.where(expected == UNCERTAIN, k, expected))


def test_other_window_and_stride_aligned_by_time(versions: Versions) -> None:
    a, c = package(versions, "1.0.0"), package(versions, "1.2.0")
    diff = behaviour_diff(a, c, held_out_streams(a))
    s, al = diff.summary, diff.aligned
    assert s["b"]["window_samples"] == 100 and s["b"]["stride_samples"] == 12
    # C decides at samples 99, 111, ... and A at 49, 74, 99, ...: each recording's first
    # two decisions of A come before C has decided
    assert s["unaligned_windows"] == 3 * 2
    ra, rc = a.reference, c.reference
    k = len(a.pipeline.class_names)
    for r in range(3):
        ta = ra.stream_last_sample[ra.stream_recording == r]
        tc = rc.stream_last_sample[rc.stream_recording == r]
        rows = al.recording == r
        assert np.array_equal(al.sample[rows], np.union1d(ta[ta >= tc[0]], tc))
    # at A's own instants A's decisions are its reference's; C's held ones are C's latest
    keep = ra.stream_last_sample >= 99
    assert np.array_equal(al.a[al.a_own], np.where(ra.stream_decision[keep] == UNCERTAIN, k,
                                                   ra.stream_decision[keep]))
    assert np.array(s["transitions"]["counts"]).sum() == s["n_windows"] == len(al)


def write_recordings(folder: Path, header: str = "t,ax,ay,az") -> None:
    for i, label in enumerate(("idle", "walk", "shake")):
        path = folder / label / "s9_rec.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(csv_text(signal(label, 6.0, 500 + i), header))


def test_recordings_folder(versions: Versions) -> None:
    folder = versions.tmp / "new_recordings"
    write_recordings(folder)
    d = diff_json(versions, "1.0.0", "1.1.0", "folder", "--recordings", str(folder))
    assert d["recordings"]["names"] == ["idle/s9_rec.csv", "shake/s9_rec.csv",
                                        "walk/s9_rec.csv"]
    assert d["recordings"]["groups"] == ["s9"] * 3
    assert d["n_windows"] == 3 * 11  # 6 s: windows of 1 s every 0.5 s
    assert np.array(d["transitions"]["counts"]).sum() == d["n_windows"]


def test_unknown_version_or_alias(versions: Versions) -> None:
    out = str(versions.tmp / "bad")
    assert_user_error(run_cli("diff", str(versions.registry), "1.0.0", "9.9.9", "--out", out),
                      "no version 9.9.9")
    assert_user_error(run_cli("diff", str(versions.registry), "production", "1.0.0", "--out",
                              out), "production points at no version")
    assert_user_error(run_cli("diff", str(versions.registry), "newest", "1.0.0", "--out",
                              out), "'newest' is neither a version")


def test_not_a_registry(versions: Versions) -> None:
    assert_user_error(run_cli("diff", str(versions.tmp / "worse"), "1.0.0", "1.1.0", "--out",
                              str(versions.tmp / "bad")), "not a kiloml registry")


def test_recordings_folder_empty_or_with_other_channels(versions: Versions) -> None:
    empty = versions.tmp / "empty"
    empty.mkdir()
    out = str(versions.tmp / "bad")
    assert_user_error(run_cli("diff", str(versions.registry), "1.0.0", "1.1.0",
                              "--recordings", str(empty), "--out", out),
                      "--recordings", "empty")
    other = versions.tmp / "gyro"
    write_recordings(other, header="t,ax,ay,gz")
    line = assert_user_error(run_cli("diff", str(versions.registry), "1.0.0", "1.1.0",
                                     "--recordings", str(other), "--out", out),
                             "--recordings", "az missing")
    assert "the libraries read ax, ay, az" in line
    assert_user_error(run_cli("diff", str(versions.registry), "1.0.0", "1.1.0",
                              "--recordings", str(versions.tmp / "nowhere"), "--out", out),
                      "--recordings", "folder not found")
    short = versions.tmp / "short" / "idle" / "s9_rec.csv"
    short.parent.mkdir(parents=True)
    short.write_text(csv_text(signal("idle", 0.5, 1)))
    assert_user_error(run_cli("diff", str(versions.registry), "1.0.0", "1.1.0",
                              "--recordings", str(short.parent.parent), "--out", out),
                      "no decisions to compare", "the longest 0.5 s", "1.0.0: 1 s")
    fast = versions.tmp / "fast"
    write_recordings(fast)
    for path in fast.glob("*/*.csv"):  # timestamps at twice the rate
        rows = np.loadtxt(path, delimiter=",", skiprows=1)
        rows[:, 0] /= 2
        path.write_text(csv_text(rows))
    assert_user_error(run_cli("diff", str(versions.registry), "1.0.0", "1.1.0",
                              "--recordings", str(fast), "--out", out), "100 Hz")


def test_different_interfaces_on_the_same_samples(versions: Versions) -> None:
    line = assert_user_error(run_cli("diff", str(versions.registry), "1.0.0", "2.0.0", "--out",
                                     str(versions.tmp / "bad")),
                             "different interfaces", "cannot be fed the same samples")
    assert "1.0.0 reads channels ax, ay, az and 2.0.0 reads ax, ay" in line


def test_out_folder_not_made_by_kiloml(versions: Versions) -> None:
    mine = versions.tmp / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me\n")
    assert_user_error(run_cli("diff", str(versions.registry), "1.0.0", "1.1.0", "--out",
                              str(mine)), "--out", "not a kiloml output folder")
    assert (mine / "notes.txt").read_text() == "keep me\n"
    run_folder = versions.tmp / "worse" / "out"  # kiloml's, but a run's
    assert_user_error(run_cli("diff", str(versions.registry), "1.0.0", "1.1.0", "--out",
                              str(run_folder)), "is a run folder")
    assert_user_error(run_cli("diff", str(versions.registry), "1.0.0", "1.1.0", "--out",
                              str(versions.registry)), "--out", "is the registry")
    # a diff folder is replaced by the next diff
    diff_json(versions, "1.0.0", "1.1.0", "again")
    assert diff_json(versions, "1.0.0", "1.0.0", "again")["changed_windows"] == 0


def test_package_with_a_file_missing(versions: Versions, tmp_path: Path) -> None:
    broken = tmp_path / "reg"
    shutil.copytree(versions.registry, broken)
    (Registry.open(broken).package_dir("1.1.0") / "reference.npz").unlink()
    # the package is checked whole before it is read: the missing file is named
    assert_user_error(run_cli("diff", str(broken), "1.0.0", "1.1.0", "--out",
                              str(tmp_path / "d")), "reference.npz",
                      "is listed in the manifest of version 1.1.0 but missing")
