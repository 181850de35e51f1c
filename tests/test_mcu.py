"""The library on emulated Cortex-M cores (QEMU): parity, exact instruction counts,
sizes, and the failures an engineer meets (missing tools, hangs, faults, too big)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_user_error, run_cli, write_toy_project

from kiloml.errors import KilomlError
from kiloml.persist.pipeline_state import load_pipeline
from kiloml.targets.budget import Budget
from kiloml.targets.profiles import load_profile
from kiloml.verify.command import firmware_library
from kiloml.verify.mcu import build, qemu
from kiloml.verify.mcu.toolchain import find_toolchain
from kiloml.verify.reference import REFERENCE_FILE, Reference
from kiloml.verify.target import verify_target


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The toy project, run once (host and Cortex-M4F parity included)."""
    toml = write_toy_project(tmp_path_factory.mktemp("mcu"))
    result = run_cli("run", str(toml))
    assert result.exit_code == 0, result.stderr
    return toml


def metrics(toml: Path) -> dict:
    return json.loads((toml.parent / "out" / "metrics.json").read_text())


def assert_parity(p: dict) -> None:
    assert p["emulated"] and p["n"] > 0
    assert p["decisions_equal"] == p["n"] and p["all_decisions_equal"]
    assert p["features_bit_exact"] and p["max_abs_score_diff"] <= 1e-6
    assert p["streaming"]["windows_equal"] and p["streaming"]["all_decisions_equal"]


def test_run_verifies_on_the_project_target(project: Path) -> None:
    m = metrics(project)
    assert_parity(m["parity"]["cortex-m4f"])
    assert m["parity"]["cortex-m4f"]["machine"] == "mps2-an386"
    r = m["resources"]["cortex-m4f"]
    assert r["measured_on"] == "qemu-mps2-an386" and r["estimated"] == []
    for key in ("flash_bytes", "ram_bytes", "stack_bytes", "instructions_per_inference",
                "latency_us", "energy_uj"):
        assert r[key] > 0, key
    assert r["ram_bytes"] >= 4 * 50 * 3  # the ring buffer of 50 samples x 3 channels
    assert r["instructions_mean"] <= r["instructions_per_inference"]
    # the library's share of the gc-sections link, from the map file: at most what it adds,
    # the rest (libgcc / newlib helpers) not negative (object sizes gave -722 B on watch)
    assert 0 < r["library_objects_flash_bytes"] <= r["flash_bytes"]
    assert r["runtime_support_flash_bytes"] >= 0
    profile = load_profile("cortex-m4f")
    assert r["latency_us"] == pytest.approx(
        r["instructions_per_inference"] * 1.25 / 168e6 * 1e6, abs=1e-3)
    assert r["energy_uj"] == pytest.approx(profile.energy_uj(r["instructions_per_inference"]),
                                           abs=1e-4)
    assert r["within_budget"] and r["status"] == "ok"
    html = (project.parent / "out" / "report.html").read_text()
    assert "QEMU mps2-an386" in html and "instructions per inference" in html


@pytest.mark.parametrize(("target", "machine"), [("cortex-m3", "mps2-an385"),
                                                 ("cortex-m0plus", "microbit"),
                                                 ("cortex-m7", "mps2-an500")])
def test_parity_on_other_cores(project: Path, target: str, machine: str) -> None:
    result = run_cli("verify", str(project), "--target", target)
    assert result.exit_code == 0, result.stderr
    assert f"parity ({target}, QEMU {machine})" in result.stdout
    m = metrics(project)
    assert_parity(m["parity"][target])
    assert m["resources"][target]["measured_on"] == f"qemu-{machine}"
    assert "cortex-m4f" in m["parity"]  # earlier targets stay in the metrics


def test_soft_float_costs_more_instructions(project: Path) -> None:
    for target in ("cortex-m0plus", "cortex-m4f"):
        if target not in metrics(project)["resources"]:
            assert run_cli("verify", str(project), "--target", target).exit_code == 0
    r = metrics(project)["resources"]
    assert r["cortex-m0plus"]["instructions_per_inference"] > \
        3 * r["cortex-m4f"]["instructions_per_inference"]


def test_instruction_counts_repeat_exactly(project: Path, tmp_path: Path) -> None:
    out = project.parent / "out"
    pipeline = load_pipeline(out / "pipeline.json")
    reference = Reference.load(out / "verify" / REFERENCE_FILE, pipeline)
    library = firmware_library(out / "firmware", len(pipeline.feature_names()))
    profile = load_profile("cortex-m4f")
    budget = Budget(profile.flash_bytes, profile.ram_bytes, 0.7)
    counts = []
    for i in range(2):
        result = verify_target(pipeline, library, reference, profile, budget, tmp_path / str(i))
        counts.append(np.load(tmp_path / str(i) / "instructions_per_window.npy",
                              allow_pickle=False))
        assert result.ok
    assert len(counts[0]) == len(reference.windows)
    np.testing.assert_array_equal(counts[0], counts[1])


