"""`kiloml gate REG VERSION [--against production]`: the release gate's checks as a table,
the result stored in the registry (gates/<X.Y.Z>.json); exit 0 only when every check
passes, 1 when one fails, 2 for bad input. The checks are imported when it runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["gate_command"]


def gate_command(
    registry: Annotated[Path, typer.Argument(help="The registry folder")],
    version: Annotated[str, typer.Argument(help="The version to gate (or an alias)")],
    against: Annotated[str, typer.Option(
        "--against", help="The baseline: a version or an alias (an alias that points at no "
        "version yet: no baseline)")] = "production",
) -> None:
    """Check a released version before it may be promoted: parity on the host and the
    emulated MCU, budgets, accuracy and false alarms, the decisions that change against
    the baseline, the interface."""
    from kiloml.registry.gate_run import gate_version, print_gate

    result = gate_version(registry, version, against)
    print_gate(result)
    if not result["passed"]:
        raise typer.Exit(1)
