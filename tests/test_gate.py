"""`kiloml gate`: the release gate's checks on real released toy runs, the result stored
in the registry, exit 0 only when every check passes."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import CsvProject, assert_user_error, run_cli
from registry_helpers import (
    HYSTERESIS,
    LONGER_WINDOW,
    TWO_CHANNELS,
    WORSE_MODEL,
    release,
    toy_variant,
)

from kiloml.errors import KilomlError
from kiloml.project import load_project
from kiloml.registry.contents import read_package
from kiloml.registry.gate import CHECKS
from kiloml.registry.store import Registry


@dataclass
class Gated:
    registry: Path
    tmp: Path


@pytest.fixture(scope="module")
def gated(toy_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Gated:
    """1.0.0: the toy run with the emulator. 1.0.1: the same project without it (host
    parity only). 1.1.0: a worse model (per-channel means only) with a false-alarm limit.
    1.2.0 and 2.0.0: a longer window at another stride (another interface). 1.3.0: the
    toy with hysteresis (on_windows = 2: each recording's first decision is uncertain),
    emulated, under a strict changed-fraction limit. 3.0.0: two of the three channels."""
    tmp = tmp_path_factory.mktemp("gate")
    reg = tmp / "reg"
    release(toy_variant(tmp / "emulated", emulate=True), reg, "1.0.0")
    release(toy_run, reg, "1.0.1")
    release(toy_variant(tmp / "worse", WORSE_MODEL, gate="max_false_alarms_per_hour = 60"),
            reg, "1.1.0")
    window = toy_variant(tmp / "window", LONGER_WINDOW)
    release(window, reg, "1.2.0")
    release(window, reg, "2.0.0")
    release(toy_variant(tmp / "hysteresis", HYSTERESIS, gate="max_changed_fraction = 0.01",
                        emulate=True), reg, "1.3.0")
    release(toy_variant(tmp / "channels", TWO_CHANNELS), reg, "3.0.0")
    return Gated(reg, tmp)


def gate(g: Gated, version: str, *extra: str) -> tuple[int, dict[str, dict], str]:
    result = run_cli("gate", str(g.registry), version, *extra)
    assert result.exit_code in (0, 1), result.stderr
    stored = Registry.open(g.registry).gate_result(Registry.open(g.registry).resolve(version))
    assert stored is not None
    return result.exit_code, {c["name"]: c for c in stored["checks"]}, result.stdout


def failed(checks: dict[str, dict]) -> set[str]:
    return {name for name, c in checks.items() if not c["passed"]}


def test_gate_passes_without_a_baseline(gated: Gated) -> None:
    code, checks, out = gate(gated, "1.0.0")
    assert code == 0 and failed(checks) == set()
    for name in ("accuracy_drop", "balanced_accuracy_drop", "changed_fraction"):
        assert checks[name]["detail"].startswith("no baseline") and checks[name]["value"] is None
    assert checks["interface"]["detail"] == "no baseline"
    assert checks["parity_host"]["value"] == checks["parity_qemu"]["value"] == 1.0
    assert "QEMU mps2-an386" in checks["parity_qemu"]["detail"]
    assert "passed" in out and "parity_qemu" in out


def test_stored_result(gated: Gated) -> None:
    gate(gated, "1.0.0")
    reg = Registry.open(gated.registry)
    result = reg.gate_result("1.0.0")
    assert result is not None
    assert set(result) == {"version", "against", "passed", "gated_utc", "checks"}
    assert result["version"] == "1.0.0" and result["against"] is None and result["passed"]
    assert [c["name"] for c in result["checks"]] == list(CHECKS)
    for c in result["checks"]:
        assert set(c) == {"name", "passed", "value", "limit", "detail"}
    assert result["checks"][CHECKS.index("changed_fraction")]["limit"] == 0.05  # default
    assert (gated.registry / "gates" / "1.0.0.json").is_file()


def test_against_production_and_no_qemu_parity(gated: Gated) -> None:
    gate(gated, "1.0.0")
    assert run_cli("promote", str(gated.registry), "1.0.0", "--to", "production").exit_code == 0
    code, checks, out = gate(gated, "1.0.1")  # --against production: 1.0.0
    assert code == 1 and failed(checks) == {"parity_qemu"}
    assert "--no-emulator" in checks["parity_qemu"]["detail"]
    assert checks["changed_fraction"]["value"] == 0.0
    assert checks["accuracy_drop"]["value"] == 0.0
    assert checks["interface"]["passed"] and "the same as 1.0.0" in checks["interface"]["detail"]
    assert "FAIL" in out and "FAILED (parity_qemu)" in out
    stored = Registry.open(gated.registry).gate_result("1.0.1")
    assert stored is not None and stored["against"] == "1.0.0" and not stored["passed"]


def test_worse_model_fails_accuracy_false_alarms_and_changed_fraction(gated: Gated) -> None:
    code, checks, _ = gate(gated, "1.1.0", "--against", "1.0.0")
    assert code == 1
    assert failed(checks) == {"parity_qemu", "accuracy_drop", "balanced_accuracy_drop",
                              "false_alarms_per_hour", "changed_fraction"}
    assert checks["accuracy_drop"]["value"] > 1.0 == checks["accuracy_drop"]["limit"]
    assert checks["false_alarms_per_hour"]["limit"] == 60.0
    assert checks["false_alarms_per_hour"]["value"] > 60.0
    assert checks["changed_fraction"]["value"] > 0.05
    assert checks["interface"]["passed"]


def test_interface_change_needs_a_major_version(gated: Gated) -> None:
    _, checks, _ = gate(gated, "1.2.0", "--against", "1.0.0")
    c = checks["interface"]
    assert not c["passed"] and c["value"] != c["limit"]
    assert "window_samples 50 -> 100" in c["detail"] and "major version bump" in c["detail"]
    # another window and stride, but the same channels and rate: the diff still compares
    assert checks["changed_fraction"]["value"] is not None
    _, checks, _ = gate(gated, "2.0.0", "--against", "1.0.0")
    assert checks["interface"]["passed"]
    assert "allowed by the major version bump to 2.0.0" in checks["interface"]["detail"]


def test_other_channels_cannot_be_compared(gated: Gated) -> None:
    _, checks, _ = gate(gated, "3.0.0", "--against", "1.0.0")
    assert checks["interface"]["passed"]  # a major version
    c = checks["changed_fraction"]
    assert not c["passed"] and c["value"] is None
    assert c["detail"] == ("the libraries cannot be fed the same samples: 1.0.0 reads "
                           "channels ax, ay, az and 3.0.0 reads ax, ay")


def test_strict_changed_fraction(gated: Gated) -> None:
    code, checks, _ = gate(gated, "1.3.0", "--against", "1.0.0")
    assert code == 1 and failed(checks) == {"changed_fraction"}
    c = checks["changed_fraction"]
    assert c["limit"] == 0.01 and c["value"] == pytest.approx(3 / 45)  # one per recording
    assert "3 of 45 decisions change" in c["detail"]


def test_alias_without_a_version_is_no_baseline(gated: Gated) -> None:
    code, checks, _ = gate(gated, "1.0.0", "--against", "canary")
    assert code == 0 and checks["changed_fraction"]["detail"] == "no baseline"


def test_unknown_version_or_alias(gated: Gated) -> None:
    assert_user_error(run_cli("gate", str(gated.registry), "9.9.9"), "no version 9.9.9")
    assert_user_error(run_cli("gate", str(gated.registry), "1.0.0", "--against", "newest"),
                      "'newest' is neither a version")
    assert_user_error(run_cli("gate", str(gated.registry), "1.0.0", "--against", "5.0.0"),
                      "no version 5.0.0")


def test_not_a_registry(gated: Gated) -> None:
    assert_user_error(run_cli("gate", str(gated.tmp / "worse"), "1.0.0"),
                      "not a kiloml registry")
    assert_user_error(run_cli("gate", str(gated.tmp / "missing"), "1.0.0"), "no registry here")


@pytest.mark.parametrize(("line", "fragment"), [
    ("max_accuracy_drop = -1", "[gate] max_accuracy_drop"),
    ("max_changed_fraction = 2.0", "[gate] max_changed_fraction"),
    ("max_false_alarms_per_hour = 'often'", "[gate] max_false_alarms_per_hour"),
    ("max_drop = 1.0", "unknown key 'max_drop'"),
])
def test_gate_section_bad_values(csv_project: CsvProject, line: str, fragment: str) -> None:
    csv_project.toml.write_text(csv_project.toml.read_text() + f"\n[gate]\n{line}\n")
    with pytest.raises(KilomlError) as err:
        load_project(csv_project.toml)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_gate_section_defaults(csv_project: CsvProject) -> None:
    g = load_project(csv_project.toml).config.gate
    assert (g.max_accuracy_drop, g.max_false_alarms_per_hour, g.max_changed_fraction) == \
        (1.0, None, 0.05)


def test_limits_of_a_project_with_a_profile_file(gated: Gated, tmp_path: Path) -> None:
    """A project whose [target] names a profile file of its own: the package holds only
    project.toml, and the gate reads its [gate] without looking for the profile."""
    folder = tmp_path / "package"
    shutil.copytree(Registry.open(gated.registry).package_dir("1.3.0"), folder)
    project = folder / "project.toml"
    project.chmod(0o644)
    project.write_text(project.read_text().replace('name = "cortex-m4f"', 'name = "board.toml"'))
    with pytest.raises(KilomlError, match=r"board\.toml"):
        load_project(project)
    assert read_package(folder, "1.3.0").project().config.gate.max_changed_fraction == 0.01
