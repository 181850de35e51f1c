"""`kiloml info`: the identity of the kiloml libraries in an ELF image or a library folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def info_command(
        path: Annotated[Path, typer.Argument(
            help="A linked firmware or object (ELF), or a generated library folder")],
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False) -> None:
    """Model id, interface hash, kiloml version and creation time of each model."""
    from kiloml.codegen.identity import read_info

    records = read_info(path)
    if as_json:
        print(json.dumps(records, indent=1))
        return
    if not records:
        print(f"{path}: no model identity records")
    for r in records:
        check = r.get("content_matches_id")
        verdict = "" if check is None else (
            "; content matches the id" if check else "; content DIFFERS from the id (edited?)")
        print(f"{r['prefix']:<14} model id {r['model_id']}, interface {r['interface_hash']}, "
              f"kiloml {r['kiloml_version']}, created {r['created_utc']}{verdict}")
