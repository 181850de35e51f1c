"""`kiloml gate`'s job: the version and its baseline resolved in the registry, the
checks run (kiloml.registry.gate) with the [gate] limits of the version's own project
file, the result stored with ``Registry.write_gate_result`` and shown as a table."""

from __future__ import annotations

from pathlib import Path

from kiloml.registry.contents import read_package
from kiloml.registry.gate import Baseline, gate_checks, gate_result
from kiloml.registry.integrity import intact_package
from kiloml.registry.store import Registry


def baseline_version(reg: Registry, against: str) -> str | None:
    """The baseline's version; None when ``against`` is an alias that points nowhere yet."""
    if against in reg.aliases() and reg.aliases()[against] is None:
        return None
    return reg.resolve(against)


def gate_version(registry: Path, name: str, against: str) -> dict:
    reg = Registry.open(registry)
    version = reg.resolve(name)
    base = baseline_version(reg, against)
    package = read_package(intact_package(reg, version), version)
    limits = package.project().config.gate
    baseline = None if base is None else Baseline(base, read_package(intact_package(reg, base),
                                                                     base))
    result = gate_result(version, baseline, gate_checks(package, version, baseline, limits))
    reg.write_gate_result(version, result)
    return result


def _shown(name: str, x: object, *, limit: bool = False) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool) or not isinstance(x, int | float):
        return str(x)
    if name.startswith("parity") or name in ("changed_fraction", "budgets"):
        return f"{100 * x:.2f}%"
    if name.endswith("_drop"):  # the value is signed: a gain is negative
        return f"{x:.2f} points" if limit else f"{x:+.2f} points"
    return f"{x:,.2f}"


def print_gate(result: dict) -> None:
    from rich.markup import escape
    from rich.table import Table

    from kiloml.progress import console

    against = result["against"] or "no baseline"
    table = Table(title=f"gate {result['version']} against {against}", title_justify="left")
    for column, justify in (("check", "left"), ("value", "right"), ("limit", "right"),
                            ("result", "left"), ("detail", "left")):
        table.add_column(column, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for c in result["checks"]:
        table.add_row(c["name"], _shown(c["name"], c["value"]),
                      _shown(c["name"], c["limit"], limit=True),
                      "[green]pass[/green]" if c["passed"] else "[bold red]FAIL[/bold red]",
                      escape(c["detail"]))
    console.print(table)
    failed = [c["name"] for c in result["checks"] if not c["passed"]]
    console.print(f"gate           {result['version']}: " + (
        "passed" if not failed else f"FAILED ({', '.join(failed)})")
        + f"; stored in gates/{result['version']}.json")
