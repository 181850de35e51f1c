"""Budget check with headroom: warn above ``warn_fraction`` of a budget, fail above 100%."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from kiloml.project import TargetConfig
from kiloml.targets.profiles import TargetProfile


@dataclass(frozen=True)
class Budget:
    flash_budget_bytes: int
    ram_budget_bytes: int
    warn_fraction: float

    @classmethod
    def for_target(cls, profile: TargetProfile, config: TargetConfig) -> Budget:
        return cls(
            flash_budget_bytes=config.flash_budget_bytes or profile.flash_bytes,
            ram_budget_bytes=config.ram_budget_bytes or profile.ram_bytes,
            warn_fraction=config.warn_fraction,
        )


@dataclass(frozen=True)
class BudgetCheck:
    flash_bytes: int
    ram_bytes: int
    flash_budget_bytes: int
    ram_budget_bytes: int
    flash_fraction: float
    ram_fraction: float
    status: str  # "ok", "warn" (above warn_fraction) or "fail" (above the budget)
    within_budget: bool
    notes: list[str]

    def as_dict(self) -> dict:
        return asdict(self)


def check_budget(flash_bytes: int, ram_bytes: int, budget: Budget) -> BudgetCheck:
    flash_fraction = flash_bytes / budget.flash_budget_bytes
    ram_fraction = ram_bytes / budget.ram_budget_bytes
    notes: list[str] = []
    status = "ok"
    for what, used, limit, frac in (
        ("flash", flash_bytes, budget.flash_budget_bytes, flash_fraction),
        ("RAM", ram_bytes, budget.ram_budget_bytes, ram_fraction),
    ):
        if frac > 1.0:
            status = "fail"
            notes.append(f"{what} {used} B is over the budget of {limit} B ({frac:.0%})")
        elif frac > budget.warn_fraction:
            status = "warn" if status == "ok" else status
            notes.append(f"{what} {used} B uses {frac:.0%} of the budget of {limit} B "
                         f"(above {budget.warn_fraction:.0%})")
    return BudgetCheck(
        flash_bytes=flash_bytes,
        ram_bytes=ram_bytes,
        flash_budget_bytes=budget.flash_budget_bytes,
        ram_budget_bytes=budget.ram_budget_bytes,
        flash_fraction=round(flash_fraction, 6),
        ram_fraction=round(ram_fraction, 6),
        status=status,
        within_budget=status != "fail",
        notes=notes,
    )
