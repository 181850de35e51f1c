"""Target profiles (consistency, user profile files) and the power model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import CsvProject, assert_user_error, run_cli

from kiloml.targets.power import power_report
from kiloml.targets.profiles import PROFILE_DIR, clear_profile_cache, load_profile, profile_names


def test_every_profile_loads_with_its_power_figures() -> None:
    names = profile_names()
    assert {"cortex-m0plus", "cortex-m3", "cortex-m4f", "cortex-m7", "cortex-m33",
            "nrf52840"} <= set(names)
    for name in names:
        p = load_profile(name)
        assert p.sleep_power_uw < p.active_power_uw and p.power_source
    nrf = load_profile("nrf52840")
    assert (nrf.clock_hz, nrf.ram_bytes, nrf.flash_bytes) == (64_000_000, 262_144, 1_048_576)
    out = run_cli("targets")
    assert "nrf52840" in out.stdout and "sleep uA" in out.stdout


def test_power_model_arithmetic() -> None:
    p = load_profile("nrf52840")
    r = power_report(p, 100_000, 500, 50.0, 2.0, 225.0, 100.0)
    e_inf = 100_000 * 1.25 * 52.0 * 3.0 / 1e6  # cycles x uA/MHz x V -> uJ
    assert r["energy_per_inference_uj"] == pytest.approx(e_inf, rel=1e-4)
    t_inf, t_push = 100_000 * 1.25 / 64e6, 500 * 1.25 / 64e6
    e_push = 500 * 1.25 * 52.0 * 3.0 / 1e6
    sleep = 3.2 * 3.0
    avg = 2 * e_inf + 50 * e_push + sleep * (1 - 2 * t_inf - 50 * t_push)
    assert r["average_power_uw"] == pytest.approx(avg, rel=1e-4)
    assert r["battery_life_days"] == pytest.approx(225e3 * 3.0 / avg / 24, rel=1e-3)
    # at the highest rate within budget the average power is the budget
    top = power_report(p, 100_000, 500, 50.0, r["max_inference_rate_hz_within_budget"],
                       225.0, 100.0)
    assert top["average_power_uw"] == pytest.approx(100.0, rel=1e-3)
    assert r["within_power_budget"] == (avg <= 100.0)
    # a sleep floor above the budget: no rate fits
    hot = power_report(load_profile("cortex-m4f"), 100_000, 500, 50.0, 2.0, 225.0, 100.0)
    assert hot["max_inference_rate_hz_within_budget"] == 0 and not hot["within_power_budget"]


def _profile(tmp: Path, edit: tuple[str, str] | None = None, drop: str | None = None) -> Path:
    text = (PROFILE_DIR / "nrf52840.toml").read_text()
    if edit:
        assert edit[0] in text
        text = text.replace(*edit)
    if drop:
        text = "\n".join(ln for ln in text.splitlines() if not ln.startswith(drop))
    path = tmp / "board.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("edit", "drop", "fragments"), [
    (None, "sleep_current_ua", ["sleep_current_ua: missing"]),
    (('"-mfloat-abi=hard"', '"-mfloat-abi=soft"'), None, ["has_fpu = true", "hardware FPU"]),
    (('core = "cortex-m4"', 'core = "cortex-m3"'), None, ["lack -mcpu=cortex-m3"]),
    (('qemu_machine = "mps2-an386"', 'qemu_machine = "virt"'), None, ["qemu_machine 'virt'"]),
    (("sleep_current_ua = 3.2", "sleep_current_ua = 90000"), None, ["not below the run-mode"]),
    (("clock_hz = 64_000_000", "clock_hz = -1"), None, ["clock_hz"]),
])
def test_profile_files_with_missing_or_inconsistent_fields(
        csv_project: CsvProject, edit, drop, fragments: list[str]) -> None:
    path = _profile(csv_project.root, edit, drop)
    clear_profile_cache()
    csv_project.set_toml('name = "cortex-m4f"', f'name = "{path.name}"')
    assert_user_error(run_cli("run", str(csv_project.toml)), "board.toml", *fragments)
    assert not csv_project.out.exists()


def test_a_profile_file_of_your_own_budgets_and_powers_the_run(csv_project: CsvProject) -> None:
    path = _profile(csv_project.root, ("ram_bytes = 262_144", "ram_bytes = 48_000"))
    clear_profile_cache()
    csv_project.set_toml('name = "cortex-m4f"', f'name = "{path.name}"')
    csv_project.set_toml("[target]", "[target]\npower_budget_uw = 50\nbattery_mah = 1000")
    result = run_cli("run", str(csv_project.toml))
    assert result.exit_code == 0, result.stderr
    m = json.loads((csv_project.out / "metrics.json").read_text())
    r = m["resources"]["nrf52840"]
    assert r["ram_budget_bytes"] == 48_000 and r["measured_on"] == "qemu-mps2-an386"
    pw = m["power"]["nrf52840"]
    assert pw["battery_mah"] == 1000 and pw["power_budget_uw"] == 50
    assert pw["inference_rate_hz"] == pytest.approx(2.0)  # one per 500 ms stride
    assert pw["instructions_from"] == "qemu-mps2-an386"
    assert pw["energy_per_inference_uj"] == pytest.approx(
        load_profile(str(path)).energy_uj(r["instructions_mean"]), rel=1e-3)
    assert "Power" in (csv_project.out / "report.html").read_text()
    assert "uJ per inference" in result.stdout
