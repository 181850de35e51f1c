"""The `kiloml` command. Subcommands are thin wrappers over the library."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from kiloml.errors import KilomlError

app = typer.Typer(
    help="kiloml: from sensor recordings to a verified C library for microcontrollers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

TEMPLATE = Path(__file__).parent / "templates" / "kiloml.toml"


def user_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Print a KilomlError as one line on stderr and exit with code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except KilomlError as exc:
            sys.stderr.write(f"kiloml: error: {exc}\n")
            raise typer.Exit(2) from None

    return wrapper


@app.command()
@user_errors
def init(directory: Annotated[Path, typer.Argument(help="Folder for the new project")]) -> None:
    """Write a commented example kiloml.toml into DIRECTORY."""
    target = directory / "kiloml.toml"
    if target.exists():
        raise KilomlError("already exists; not overwriting", file=target)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        text = TEMPLATE.read_text().replace("{name}", _project_name(directory))
        target.write_text(text)
    except OSError as exc:
        raise KilomlError(f"cannot write: {exc.strerror or exc}", file=target) from None
    print(f"wrote {target}: edit [data] to point at your recordings, then run "
          f"`kiloml run {target}`")


def _project_name(directory: Path) -> str:
    import re

    name = re.sub(r"[^A-Za-z0-9_.-]", "-", directory.resolve().name).strip("-.")
    return name or "project"


@app.command()
@user_errors
def run(project: Annotated[Path, typer.Argument(help="kiloml.toml or its folder")] = Path(".")
        ) -> None:
    """Load, window, train, evaluate, emit the C library and verify it on the host."""
    from kiloml.run import run_project

    result = run_project(project)
    m = result.metrics
    ev, par = m["evaluation"], m["parity"]["host"]
    st = par["streaming"]
    out = result.output_dir
    print(f"library        {_rel(out / 'firmware')}/ (kiloml_model.h, kiloml_model.c "
                  f"and runtime)")
    print(f"report         {_rel(out / 'report.html')}")
    print(f"test accuracy  {ev['accuracy']:.4f} on {ev['n_test_windows']} windows of "
                  f"held-out groups {', '.join(ev['test_groups'])} (balanced "
                  f"{ev['balanced_accuracy']:.4f}, macro F1 {ev['macro_f1']:.4f})")
    print(f"parity (host)  {par['decisions_equal']}/{par['n']} decisions equal, "
                  f"max score diff {par['max_abs_score_diff']:.1e}, features "
                  f"{'bit-exact' if par['features_bit_exact'] else 'differ'}; streaming "
                  f"{st['decisions_equal']}/{st['n_windows']} equal")
    for target, r in m["resources"].items():
        print(f"resources      {target}: flash {r['flash_bytes']:,} B "
                      f"({r['flash_fraction']:.1%} of {r['flash_budget_bytes']:,}), RAM "
                      f"{r['ram_bytes']:,} B ({r['ram_fraction']:.1%} of "
                      f"{r['ram_budget_bytes']:,}) [{r['status']}, {r['measured_on']}]")
        for note in r["notes"]:
            print(f"               {note}")
    if not result.ok:
        sys.stderr.write("kiloml: the library failed verification or its budget "
                         f"(see {_rel(out / 'report.html')})\n")
        raise typer.Exit(1)


@app.command()
@user_errors
def targets() -> None:
    """List the target profiles."""
    from kiloml.targets.profiles import load_profile, profile_names

    for name in profile_names():
        p = load_profile(name)
        print(f"{p.name:<15} {p.clock_hz / 1e6:>5.0f} MHz  RAM {p.ram_bytes // 1024:>5} KB  "
              f"flash {p.flash_bytes // 1024:>5} KB  fpu={'yes' if p.has_fpu else 'no ':<3} "
              f"dsp={'yes' if p.has_dsp_ext else 'no'}  {p.description}")


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def main() -> None:
    app()
