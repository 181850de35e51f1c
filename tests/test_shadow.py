"""Shadow / A-B (issue 17 part 5): production and a candidate in one program, the candidate
decided on the same windows, the disagreements counted into kml_shadow_v1 records; the count
is what the two runs' own reference decisions predict, window for window."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_user_error, run_cli, write_toy_project

from kiloml.errors import KilomlError
from kiloml.shadow import glue
from kiloml.shadow.harness import build, run
from kiloml.shadow.record import RECORD_BYTES, ShadowRecordError, decode, encode
from kiloml.verify.combined import member_from_run
from kiloml.verify.reference import REFERENCE_FILE, read_npz

DECISION = """
[decision]
smoothing = "average"
smoothing_windows = 3
on_windows = 2
off_windows = 2
min_margin = 0.2
"""


def toy(root: Path, prefix: str, model: tuple[str, str]) -> Path:
    toml = write_toy_project(root, seconds=20.0)
    text = toml.read_text().replace(*model)
    toml.write_text(text + DECISION + f'\n[library]\nprefix = "{prefix}"\n')
    result = run_cli("run", str(toml), "--no-emulator")
    assert result.exit_code == 0, result.stderr
    return root / "out"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    prod = toy(tmp_path_factory.mktemp("prod"), "prod", ("max_depth = 6", "max_depth = 6"))
    cand = toy(tmp_path_factory.mktemp("cand"), "cand",
               ("n_estimators = 5\nmax_depth = 6", "n_estimators = 2\nmax_depth = 1"))
    return prod, cand


def streams(out: Path) -> tuple[list[np.ndarray], dict]:
    ref = read_npz(out / "verify" / REFERENCE_FILE)
    ends = np.cumsum(ref["stream_lengths"])
    samples = np.split(ref["stream_samples"], ends[:-1])
    return samples, ref


def test_shadow_counts_what_the_references_predict(pair: tuple[Path, Path],
                                                   tmp_path: Path) -> None:
    prod_run, cand_run = pair
    prod = member_from_run(prod_run, tmp_path / "libs").library
    cand = member_from_run(cand_run, tmp_path / "libs").library
    exe = build(prod, cand, tmp_path / "build")
    recordings, prod_ref = streams(prod_run)
    _, cand_ref = streams(cand_run)
    out = run(exe, recordings, tmp_path / "run")
    # the same held-out streams: each model decides in the image as its own run's reference
    assert np.array_equal(out.production, prod_ref["stream_decision"])
    assert np.array_equal(out.candidate, cand_ref["stream_decision"])
    assert np.array_equal(out.recording, prod_ref["stream_recording"])
    differ = prod_ref["stream_decision"] != cand_ref["stream_decision"]
    assert 0 < differ.sum() < len(differ), differ.sum()  # a real candidate: some change
    last = out.records[-1]
    assert last["windows"] == len(differ) and last["disagreements"] == differ.sum()
    labels_differ = prod_ref["stream_labels"] != cand_ref["stream_labels"]
    assert last["label_disagreements"] == labels_differ.sum()
    # per record (one after each recording): the counts since the previous record
    for r, rec in enumerate(out.records):
        here = out.recording == r
        assert rec["record_windows"] == here.sum()
        assert rec["record_disagreements"] == differ[here].sum()
        assert rec["candidate_uncertain"] == (differ & here & (out.candidate < 0)).sum()
        assert rec["production_uncertain"] == (differ & here & (out.production < 0)).sum()
    assert last["production_id"] == prod.info["model_id"]
    assert last["candidate_id"] == cand.info["model_id"]
    assert encode(last) == out.raw_records[-1]  # the Python codec writes the same bytes


def test_record_checks() -> None:
    good = encode({"n_classes": 3, "production_id": "00" * 8, "candidate_id": "11" * 8,
                   "uptime_s": 5, "windows": 10, "disagreements": 2})
    assert len(good) == RECORD_BYTES and decode(good)["disagreements"] == 2
    for bad, why in ((good[:47], "48 bytes"), (good[:10] + b"\xff" + good[11:], "CRC"),
                     (encode({"n_classes": 3, "production_id": "00" * 8,
                              "candidate_id": "11" * 8, "magic": 1})[:0] + b"x" * 48, "CRC")):
        with pytest.raises(ShadowRecordError, match=why):
            decode(bad)


def test_a_candidate_on_other_windows_is_refused() -> None:
    base = {"prefix": "prod", "interface_hash": "0x1", "window_samples": 50,
            "stride_samples": 25, "n_classes": 3}
    for change, why in (({"prefix": "prod"}, "share the prefix"),
                        ({"interface_hash": "0x2"}, "interface"),
                        ({"stride_samples": 10}, "stride_samples")):
        cand = dict(base, prefix="cand") | change
        with pytest.raises(KilomlError, match=why):
            glue.check_pair(base, cand)


@pytest.mark.skipif(shutil.which("qemu-system-arm") is None
                    or shutil.which("arm-none-eabi-gcc") is None,
                    reason="arm-none-eabi-gcc and qemu-system-arm needed (make setup)")
def test_shadow_image_on_qemu_counts_the_same(pair: tuple[Path, Path], tmp_path: Path) -> None:
    from kiloml.shadow.harness import build_firmware, run_firmware
    from kiloml.targets.profiles import load_profile

    prod_run, cand_run = pair
    prod = member_from_run(prod_run, tmp_path / "libs").library
    cand = member_from_run(cand_run, tmp_path / "libs").library
    recordings, prod_ref = streams(prod_run)
    _, cand_ref = streams(cand_run)
    elf = build_firmware(prod, cand, load_profile("cortex-m4f"), "mps2-an386", tmp_path / "mcu")
    out, instructions = run_firmware(elf, recordings, "mps2-an386", tmp_path / "mcu")
    host = run(build(prod, cand, tmp_path / "build"), recordings, tmp_path / "run")
    assert out.raw_records == host.raw_records  # the device's records, byte for byte
    assert np.array_equal(out.production, prod_ref["stream_decision"])
    assert np.array_equal(out.candidate, cand_ref["stream_decision"])
    # a decided window runs both models: far more than a sample that only fills the rings
    starts = np.concatenate([[0], np.cumsum(prod_ref["stream_lengths"])[:-1]])
    decided = starts[prod_ref["stream_recording"]] + prod_ref["stream_last_sample"]
    others = np.delete(instructions, decided)
    assert instructions[decided].min() > 10 * np.median(others)
    print(f"shadow on QEMU: {len(decided)} decided windows, instructions mean "
          f"{instructions[decided].mean():.0f} max {instructions[decided].max()}; "
          f"other samples median {np.median(others):.0f}; "
          f"disagreements {out.records[-1]['disagreements']} of {out.records[-1]['windows']}")


def test_shadow_command_writes_the_package(pair: tuple[Path, Path], tmp_path: Path) -> None:
    prod_run, cand_run = pair
    out = tmp_path / "pkg"
    result = run_cli("shadow", str(prod_run), str(cand_run), "--out", str(out))
    assert result.exit_code == 0, result.stderr
    summary = json.loads((out / "shadow.json").read_text())
    _, prod_ref = streams(prod_run)
    _, cand_ref = streams(cand_run)
    differ = prod_ref["stream_decision"] != cand_ref["stream_decision"]
    assert (summary["held_out_windows"], summary["disagreements"]) == (len(differ),
                                                                      differ.sum())
    assert f"{differ.sum()} of {len(differ)} decisions differ" in result.stdout
    assert (out / "shadow" / "shadow.c").is_file() and (out / "prod" / "prod_model.h").is_file()
    assert (out / "cand" / "cand_model.c").is_file()
    # the same run as both: the prefixes collide, one line; a non-empty --out, one line
    assert_user_error(run_cli("shadow", str(prod_run), str(prod_run), "--out",
                              str(tmp_path / "x")), "share the prefix")
    assert_user_error(run_cli("shadow", str(prod_run), str(cand_run), "--out", str(out)),
                      "not empty")
    assert_user_error(run_cli("shadow", str(tmp_path), str(cand_run), "--out",
                              str(tmp_path / "y")), "not a finished")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_kiloml_diff_predicts_the_shadow_count(pair: tuple[Path, Path], tmp_path: Path
                                               ) -> None:
    """Both versions released, `kiloml diff` on production's held-out streams: its changed
    windows are the count the shadow image writes into its record."""
    prod_run, cand_run = pair
    registry = tmp_path / "reg"
    for run_dir, version in ((prod_run, "1.0.0"), (cand_run, "1.1.0")):
        result = run_cli("release", str(run_dir), "--registry", str(registry), "--version",
                         version, "--allow-no-device-parity",
                         "--project", str(run_dir.parent / "kiloml.toml"))
        assert result.exit_code == 0, result.stderr
    result = run_cli("diff", str(registry), "1.0.0", "1.1.0", "--out", str(tmp_path / "d"))
    assert result.exit_code == 0, result.stderr
    diff = json.loads((tmp_path / "d" / "diff.json").read_text())
    prod = member_from_run(prod_run, tmp_path / "libs").library
    cand = member_from_run(cand_run, tmp_path / "libs").library
    recordings, _ = streams(prod_run)
    shadow = run(build(prod, cand, tmp_path / "build"), recordings, tmp_path / "run")
    last = shadow.records[-1]
    assert diff["n_windows"] == last["windows"]
    assert diff["changed_windows"] == last["disagreements"] > 0
