"""Target profiles: one TOML data file per MCU class in ``profiles/``."""

from __future__ import annotations

import difflib
import tomllib
from functools import cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kiloml.errors import KilomlError

PROFILE_DIR = Path(__file__).parent / "profiles"


class TargetProfile(BaseModel):
    """What kiloml needs to know about a microcontroller to budget and build for it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str
    core: str
    clock_hz: int = Field(gt=0)
    ram_bytes: int = Field(gt=0)
    flash_bytes: int = Field(gt=0)
    has_fpu: bool
    has_dsp_ext: bool
    cflags: list[str]
    qemu_machine: str | None = None  # the emulated board kiloml verifies on, if any
    cycles_per_instruction: float = Field(gt=0)  # assumed, for latency from instruction counts
    active_current_ua_per_mhz: float = Field(gt=0)  # run-mode current, for energy
    supply_voltage_v: float = Field(gt=0)
    power_source: str

    def latency_us(self, instructions: float) -> float:
        return instructions * self.cycles_per_instruction / self.clock_hz * 1e6

    def energy_uj(self, instructions: float) -> float:
        """Energy of the active cycles: I = k * f, t = cycles / f, so E = k * V * cycles."""
        cycles = instructions * self.cycles_per_instruction
        return self.active_current_ua_per_mhz * self.supply_voltage_v * cycles / 1e6


def profile_names() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))


@cache
def load_profile(name: str) -> TargetProfile:
    path = PROFILE_DIR / f"{name}.toml"
    if not path.is_file():
        names = profile_names()
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise KilomlError(f"unknown target '{name}'{hint} (known: {', '.join(names)})")
    try:
        return TargetProfile.model_validate(tomllib.loads(path.read_text()))
    except (tomllib.TOMLDecodeError, ValidationError) as exc:
        raise KilomlError(f"broken target profile: {exc}", file=path) from None