def test_counter_counts_every_instruction(tmp_path: Path) -> None:
    """A kml_classify of a known number of instructions: 2 per loop iteration."""
    toolchain = find_toolchain()
    profile = load_profile("cortex-m4f")
    fw = tmp_path / "fw"
    fw.mkdir()
    counts = {}
    for n in (100, 1100):
        (fw / "kiloml_model.h").write_text(
            "#include <stdint.h>\n#define KML_WINDOW_SAMPLES 1\n#define KML_CHANNELS 1\n"
            "#define KML_STRIDE_SAMPLES 1\n#define KML_FEATURES 1\n#define KML_CLASSES 1\n"
            "typedef struct { int32_t label; float scores[1]; } kml_result_t;\n"
            "int32_t kml_classify(const float *w, kml_result_t *out);\n"
            "int32_t kml_push_sample(const float *s);\nint32_t kml_classify_latest("
            "kml_result_t *out);\nvoid kml_reset(void);\n"
            "void kml_compute_features(const float *w, float *f);\n"
            "typedef struct { int32_t decision, changed, candidate, label; float scores[1];"
            " float smoothed[1]; } kml_decision_t;\n"
            "int32_t kml_decide_latest(kml_decision_t *out);\n")
        (fw / "kiloml_model.c").write_text(
            '#include "kiloml_model.h"\n'
            "int32_t kml_classify(const float *w, kml_result_t *out) {\n"
            f"    __asm volatile(\"ldr r3, ={n}\\n1: subs r3, #1\\n bne 1b\" ::: \"r3\", \"cc\");\n"
            "    (void)w; out->label = 0; out->scores[0] = 1.0f; return 0; }\n"
            "int32_t kml_push_sample(const float *s) { (void)s; return 0; }\n"
            "int32_t kml_classify_latest(kml_result_t *out) { (void)out; return -1; }\n"
            "void kml_reset(void) {}\n"
            "void kml_compute_features(const float *w, float *f) { f[0] = w[0]; }\n"
            "int32_t kml_decide_latest(kml_decision_t *out) { (void)out; return -2; }\n")
        library = firmware_library(fw, 1)
        work = tmp_path / f"n{n}"
        objects = build.compile_objects(toolchain, library.sources, [fw], profile, "-O2",
                                        work / "lib")
        elf = build.build_harness(toolchain, library, objects, profile, "mps2-an386", "-O2",
                                  work)
        plugin = qemu.build_plugin(toolchain, work)
        payload = np.array([0, 3], "<i4").tobytes() + np.zeros(3, "<f4").tobytes()
        run = qemu.run_harness(toolchain, elf, "mps2-an386", payload, plugin, work,
                               timeout_s=60)
        assert len(run.instructions) == 3 and len(set(run.instructions.tolist())) == 1
        counts[n] = int(run.instructions[0])
    assert counts[1100] - counts[100] == 2 * 1000


def _patched_firmware(project: Path, tmp_path: Path, old: str, new: str) -> Path:
    fw = tmp_path / "firmware"
    shutil.copytree(project.parent / "out" / "firmware", fw)
    source = fw / "kiloml_model.c"
    text = source.read_text()
    assert old in text
    source.write_text(text.replace(old, new, 1))
    return fw


def _verify_patched(project: Path, fw: Path, tmp_path: Path) -> None:
    out = project.parent / "out"
    pipeline = load_pipeline(out / "pipeline.json")
    reference = Reference.load(out / "verify" / REFERENCE_FILE, pipeline)
    reference.windows = reference.windows[:3]
    profile = load_profile("cortex-m4f")
    verify_target(pipeline, firmware_library(fw, len(pipeline.feature_names())), reference,
                  profile, Budget(profile.flash_bytes, profile.ram_bytes, 0.7),
                  tmp_path / "work")


def test_hang_is_reported_with_its_place(project: Path, tmp_path: Path) -> None:
    fw = _patched_firmware(project, tmp_path, "static int32_t kml_run_model(const float "
                           "*features, kml_result_t *out)\n{",
                           "static int32_t kml_run_model(const float *features, "
                           "kml_result_t *out)\n{\n    for (;;) { __asm volatile(\"nop\"); }")
    with pytest.raises(KilomlError, match=r"firmware hung on mps2-an386: one inference ran "
                                          r"more than .* looping in kml_"):
        _verify_patched(project, fw, tmp_path)


