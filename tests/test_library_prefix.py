"""[library] prefix and model identity: two models of different families linked into one
host program and one QEMU firmware, both at full parity, one copy of each shared kernel;
<prefix>_model_info read back from the ELF; the prefix's errors."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from kiloml.codegen.identity import read_info
from kiloml.codegen.prefix import check_prefix
from kiloml.errors import KilomlError
from tests.conftest import CsvProject, assert_user_error, run_cli, write_toy_project

TREE_MODEL = '[model]\nkind = "random_forest"\nn_estimators = 5\nmax_depth = 6\n'
CNN_MODEL = ('[model]\nkind = "cnn1d"\nfilters = [4, 4]\nepochs = 3\nlearning_rate = 0.01\n'
             'validation_groups = 1\n')
HAS_ARM = shutil.which("arm-none-eabi-gcc") is not None and \
    shutil.which("qemu-system-arm") is not None


def _project(root: Path, prefix: str, *, network: bool = False) -> Path:
    toml = write_toy_project(root)
    text = toml.read_text()
    if network:
        pytest.importorskip("torch")
        text = text.replace(TREE_MODEL, CNN_MODEL).replace(
            '[[features]]\nstage = "statistics"\n', "").replace("cv_folds = 3", "cv_folds = 0")
    toml.write_text(text + f'\n[library]\nprefix = "{prefix}"\n')
    return toml


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    trees = _project(tmp_path_factory.mktemp("trees"), "gesture")
    net = _project(tmp_path_factory.mktemp("net"), "anomaly", network=True)
    for toml in (trees, net):
        result = run_cli("run", str(toml), "--no-emulator")
        assert result.exit_code == 0, result.stderr
    return trees.parent / "out", net.parent / "out"


def test_prefixed_library_names(two_runs: tuple[Path, Path]) -> None:
    out, _ = two_runs
    fw = out / "firmware"
    assert not (fw / "kiloml_model.h").exists() and not (fw / "kml_config.h").exists()
    header = (fw / "gesture_model.h").read_text()
    for name in ("gesture_classify(", "gesture_push_sample(", "gesture_classify_latest(",
                 "gesture_reset(", "gesture_compute_features(", "gesture_preprocess_sample(",
                 "gesture_result_t", "gesture_class_names", "gesture_channel_names",
                 "#define GESTURE_CLASSES 3", "#define GESTURE_CHANNELS 3",
                 "#define GESTURE_WINDOW_SAMPLES 50", "gesture_decide_latest(",
                 "gesture_model_info", "#define GESTURE_INTERFACE_HASH 0x",
                 "#ifndef GESTURE_MODEL_H"):
        assert name in header, name
    assert "kml_" not in header.replace(".kml_model_info", "")
    readme = (fw / "README.md").read_text()
    assert "gesture_push_sample" in readme and "GESTURE_CHANNELS" in readme
    assert "kml_push_sample" not in readme
    m = json.loads((out / "metrics.json").read_text())
    assert m["library"]["prefix"] == "gesture" and len(m["library"]["model_id"]) == 16
    assert m["library"]["interface_hash"].startswith("0x")
    # the model id is the library's content: recomputed from the folder, it agrees
    info = read_info(fw)[0]
    assert info["content_matches_id"] and info["model_id"] == m["library"]["model_id"]
    (fw / "README.md").write_text("edited\n")  # not hashed
    assert read_info(fw)[0]["content_matches_id"]


def test_two_models_in_one_host_program(two_runs: tuple[Path, Path], tmp_path: Path) -> None:
    from kiloml.verify import combined

    members = [combined.member_from_run(out, tmp_path / "libs") for out in two_runs]
    rows = combined.run_host(members, tmp_path / "host")
    for row in rows:
        assert row["n"] > 0 and row["all_decisions_equal"], row
        assert row["max_abs_score_diff"] <= 1e-6, row


@pytest.mark.skipif(not HAS_ARM, reason="arm-none-eabi-gcc and qemu-system-arm needed")
def test_two_models_in_one_qemu_firmware(two_runs: tuple[Path, Path], tmp_path: Path) -> None:
    from kiloml.targets.profiles import load_profile
    from kiloml.verify import combined

    members = [combined.member_from_run(out, tmp_path / "libs") for out in two_runs]
    firmware = combined.build_firmware(members, load_profile("cortex-m4f"), "mps2-an386",
                                       tmp_path / "mcu")
    symbols = combined.symbol_check(firmware)
    assert symbols["shared_kernel_functions_linked"] > 0
    assert symbols["shared_kernel_copies_max"] == 1
    assert symbols["names_defined_by_two_libraries"] == []
    assert symbols["model_symbols_outside_prefix"] == []
    assert not [w for w in symbols["link_warnings"] if "common" in w or "multiple" in w]
    rows, counts = combined.run_firmware(members, firmware, "mps2-an386", tmp_path / "mcu")
    for row, n in zip(rows, counts, strict=True):
        assert row["all_decisions_equal"] and row["max_abs_score_diff"] == 0.0, row
        assert len(n) == row["n"] and n.min() > 0
    # both identity records, read back from the linked ELF
    records = {r["prefix"]: r for r in read_info(firmware.elf)}
    assert set(records) == {"gesture", "anomaly"}
    for m in members:
        assert records[m.library.prefix]["model_id"] == m.library.info["model_id"]
        assert records[m.library.prefix]["interface_hash"] == m.library.info["interface_hash"]
    result = run_cli("info", str(firmware.elf))
    assert result.exit_code == 0 and "gesture" in result.stdout and "anomaly" in result.stdout


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake needed")
def test_two_libraries_in_one_cmake_build(two_runs: tuple[Path, Path], tmp_path: Path) -> None:
    """Each generated CMakeLists.txt added with add_subdirectory() to one build: two model
    targets, one target per shared kernel (no duplicate target, no duplicate symbol), and a
    program calling both models links."""
    app = tmp_path / "app"
    app.mkdir()
    for out in two_runs:
        shutil.copytree(out / "firmware", app / out.parent.name)
    (app / "main.c").write_text(
        '#include "gesture_model.h"\n#include "anomaly_model.h"\n'
        "int main(void) {\n"
        "    static float g[GESTURE_WINDOW_SAMPLES * GESTURE_CHANNELS];\n"
        "    static float a[ANOMALY_WINDOW_SAMPLES * ANOMALY_CHANNELS];\n"
        "    gesture_result_t rg; anomaly_result_t ra;\n"
        "    gesture_classify(g, &rg); anomaly_classify(a, &ra);\n"
        "    return rg.label >= 0 && ra.label >= 0 ? 0 : 1;\n}\n")
    names = [out.parent.name for out in two_runs]
    (app / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.13)\nproject(two C)\n"
        + "".join(f"add_subdirectory({n})\n" for n in names)
        + "add_executable(two main.c)\n"
        "target_link_libraries(two PRIVATE gesture_model anomaly_model)\n")
    build = tmp_path / "build"
    for cmd in (["cmake", "-S", str(app), "-B", str(build)],
                ["cmake", "--build", str(build)]):
        done = subprocess.run(cmd, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
    assert subprocess.run([str(build / "two")]).returncode == 0
    kernels = sorted(p.name for p in build.rglob("libkiloml_rt_*.a"))
    assert kernels and len(kernels) == len(set(kernels))  # one archive per shared kernel


def test_interface_hash_checked_at_compile_time(two_runs: tuple[Path, Path],
                                                tmp_path: Path) -> None:
    fw = two_runs[0] / "firmware"
    wanted = json.loads((two_runs[0] / "metrics.json").read_text())["library"]["interface_hash"]
    for value, ok in ((wanted, True), ("0x00000001", False)):
        src = tmp_path / "app.c"
        src.write_text('#include "gesture_model.h"\n'
                       f"#if !GESTURE_INTERFACE_IS({value}u)\n#error \"interface changed\"\n"
                       "#endif\nint main(void) { return 0; }\n")
        built = subprocess.run(["gcc", "-std=c99", "-pedantic", "-Werror", f"-I{fw}", "-c",
                                str(src), "-o", str(tmp_path / "app.o")], capture_output=True,
                               text=True)
        assert (built.returncode == 0) == ok, built.stderr
        assert ok or "interface changed" in built.stderr


def test_source_date_epoch_makes_the_library_reproducible(two_runs: tuple[Path, Path],
                                                          tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    from kiloml.codegen.library import write_library
    from kiloml.persist.pipeline_state import load_pipeline

    pipeline = load_pipeline(two_runs[0] / "pipeline.json")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    a = write_library(pipeline, tmp_path / "a")
    write_library(pipeline, tmp_path / "b")
    assert a.info["created_utc"] == "2023-11-14T22:13:20Z"
    for path in sorted((tmp_path / "a").iterdir()):
        assert path.read_bytes() == (tmp_path / "b" / path.name).read_bytes(), path.name
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1800000000")
    c = write_library(pipeline, tmp_path / "c")
    assert c.info["model_id"] == a.info["model_id"]  # the time is no part of the id
    assert c.info["created_utc"] != a.info["created_utc"]


@pytest.mark.parametrize(("prefix", "words"), [
    ("9lives", "not a C identifier"), ("ges-ture", "not a C identifier"),
    ("static", "keyword"), ("kml_gesture", "collides"), ("KML", "collides"),
    ("kiloml", "collides"), ("gesture_", "ends in _")])
def test_bad_prefix_is_one_line(csv_project: CsvProject, prefix: str, words: str) -> None:
    csv_project.toml.write_text(csv_project.toml.read_text()
                                + f'\n[library]\nprefix = "{prefix}"\n')
    assert_user_error(run_cli("run", str(csv_project.toml), "--no-emulator"),
                      "[library] prefix", words)


def test_prefix_rules() -> None:
    assert check_prefix("kml") == "kml" and check_prefix("gesture2") == "gesture2"
    with pytest.raises(KilomlError, match="must be a string"):
        check_prefix(3)


def test_convert_with_a_prefix(tmp_path: Path) -> None:
    import numpy as np
    from sklearn.tree import DecisionTreeClassifier

    import kiloml

    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 4)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    lib = kiloml.convert(DecisionTreeClassifier(max_depth=4, random_state=0).fit(x, y),
                         prefix="tiny")
    figures = lib.verify(x, emulate=False)
    assert figures["ok"] and figures["parity"]["host"]["kml_predict"]["all_decisions_equal"]
    folder = lib.save(tmp_path / "lib")
    assert "int32_t tiny_predict(" in (folder / "firmware" / "tiny_model.h").read_text()
    assert kiloml.Library.load(folder).pipeline.library_prefix == "tiny"
    with pytest.raises(KilomlError, match="prefix 'kml_x'"):
        kiloml.convert(DecisionTreeClassifier().fit(x, y), prefix="kml_x")


@pytest.mark.skipif(not HAS_ARM, reason="arm-none-eabi-gcc and qemu-system-arm needed")
def test_run_and_verify_prove_a_prefixed_library(tmp_path: Path) -> None:
    toml = _project(tmp_path, "gesture")
    result = run_cli("run", str(toml))
    assert result.exit_code == 0, result.stderr
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    for where in ("host", "cortex-m4f"):
        p = m["parity"][where]
        assert p["all_decisions_equal"] and p["streaming"]["all_decisions_equal"], where
    stages = m["resources"]["cortex-m4f"]["stages"]
    assert any(s["flash_bytes"] > 0 and s["stage"] == "model" for s in stages), stages
    result = run_cli("verify", str(toml))
    assert result.exit_code == 0, result.stderr
    # the verified copy is the run's, byte for byte (its creation time included)
    records = read_info(tmp_path / "out" / "verify" / "cortex-m4f" / "harness.elf")
    assert [r["model_id"] for r in records] == [m["library"]["model_id"]]
    assert records[0]["created_utc"] == m["library"]["created_utc"]
    # the user's flags on a prefixed library: the harness reaches it through the shim
    flagged = run_cli("verify", str(toml), "--cflags", "-std=gnu11 -O3 -ffp-contract=fast")
    assert flagged.exit_code == 0, flagged.stderr
    assert "decisions equal, features bit-exact" in flagged.stdout


def test_linear_model_with_a_prefix(tmp_path: Path) -> None:
    """kml_linear is built per model too (tiny_linear.c); two linear libraries link."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    import kiloml
    from kiloml.codegen.library import write_library
    from kiloml.verify import combined

    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 5)).astype(np.float32)
    y = (x @ np.arange(1, 6) > 0).astype(int) + (x[:, 0] > 1)
    members = []
    for prefix in ("lin_a", "lin_b"):
        lib = kiloml.convert(LogisticRegression(max_iter=500).fit(x, y), prefix=prefix)
        assert lib.verify(x, emulate=False)["ok"]
        written = write_library(lib.pipeline, tmp_path / prefix)
        assert (tmp_path / prefix / f"{prefix}_linear.c").exists()
        members.append(combined.Member(written, x.reshape(len(x), 1, 5), lib.predict(x),
                                       lib.scores(x).astype(np.float32)))
    rows = combined.run_host(members, tmp_path / "host")
    assert all(r["all_decisions_equal"] for r in rows), rows


def test_info_errors_are_one_line(tmp_path: Path) -> None:
    assert_user_error(run_cli("info", str(tmp_path / "missing.elf")), "no such file")
    (tmp_path / "notes.txt").write_text("not an ELF\n")
    assert_user_error(run_cli("info", str(tmp_path / "notes.txt")), "not a little-endian ELF")
    assert_user_error(run_cli("info", str(tmp_path)), "no kiloml model header")
