"""`kiloml release`, `kiloml registry list | show | verify`, `kiloml promote`, `kiloml
rollback`: thin commands over kiloml.registry (docs/registry.md). The modules they call
are imported when a command runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kiloml.cli_errors import user_errors
from kiloml.display import shown_path

__all__ = ["promote_command", "registry_app", "release_command", "rollback_command"]

registry_app = typer.Typer(help="A model registry: its versions, their model cards and "
                           "manifests, every file's hash checked.", no_args_is_help=True)

REG_HELP = "The registry folder"
PIPE_WIDTH = 200


def release_command(
    run_dir: Annotated[Path, typer.Argument(help="A finished `kiloml run` output folder")],
    registry: Annotated[Path, typer.Option("--registry", help="The registry folder (made "
                                           "when missing)")],
    version: Annotated[str, typer.Option("--version", help="MAJOR.MINOR.PATCH, new in the "
                                         "registry")],
    notes: Annotated[str | None, typer.Option("--notes", help="Release notes (kept in the "
                                              "model card)")] = None,
    project: Annotated[Path | None, typer.Option(
        "--project", help="The project file the run was made from (default: the "
        "kiloml.toml above RUN_DIR whose output folder it is)")] = None,
    allow_no_device_parity: Annotated[bool, typer.Option(
        "--allow-no-device-parity", help="Release a run whose parity was checked on the "
        "host only (--no-emulator); its card says so and the gate refuses it")] = False,
    signing_key: Annotated[Path | None, typer.Option(
        "--signing-key", help="An Ed25519 private key (PEM/DER PKCS#8 or OpenSSH) to sign "
        "the parameter blob model.kmlb with (an updatable library)")] = None,
) -> None:
    """Release a finished run as an immutable, content-addressed version of a registry:
    its C library, metrics, reference, pipeline, project file, model card and manifest."""
    from kiloml.registry.release import release

    done = release(run_dir, registry, version, notes=notes, project=project,
                   allow_no_device_parity=allow_no_device_parity, signing_key=signing_key)
    print(f"released       {done.version} -> {shown_path(done.folder)}/ ({done.n_files} "
          "files and manifest.json)")
    if done.blob is not None:
        print(f"blob           model.kmlb ({done.blob}): the parameters as a model update "
              "for devices running an updatable library of the same layout")
    if not done.device_parity:
        print("warning        parity checked on the host only (--allow-no-device-parity): "
              "the gate will refuse this version until it is verified on the emulated MCU")


@registry_app.command("list")
@user_errors
def list_command(registry: Annotated[Path, typer.Argument(help=REG_HELP)]) -> None:
    """The versions: when released, model id, aliases, latest gate."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from kiloml.progress import console
    from kiloml.registry.store import Registry

    # a pipe or a file: rows whole, for grep
    out = console if console.is_terminal else Console(highlight=False, width=PIPE_WIDTH)
    reg = Registry.open(registry)
    aliases = reg.aliases()
    table = Table(title=Text(f"registry {shown_path(reg.path)}"))
    for column in ("version", "released", "model id", "aliases", "gate"):
        table.add_column(column, no_wrap=column != "aliases")
    for v in reg.versions():
        info = reg.version_info(v)
        names = ", ".join(a for a, target in aliases.items() if target == v)
        cells = (v, info["released_utc"], info["model_id"], names or "-",
                 gate_status(reg.gate_result(v)))
        table.add_row(*(Text(c) for c in cells))  # Text, not markup: the files are data
    if not reg.versions():
        table.add_row("-", "(no versions yet)", "", "", "")
    out.print(table)
    shown = ", ".join(f"{a} {v or '-'}" for a, v in aliases.items())
    out.print(Text(f"aliases        {shown}"))


def gate_status(result: dict | None) -> str:
    if result is None:
        return "not gated"
    if result["passed"]:
        against = result.get("against")
        return "passed" + (f" (vs {against})" if against else "")
    failed = [str(c.get("name", "?")) for c in result.get("checks", [])
              if isinstance(c, dict) and not c.get("passed", False)]
    return "FAILED" + (f": {', '.join(failed)}" if failed else "")


@registry_app.command("show")
@user_errors
def show_command(registry: Annotated[Path, typer.Argument(help=REG_HELP)],
                 name: Annotated[str, typer.Argument(
                     help="A version or an alias (production, canary, previous)")
                 ] = "production") -> None:
    """A version's model card and manifest summary (default: production)."""
    from kiloml.registry.card import CARD_MD
    from kiloml.registry.store import Registry

    reg = Registry.open(registry)
    version = reg.resolve(name)
    folder = reg.package_dir(version)
    manifest = reg.manifest(version)
    info = reg.version_info(version)
    print(read_card(folder / CARD_MD), end="")
    files = manifest.get("files", {})
    size = sum((folder / f).stat().st_size for f in files if (folder / f).is_file())
    names = [a for a, v in reg.aliases().items() if v == version]
    print("\n## Package\n")
    print(f"- version {version}" + (f" ({', '.join(names)})" if names else "")
          + f", released {info['released_utc']}")
    print(f"- package {info['package']}: {len(files)} files, {size:,} bytes "
          f"(manifest.json lists their SHA-256)")
    print(f"- gate: {gate_status(reg.gate_result(version))}")


def read_card(path: Path) -> str:
    from kiloml.errors import KilomlError

    try:
        if path.is_symlink() or not path.is_file():
            raise KilomlError("missing from the package (`kiloml registry verify` checks "
                              "it)", file=path)
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KilomlError(f"cannot read: {exc}", file=path) from None


@registry_app.command("verify")
@user_errors
def verify_command(registry: Annotated[Path, typer.Argument(help=REG_HELP)],
                   name: Annotated[str | None, typer.Argument(
                       help="A version or an alias (default: every version)")] = None
                   ) -> None:
    """Re-hash every file of every package (or one) against its manifest; a changed,
    missing or extra file is named (exit 2)."""
    from kiloml.registry.integrity import verify_aliases, verify_version
    from kiloml.registry.store import Registry

    reg = Registry.open(registry)
    versions = reg.versions() if name is None else [reg.resolve(name)]
    for v in versions:
        checked = verify_version(reg, v)
        print(f"ok             {v}: {checked.n_files} files, {checked.n_bytes:,} bytes, "
              f"package {checked.package[:16]}")
    verify_aliases(reg)
    print(f"verified       {len(versions)} version{'s' if len(versions) != 1 else ''}")


def promote_command(
    registry: Annotated[Path, typer.Argument(help=REG_HELP)],
    version: Annotated[str, typer.Argument(help="A version (or an alias: canary)")],
    to: Annotated[str, typer.Option("--to", help="production or canary")],
) -> None:
    """Point production or canary at a version whose latest gate passed (promoting to
    production moves the old production to previous)."""
    from kiloml.registry.aliases import promote
    from kiloml.registry.store import Registry

    for c in promote(Registry.open(registry), version, to):
        print(f"{c.alias:<14} {c.old or '-'} -> {c.new or '-'}")


def rollback_command(registry: Annotated[Path, typer.Argument(help=REG_HELP)]) -> None:
    """Production back to the previous version."""
    from kiloml.registry.aliases import rollback
    from kiloml.registry.store import Registry

    for c in rollback(Registry.open(registry)):
        print(f"{c.alias:<14} {c.old or '-'} -> {c.new or '-'}")
