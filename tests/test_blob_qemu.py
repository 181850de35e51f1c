"""Parameter blobs on the emulated Cortex-M4F (QEMU mps2-an386): an updatable v1 library
takes v2's blob and then decides exactly as v2's reference; every faulty or hostile blob is
refused with its reason while the running model keeps deciding exactly as before."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from blob_helpers import blob_of, expected, make_run, reference_windows, repack, section_data
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kiloml.blob import format as fmt
from kiloml.blob import harness as bh
from kiloml.codegen.identity import created_in
from kiloml.codegen.library import write_library
from kiloml.persist.pipeline_state import load_pipeline

pytestmark = pytest.mark.skipif(shutil.which("qemu-system-arm") is None or
                                shutil.which("arm-none-eabi-gcc") is None,
                                reason="needs qemu-system-arm and arm-none-eabi-gcc")
CODE = {name: i for i, name in enumerate(fmt.REASONS)}
N_WINDOWS = 45


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("blob_runs")
    return {name: make_run(root, name) for name in ("v1", "v2", "other")}


@pytest.fixture(scope="module")
def windows(runs: dict[str, Path]) -> np.ndarray:
    w = reference_windows(runs["v2"])[:N_WINDOWS]
    assert np.array_equal(w, reference_windows(runs["v1"])[:N_WINDOWS])  # the same data
    return w


def write_key(path: Path) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return key


def assert_decides(out: bh.Decisions, want) -> None:
    assert np.array_equal(out.labels, want.labels)
    assert np.array_equal(out.decisions, want.decisions)
    assert np.array_equal(out.scores.view(np.uint32), want.scores.view(np.uint32))


def assert_same(a: bh.Decisions, b: bh.Decisions) -> None:
    assert np.array_equal(a.labels, b.labels) and np.array_equal(a.decisions, b.decisions)
    assert np.array_equal(a.scores.view(np.uint32), b.scores.view(np.uint32))


def hostile_blobs(runs: dict[str, Path], v2: bytes) -> list[tuple[str, bytes, int]]:
    """(what, blob, misalign) refused by v1's library, each with its reason."""
    flipped = bytearray(v2)
    flipped[fmt.HEADER_BYTES + 200] ^= 0x10
    left = np.frombuffer(section_data(v2, fmt.LEFT), "<u2").copy()
    left[0] = 60000  # a child outside its tree (or a leaf past the leaf table)
    head = np.frombuffer(section_data(v2, fmt.HEAD), "<u2").copy()
    head[1] = (head[1] & 0xC000) | 0x3FFF  # a feature index past the features
    golden = bytearray(section_data(v2, fmt.GOLDEN))
    n, f = np.frombuffer(bytes(golden[:8]), "<i4")
    at = 8 + 4 * int(n) * int(f)  # the first golden label
    golden[at:at + 4] = np.array([(golden[at] + 1) % 3], "<i4").tobytes()
    forest = bytearray(section_data(v2, fmt.FOREST))
    forest[0:4] = np.array([65], "<i4").tobytes()  # more trees than KML_TREE_MAX_TREES
    version = bytearray(v2)
    version[4] = 2
    return [
        ("bad_magic", b"XMLB" + v2[4:], 0),
        ("bad_version", bytes(version), 0),
        ("bad_alignment", v2, 1),
        ("bad_interface", blob_of(runs["other"], 3), 0),
        ("bad_layout", repack(v2, layout_hash=0x12345678), 0),
        ("bad_layout", repack(v2, sections={fmt.FOREST: bytes(forest)}), 0),
        ("bad_length", v2[:-100], 0),
        ("bad_length", v2[:fmt.HEADER_BYTES - 1], 0),
        ("bad_hash", bytes(flipped), 0),
        ("bad_payload", repack(v2, sections={fmt.LEFT: left.tobytes()}), 0),
        ("bad_payload", repack(v2, sections={fmt.HEAD: head.tobytes()}), 0),
        ("selftest_failed", repack(v2, sections={fmt.GOLDEN: bytes(golden)}), 0),
    ]


