"""Parameter blobs for int8 networks on the emulated Cortex-M4F (QEMU mps2-an386): an
updatable v1 network library takes v2's blob (the same architecture, another seed and
epochs) and then decides exactly as v2's reference; a changed byte, another architecture,
a hostile section length or parameter, and wrong golden vectors are each refused with
their reason while v1 keeps deciding exactly as before."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from blob_helpers import repack, section_data
from conftest import assert_user_error, run_cli, write_toy_project

from kiloml.blob import format as fmt
from kiloml.blob import harness as bh
from kiloml.blob.build import blob_bytes, describe
from kiloml.codegen.identity import created_in
from kiloml.codegen.library import write_library
from kiloml.decision.layer import DecisionLayer
from kiloml.persist.pipeline_state import load_pipeline
from kiloml.verify.reference import REFERENCE_FILE, Reference

pytest.importorskip("torch")
HAS_QEMU = shutil.which("qemu-system-arm") is not None and \
    shutil.which("arm-none-eabi-gcc") is not None
TREE_MODEL = '[model]\nkind = "random_forest"\nn_estimators = 5\nmax_depth = 6\n'
VERSIONS = {  # name: (filters, epochs, seed)
    "v1": ("[4, 4]", 3, 0),
    "v2": ("[4, 4]", 4, 1),
    "other": ("[4, 6]", 3, 0),  # another architecture, the same interface
}
F32 = np.float32
N_WINDOWS = 30


def network_project(root: Path, filters: str, epochs: int, seed: int, library: str) -> Path:
    toml = write_toy_project(root)
    model = (f'[model]\nkind = "cnn1d"\nfilters = {filters}\nepochs = {epochs}\n'
             f"learning_rate = 0.01\nvalidation_groups = 1\nseed = {seed}\n")
    text = toml.read_text().replace(TREE_MODEL, model).replace(
        '[[features]]\nstage = "statistics"\n', "").replace("cv_folds = 3", "cv_folds = 0")
    toml.write_text(text + f"\n[library]\n{library}")
    return toml


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("blob_net")
    out = {}
    for name, (filters, epochs, seed) in VERSIONS.items():
        toml = network_project(root / name, filters, epochs, seed, "updatable = true\n")
        result = run_cli("run", str(toml), "--no-emulator")
        assert result.exit_code == 0, result.stdout + result.stderr
        out[name] = root / name / "out"
    return out


def windows_of(run: Path) -> np.ndarray:
    pipeline = load_pipeline(run / "pipeline.json")
    return Reference.load(run / "verify" / REFERENCE_FILE, pipeline).windows[:N_WINDOWS]


def expected(run: Path, windows: np.ndarray) -> bh.Decisions:
    """What ``run``'s network decides on ``windows`` in the C library (from kml_reset)."""
    pipeline = load_pipeline(run / "pipeline.json")
    features = np.asarray(pipeline.compute_features(windows), F32)
    labels = np.asarray(pipeline.model.predict(features), np.int64)
    scores = np.asarray(pipeline.model.predict_proba(features), F32)
    steps = DecisionLayer(pipeline.decision_params).run(scores, labels)
    return bh.Decisions(labels, np.asarray(steps.decision, np.int64), scores)


def blob_of(run: Path, counter: int) -> bytes:
    blob = blob_bytes(run, signing_key=None, counter=counter)
    assert blob is not None
    return blob


def assert_same(a: bh.Decisions, b: bh.Decisions) -> None:
    assert np.array_equal(a.labels, b.labels) and np.array_equal(a.decisions, b.decisions)
    assert np.array_equal(a.scores.view(np.uint32), b.scores.view(np.uint32))


def hostile_blobs(runs: dict[str, Path], v2: bytes) -> list[tuple[str, bytes]]:
    """(reason, blob) refused by v1's library."""
    flipped = bytearray(v2)
    flipped[fmt.HEADER_BYTES + 40] ^= 0x10  # a weight byte
    words = np.frombuffer(section_data(v2, fmt.NN_WORDS), "<i4").copy()
    pipeline = load_pipeline(runs["v1"] / "pipeline.json")
    k = int(pipeline.model.input_mean.size)
    conv = 2 * k + 5  # after the standardization and the input and output quantization
    shape = words.copy()
    shape[conv + 1] += 1  # the first convolution's in_h (a shape is code)
    shift = words.copy()
    shift[conv + 21 + 4 + 4] = 40  # past the first convolution's bias and multipliers
    golden = bytearray(section_data(v2, fmt.GOLDEN))
    n, f = np.frombuffer(bytes(golden[:8]), "<i4")
    at = 8 + 4 * int(n) * int(f)  # the first golden label
    golden[at:at + 4] = np.array([(golden[at] + 1) % 3], "<i4").tobytes()
    return [
        ("bad_hash", bytes(flipped)),
        ("bad_layout", blob_of(runs["other"], 3)),
        ("bad_payload", repack(v2, sections={fmt.NN_WORDS: words[:-1].tobytes()})),
        ("bad_payload", repack(v2, sections={fmt.NN_INT8: section_data(v2, fmt.NN_INT8)
                                             + b"\0" * 8})),
        ("bad_payload", repack(v2, sections={fmt.NN_WORDS: shape.tobytes()})),
        ("bad_payload", repack(v2, sections={fmt.NN_WORDS: shift.tobytes()})),
        ("selftest_failed", repack(v2, sections={fmt.GOLDEN: bytes(golden)})),
    ]


