"""The `kiloml export` command (registered by kiloml.cli)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def export_command(
        run_dir: Annotated[Path, typer.Argument(help="A run folder (`kiloml run`'s output)")],
        fmt: Annotated[str, typer.Option("--format", help="cmake | arduino | platformio | "
                                                          "zephyr")],
        out: Annotated[Path, typer.Option("--out", help="A new or empty folder")],
        name: Annotated[str | None, typer.Option(
            "--name", help="Package name (default: the project's name)")] = None,
        version: Annotated[str, typer.Option(
            "--package-version", help="Package version MAJOR.MINOR.PATCH")] = "0.1.0",
        author: Annotated[str | None, typer.Option(
            "--author", help="Author and maintainer in the package metadata")] = None,
        url: Annotated[str | None, typer.Option(
            "--url", help="The package's home page (default: a placeholder)")] = None,
) -> None:
    """Export the run's verified library as a firmware package: a CMake package
    (find_package, install, arm-none-eabi toolchain file, mps2-an386 examples), an Arduino
    library, a PlatformIO library or a Zephyr module."""
    from kiloml.export import DEFAULT_AUTHOR, export_run

    o = export_run(run_dir, fmt, out, name=name, version=version,
                   author=author or DEFAULT_AUTHOR, url=url)
    print(f"export         {o.format} package '{o.name}' in {o.out}: {o.n_files} files; "
          f"examples carry {o.n_windows} held-out windows ({o.n_samples:,} samples)")