def test_hardfault_is_reported_with_its_place(project: Path, tmp_path: Path) -> None:
    call = ("    kml_run_features(window, 0, kml_feature_buf);\n"
            "    return kml_run_model(kml_feature_buf, out);")
    fw = _patched_firmware(project, tmp_path, call,
                           '    __asm volatile("udf #0"); /* an undefined instruction */\n'
                           + call)
    with pytest.raises(KilomlError, match=r"crashed with a HardFault on mps2-an386 at "
                                          r"kml_classify\+0x[0-9a-f]+ \(PC 0x[0-9a-f]{8}, "
                                          r"called from .*CFSR 0x00010000\)"):
        _verify_patched(project, fw, tmp_path)


def _path_without(tmp_path: Path, keep: list[str]) -> str:
    """A PATH holding only links to the named tools (and the Python running the tests)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in keep:
        found = shutil.which(name)
        if found:
            (bin_dir / name).symlink_to(found)
    return str(bin_dir)


@pytest.mark.parametrize(("keep", "named"), [
    (["gcc", "qemu-system-arm"], "arm-none-eabi-gcc (package gcc-arm-none-eabi)"),
    (["gcc", "arm-none-eabi-gcc", "arm-none-eabi-size", "arm-none-eabi-nm"],
     "qemu-system-arm (package qemu-system-arm)"),
])
def test_missing_tools_are_named(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 keep: list[str], named: str) -> None:
    monkeypatch.setenv("PATH", _path_without(tmp_path, keep))
    find_toolchain.cache_clear()
    try:
        line = assert_user_error(run_cli("verify", str(project)), named)
    finally:
        find_toolchain.cache_clear()
    assert "gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm" in line


def test_target_without_emulator_reports_estimates(project: Path) -> None:
    result = run_cli("verify", str(project), "--target", "cortex-m33")
    assert result.exit_code == 0, result.stderr
    assert "no emulator for cortex-m33" in result.stdout
    m = metrics(project)
    assert m["parity"]["cortex-m33"] == {
        "emulated": False, "note": "no emulator for cortex-m33: parity not checked on the MCU"}
    r = m["resources"]["cortex-m33"]
    assert "no emulator" in r["measured_on"] and "estimates" in r["measured_on"]
    assert set(r["estimated"]) == {"instructions_per_inference", "stack_bytes", "latency_us",
                                   "energy_uj"}
    assert r["flash_bytes"] > 0  # sizes still come from a real cross link


def test_unknown_target_for_verify(project: Path) -> None:
    assert_user_error(run_cli("verify", str(project), "--target", "cortex-m5"),
                      "--target: unknown target 'cortex-m5'")


def test_verify_needs_a_run(tmp_path: Path) -> None:
    toml = write_toy_project(tmp_path)
    assert_user_error(run_cli("verify", str(toml)), "run `kiloml run")


def test_library_too_big_for_the_target(tmp_path: Path) -> None:
    """A 10 s window at 200 Hz x 3 channels needs a 24 KB ring buffer: more RAM than the
    Cortex-M3 profile's 20 KB."""
    toml = write_toy_project(tmp_path, seconds=30.0 * 4, rate_scale=4)
    text = toml.read_text().replace("window_ms = 1000", "window_ms = 10000").replace(
        "sample_rate_hz = 50", "sample_rate_hz = 200").replace(
        "stride_ms = 500", "stride_ms = 5000").replace('name = "cortex-m4f"',
                                                       'name = "cortex-m3"')
    toml.write_text(text)
    line = assert_user_error(run_cli("run", str(toml)), "the library does not fit target "
                             "'cortex-m3'", "bytes of RAM, the target has 20480")
    assert not (tmp_path / "out").exists()
    assert "needs 2" in line  # 24 KB and more


def test_cross_build_is_strict(project: Path, tmp_path: Path) -> None:
    """The generated library compiles for every core with -Werror -pedantic, no warning."""
    toolchain = find_toolchain()
    fw = project.parent / "out" / "firmware"
    for target in ("cortex-m0plus", "cortex-m3", "cortex-m4f", "cortex-m7", "cortex-m33"):
        objects = build.compile_objects(toolchain, sorted(fw.glob("*.c")), [fw],
                                        load_profile(target), "-Os", tmp_path / target)
        assert all(o.stat().st_size > 0 for o in objects)
    assert subprocess.run([toolchain.gcc, "--version"], capture_output=True).returncode == 0
    assert os.access(toolchain.qemu, os.X_OK)