@pytest.mark.skipif(not HAS_QEMU, reason="needs qemu-system-arm and arm-none-eabi-gcc")
def test_network_update_and_rejections_on_qemu(runs: dict[str, Path],
                                               tmp_path: Path) -> None:
    windows = windows_of(runs["v2"])
    assert np.array_equal(windows, windows_of(runs["v1"]))  # the same data
    v1, v2 = expected(runs["v1"], windows), expected(runs["v2"], windows)
    assert not np.array_equal(v1.scores, v2.scores)  # the update changes something
    blob2 = blob_of(runs["v2"], counter=2)
    hostile = hostile_blobs(runs, blob2)
    ops = bh.Ops(windows).classify()
    for _, blob in hostile:
        ops.blob(blob).classify()
    ops.blob(blob2).classify()
    q = bh.build_qemu(runs["v1"] / "firmware", tmp_path / "fw")
    results, instructions = bh.run_qemu(q, ops, 3, tmp_path / "qemu")
    baseline = results[0]
    assert_same(baseline, v1)
    for i, (reason, _) in enumerate(hostile):
        r, after = results[1 + 2 * i], results[2 + 2 * i]
        assert (bh.reason_name(r.check), bh.reason_name(r.activate)) == (
            reason if reason != "selftest_failed" else "ok", reason), reason
        assert r.active_counter == 0 and r.min_counter == 0
        assert_same(after, baseline)  # v1 keeps deciding exactly as before
    update, after_update = results[-2], results[-1]
    assert (update.check, update.activate, update.selftest) == (0, 0, 0)
    assert (update.active_counter, update.min_counter) == (2, 2)
    assert_same(after_update, v2)
    check, activate = instructions[-2], instructions[-1]
    assert 0 < check < activate < 5_000_000