def test_update_and_every_rejection_on_qemu(runs: dict[str, Path], windows: np.ndarray,
                                            tmp_path: Path) -> None:
    v1, v2 = expected(runs["v1"], windows), expected(runs["v2"], windows)
    assert not np.array_equal(v1.scores, v2.scores)  # the update changes something
    blob2, blob1 = blob_of(runs["v2"], counter=2), blob_of(runs["v1"], counter=1)
    hostile = hostile_blobs(runs, blob2)
    ops = bh.Ops(windows).classify()
    for _, blob, misalign in hostile:
        ops.blob(blob, misalign).classify()
    ops.blob(blob2).classify()  # the update
    ops.blob(blob1).classify()  # older: refused
    ops.allow_downgrade(True).blob(blob1).classify()  # a deliberate downgrade
    q = bh.build_qemu(runs["v1"] / "firmware", tmp_path / "fw")
    results, instructions = bh.run_qemu(q, ops, 3, tmp_path / "qemu")
    baseline = results[0]
    assert_decides(baseline, v1)
    for i, (reason, _, _) in enumerate(hostile):
        r, after = results[1 + 2 * i], results[2 + 2 * i]
        assert (bh.reason_name(r.check), bh.reason_name(r.activate)) == (
            reason if reason != "selftest_failed" else "ok", reason), reason
        assert r.active_counter == 0 and r.min_counter == 0
        assert_same(after, baseline)  # v1 keeps deciding exactly as before
    k = 1 + 2 * len(hostile)
    update, after_update = results[k], results[k + 1]
    assert (update.check, update.activate, update.selftest) == (0, 0, 0)
    assert (update.active_counter, update.min_counter) == (2, 2)
    assert_decides(after_update, v2)
    older, after_older = results[k + 2], results[k + 3]
    assert older.activate == CODE["downgrade"] and older.active_counter == 2
    assert_decides(after_older, v2)
    allowed, after_allowed = results[k + 4], results[k + 5]
    assert allowed.activate == 0 and allowed.active_counter == 1
    assert_decides(after_allowed, v1)
    # a check and an activation of the valid update: measured, and bounded
    check, activate = instructions[2 * len(hostile)], instructions[2 * len(hostile) + 1]
    assert 0 < check < activate < 5_000_000


def test_signatures_on_qemu(runs: dict[str, Path], windows: np.ndarray,
                            tmp_path: Path) -> None:
    """A library built with [library] update_key: unsigned and wrongly signed blobs are
    refused, the trusted key's blob is taken."""
    good, bad = write_key(tmp_path / "good.pem"), write_key(tmp_path / "bad.pem")
    pipeline = load_pipeline(runs["v1"] / "pipeline.json")
    pipeline.library_update_key = good.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    firmware = write_library(pipeline, tmp_path / "signed_fw", created_utc=created_in(
        runs["v1"] / "firmware" / "kiloml_model.h", "kml"))
    assert "KML_BLOB_REQUIRE_SIGNATURE 1" in (firmware.directory / "kml_config.h").read_text()
    unsigned = blob_of(runs["v2"], counter=2)
    wrong = blob_of(runs["v2"], counter=2, key=tmp_path / "bad.pem")
    right = blob_of(runs["v2"], counter=2, key=tmp_path / "good.pem")
    forged = repack(right, key=bad)  # the trusted blob re-signed by another key
    ops = bh.Ops(windows).classify()
    for blob in (unsigned, wrong, forged, right):
        ops.blob(blob).classify()
    q = bh.build_qemu(firmware.directory, tmp_path / "fw")
    results, instructions = bh.run_qemu(q, ops, 3, tmp_path / "qemu")
    v1, v2 = expected(runs["v1"], windows), expected(runs["v2"], windows)
    assert_decides(results[0], v1)
    for i, reason in enumerate(["unsigned", "bad_signature", "bad_signature"]):
        assert bh.reason_name(results[1 + 2 * i].activate) == reason
        assert_same(results[2 + 2 * i], results[0])
    assert results[7].activate == 0
    assert_decides(results[8], v2)
    assert instructions[7] > instructions[6] > 0  # the signed check, then activate
