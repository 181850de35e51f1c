"""`kiloml blob inspect FILE` and `kiloml blob check FILE --firmware RUN_DIR`."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from kiloml.cli_errors import user_errors
from kiloml.errors import KilomlError

__all__ = ["blob_app"]

blob_app = typer.Typer(help="Parameter blobs (model.kmlb): model updates without "
                       "reflashing code.", no_args_is_help=True)
MAX_BLOB_BYTES = 64 << 20


def read_blob(path: Path) -> bytes:
    from kiloml.display import shown_path
    try:
        if path.stat().st_size > MAX_BLOB_BYTES:
            raise KilomlError(f"{shown_path(path)} is larger than {MAX_BLOB_BYTES >> 20} MiB")
        return path.read_bytes()
    except OSError as exc:
        raise KilomlError(f"{shown_path(path)} cannot be read: {exc.strerror or exc}") from None


@blob_app.command("inspect")
@user_errors
def inspect_command(
    file: Annotated[Path, typer.Argument(help="A model.kmlb")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """The header (model id, interface and layout hashes, counter, signed?) and the
    sections, with the magic, version, length and SHA-256 checked."""
    from kiloml.blob.build import describe

    info = describe(read_blob(file))
    if as_json:
        print(json.dumps(info, indent=1))
        return
    for key in ("bytes", "model_id", "interface_hash", "layout_hash", "counter", "signed",
                "sha256"):
        print(f"{key:15s}{info[key]}")
    if "forest" in info:
        f = info["forest"]
        print(f"{'forest':15s}{f['n_trees']} trees, {f['n_nodes']} nodes, {f['n_classes']} "
              f"classes, {f['n_features']} features, leaf mode {f['proba']}")
    if "network" in info:
        n = info["network"]
        print(f"{'network':15s}{n['int8_bytes']:,d} B of int8 weights, {n['words']:,d} "
              "parameter words")
    for s in info["sections"]:
        print(f"{'section':15s}{s['tag']:3d} {s['name']:12s} {s['bytes']:8,d} B"
              + (" (optional)" if s["optional"] else ""))


@blob_app.command("check")
@user_errors
def check_command(
    file: Annotated[Path, typer.Argument(help="A model.kmlb")],
    firmware: Annotated[Path, typer.Option("--firmware", help="The run folder of the "
                                           "library on the device (built updatable)")],
    min_counter: Annotated[int, typer.Option("--min-counter", min=0, max=0xFFFFFFFF,
                                             help="The device's anti-rollback minimum")] = 0,
    allow_downgrade: Annotated[bool, typer.Option(
        "--allow-downgrade", help="Accept a counter below --min-counter")] = False,
) -> None:
    """What the device would answer: the run's library (regenerated from its pipeline, not
    the folder's C) compiled for this host runs kml_blob_activate on the blob."""
    from kiloml.blob.check import check_on_host

    with tempfile.TemporaryDirectory(prefix="kiloml-blob-") as work:
        reason, detail = check_on_host(read_blob(file), firmware, Path(work),
                                       min_counter=min_counter,
                                       allow_downgrade=allow_downgrade)
    if reason != "ok":
        raise KilomlError(f"the library refuses this blob: {reason}{detail}")
    print(f"ok: the library takes this blob ({detail.strip()})")