def test_network_blob_sections(runs: dict[str, Path]) -> None:
    blob = blob_of(runs["v2"], counter=2)
    info = describe(blob)
    assert info["kind"] == fmt.KIND_NETWORK
    names = [s["name"] for s in info["sections"]]
    assert names == ["nn_int8", "nn_words", "decision", "golden"]
    assert info["network"] == {"int8_bytes": len(section_data(blob, fmt.NN_INT8)),
                               "words": len(section_data(blob, fmt.NN_WORDS)) // 4}
    (runs["v2"] / "v2.kmlb").write_bytes(blob)
    shown = run_cli("blob", "inspect", str(runs["v2"] / "v2.kmlb"))
    assert shown.exit_code == 0 and "parameter words" in shown.stdout
    checked = run_cli("blob", "check", str(runs["v2"] / "v2.kmlb"), "--firmware",
                      str(runs["v1"]))
    assert checked.exit_code == 0 and "ok" in checked.stdout, checked.stdout + checked.stderr
    config = (runs["v1"] / "firmware" / "kml_config.h").read_text()
    words = len(section_data(blob, fmt.NN_WORDS)) // 4
    assert f"#define KML_BLOB_NN_WORDS {words}\n" in config
    assert f"#define KML_BLOB_NN_INT8_BYTES {len(section_data(blob, fmt.NN_INT8))}\n" in config
    # the same architecture: the same layout; another: another
    other = fmt.unpack(blob_of(runs["other"], 1))[0].layout_hash
    assert fmt.unpack(blob)[0].layout_hash == fmt.unpack(blob_of(runs["v1"], 1))[0].layout_hash
    assert fmt.unpack(blob)[0].layout_hash != other


def test_network_without_the_setting_is_unchanged(runs: dict[str, Path],
                                                  tmp_path: Path) -> None:
    """v1 regenerated without [library] updatable: no blob code, the invoke takes no
    parameters and the weights are flash tables, as in a library built before blobs."""
    pipeline = load_pipeline(runs["v1"] / "pipeline.json")
    pipeline.library_updatable = False
    fw = write_library(pipeline, tmp_path / "fw", created_utc=created_in(
        runs["v1"] / "firmware" / "kiloml_model.h", "kml"))
    source = (fw.directory / "kiloml_model.c").read_text()
    assert "static void kml_m_invoke(void)" in source and "kml_blob" not in source
    assert "static const int8_t kml_m_c0[" in source
    assert not (fw.directory / "kml_blob.c").exists()
    assert "KML_BLOB" not in (fw.directory / "kml_config.h").read_text()


def test_updatable_network_with_a_prefix_is_one_line(tmp_path: Path) -> None:
    toml = network_project(tmp_path, "[4, 4]", 1, 0, 'updatable = true\nprefix = "net"\n')
    assert_user_error(run_cli("run", str(toml), "--no-emulator"), "[library] updatable",
                      "prefix")
    assert not (tmp_path / "out").exists()


SANITIZE = ["-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
            "-fno-omit-frame-pointer"]


def hostile_words(runs: dict[str, Path], blob: bytes, n: int) -> list[bytes]:
    """Intact blobs whose parameter words sit at the edges of (or just past) the ranges
    the loader accepts, random weight bytes, or resized network sections."""
    from kiloml.codegen.updatable import network_code_of

    ranges = network_code_of(load_pipeline(runs["v1"] / "pipeline.json")).pool.ranges
    words = np.frombuffer(section_data(blob, fmt.NN_WORDS), "<i4")
    weights = section_data(blob, fmt.NN_INT8)
    rng = np.random.default_rng(7)
    out = []
    for i in range(n):
        w = words.astype(np.int64)
        if i % 3 == 0:  # a few words at an edge of their range, or one past it
            for at in rng.integers(0, len(w), int(rng.integers(1, 4))):
                lo, hi = ranges[int(at)]
                if lo > hi:  # a shape: anything else is refused
                    lo = hi = int(w[at]) + int(rng.integers(-2, 3))
                edge = [lo, hi, lo - 1, hi + 1][int(rng.integers(0, 4))]
                w[at] = int(np.clip(edge, -(1 << 31), (1 << 31) - 1))
            out.append(repack(blob, sections={fmt.NN_WORDS: w.astype("<i4").tobytes()}))
        elif i % 3 == 1:  # random weights
            b = bytearray(weights)
            for at in rng.integers(0, len(b), 8):
                b[int(at)] = int(rng.integers(0, 256))
            out.append(repack(blob, sections={fmt.NN_INT8: bytes(b)}))
        else:  # a section resized
            tag = [fmt.NN_INT8, fmt.NN_WORDS][int(rng.integers(0, 2))]
            data = section_data(blob, tag)
            cut = int(rng.integers(0, len(data) + 1))
            out.append(repack(blob, sections={tag: data[:cut] + bytes(int(rng.integers(0, 9)))}))
    return out


def test_hostile_network_blobs_under_sanitizers(runs: dict[str, Path],
                                                tmp_path: Path) -> None:
    """kml_blob.c and the network's kernels on hostile parameters (ASan, UBSan): each
    refused with a reason or, when within every range, run by the self-test without a
    fault; the words past a range are refused as bad_payload."""
    blob = blob_of(runs["v2"], counter=2)
    blobs = hostile_words(runs, blob, 90)
    windows = windows_of(runs["v1"])[:4]
    ops = bh.Ops(windows)
    for b in blobs:
        ops.blob(b)
    exe = bh.build_host(runs["v1"] / "firmware", tmp_path / "host", SANITIZE)
    results = bh.run_host(exe, ops, 3, tmp_path)
    reasons = [bh.reason_name(r.activate) for r in results]
    assert set(reasons) <= {"ok", "bad_payload", "selftest_failed"}, set(reasons)
    assert reasons.count("bad_payload") > 30 and "selftest_failed" in reasons


def test_a_kernel_without_blob_roles_is_one_line(runs: dict[str, Path]) -> None:
    """A layer whose kernel has no parameter roles (here ADD) is refused when the
    library is emitted, in one line naming [library] updatable."""
    from kiloml.blob.nn_pool import Pool
    from kiloml.codegen.nn_calls import Arg, KernelCall
    from kiloml.errors import KilomlError

    graph = load_pipeline(runs["v1"] / "pipeline.json").model.graph
    call = KernelCall("kml_add_s8", [Arg("i32", 3)])
    with pytest.raises(KilomlError, match=r"\[library\] updatable = true: .*kml_add_s8"):
        Pool(graph, "kml_m_").argument(2, call, 0, call.args[0])
