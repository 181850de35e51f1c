"""Target profiles: one TOML data file per MCU class in ``profiles/``."""

from __future__ import annotations

import difflib
import re
import tomllib
from functools import cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from kiloml.errors import KilomlError

PROFILE_DIR = Path(__file__).parent / "profiles"
# The QEMU boards kiloml's harness knows the memory map of (kiloml/verify/mcu/build.py).
EMULATED_BOARDS = ("mps2-an385", "mps2-an386", "mps2-an500", "microbit")
# The compiler flags a profile may set: target options, optimization, plain macros.
SAFE_CFLAG = re.compile(r"-m[A-Za-z0-9_.+=-]+|-O[0-3sgz]?"
                        r"|-D[A-Za-z_][A-Za-z0-9_]*(=[A-Za-z0-9_.]*)?")
# Cores without the DSP extension (no SMLAD): ARMv6-M and ARMv7-M baseline.
NO_DSP_CORES = ("cortex-m0", "cortex-m0plus", "cortex-m1", "cortex-m3", "cortex-m23")


class TargetProfile(BaseModel):
    """What kiloml needs to know about a microcontroller to budget and build for it."""

    # strict: a string or a bool where a number belongs is an error, not coerced
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    # the name becomes a folder (verify/<name>) and appears in C: a plain identifier
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*$", max_length=64)
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
    sleep_current_ua: float = Field(gt=0)  # between inferences, RAM retained, timer awake
    supply_voltage_v: float = Field(gt=0)
    power_source: str  # where the current figures come from (datasheet, table)

    @model_validator(mode="after")
    def _consistent(self) -> TargetProfile:
        unsafe = [f for f in self.cflags if not SAFE_CFLAG.fullmatch(f)]
        if unsafe:
            # a profile file may come with someone else's project: flags such as -fplugin=
            # or -specs= would run their code in the compiler
            raise ValueError(f"cflags: {unsafe[0]!r} is not a target flag kiloml passes to "
                             f"the compiler (allowed: -mcpu=, -mthumb, -mfpu=, "
                             f"-mfloat-abi=, other -m options, -O levels, -DNAME[=value])")
        flags = " ".join(self.cflags)
        hard = "-mfloat-abi=hard" in flags or "-mfloat-abi=softfp" in flags
        if self.has_fpu != hard or (hard and "-mfpu=" not in flags):
            raise ValueError(f"has_fpu = {str(self.has_fpu).lower()} but cflags "
                             f"{self.cflags} {'do not ' if self.has_fpu else ''}select a "
                             f"hardware FPU (-mfpu=... -mfloat-abi=hard)")
        if f"-mcpu={self.core}" not in self.cflags:
            raise ValueError(f"core '{self.core}' but cflags {self.cflags} lack "
                             f"-mcpu={self.core}")
        if self.has_dsp_ext and self.core in NO_DSP_CORES:
            raise ValueError(f"has_dsp_ext = true but {self.core} has no DSP extension")
        if self.qemu_machine is not None and self.qemu_machine not in EMULATED_BOARDS:
            raise ValueError(f"qemu_machine '{self.qemu_machine}' is not one kiloml runs on "
                             f"({', '.join(EMULATED_BOARDS)})")
        if self.sleep_current_ua >= self.active_current_ua_per_mhz * self.clock_hz / 1e6:
            raise ValueError(f"sleep_current_ua {self.sleep_current_ua:g} is not below the "
                             f"run-mode current at {self.clock_hz / 1e6:g} MHz")
        return self

    @property
    def active_power_uw(self) -> float:
        return self.active_current_ua_per_mhz * self.clock_hz / 1e6 * self.supply_voltage_v

    @property
    def sleep_power_uw(self) -> float:
        return self.sleep_current_ua * self.supply_voltage_v

    def latency_us(self, instructions: float) -> float:
        return instructions * self.cycles_per_instruction / self.clock_hz * 1e6

    def energy_uj(self, instructions: float) -> float:
        """Energy of the active cycles: I = k * f, t = cycles / f, so E = k * V * cycles."""
        cycles = instructions * self.cycles_per_instruction
        return self.active_current_ua_per_mhz * self.supply_voltage_v * cycles / 1e6


def profile_names() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))


def _one_line(exc: ValidationError) -> str:
    parts = []
    for e in exc.errors():
        field = ".".join(str(x) for x in e["loc"]) or "profile"
        msg = "missing" if e["type"] == "missing" else e["msg"].removeprefix("Value error, ")
        parts.append(f"{field}: {msg}")
    return "; ".join(parts)


def load_profile(name: str) -> TargetProfile:
    """A built-in profile by name, or a profile file of your own (a path to a .toml,
    relative to the current folder)."""
    if name.endswith(".toml"):
        return _load_profile(str(Path(name).absolute()))
    return _load_profile(name)


def clear_profile_cache() -> None:
    """Forget profiles read so far (a profile file edited while the process runs)."""
    _load_profile.cache_clear()


@cache  # by absolute path: a relative one names another file after a change of folder
def _load_profile(name: str) -> TargetProfile:
    path = Path(name) if name.endswith(".toml") else PROFILE_DIR / f"{name}.toml"
    if name.endswith(".toml") and not path.is_file():
        raise KilomlError("target profile file not found", file=str(path))
    if not path.is_file() or ("/" in name and not name.endswith(".toml")):
        names = profile_names()
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise KilomlError(f"unknown target '{name}'{hint} (known: {', '.join(names)})")
    try:
        return TargetProfile.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError) as exc:
        raise KilomlError(f"cannot read the target profile: {exc}", file=str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise KilomlError(f"not valid TOML: {exc}", file=str(path)) from None
    except ValidationError as exc:
        raise KilomlError(f"target profile: {_one_line(exc)}", file=str(path)) from None
