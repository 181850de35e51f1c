"""`kiloml diff`'s job: two versions of a registry resolved, their packages read, the
recordings chosen, the behaviour diff run, and diff.json + diff.html written into a
folder kiloml marks as its own (kiloml.outputs), replaced whole when finished."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from kiloml.atomic import write_text_atomically
from kiloml.outputs import Protected, check_output_folder, make_staging, replace_folder
from kiloml.registry.contents import read_package
from kiloml.registry.diff import BehaviourDiff, behaviour_diff
from kiloml.registry.diff_report import render_diff
from kiloml.registry.integrity import intact_package
from kiloml.registry.recordings import folder_streams, held_out_streams
from kiloml.registry.store import Registry

KIND = "diff"
JSON_FILE, HTML_FILE = "diff.json", "diff.html"


def diff_versions(registry: Path, a: str, b: str, recordings: Path | None,
                  out: Path) -> BehaviourDiff:
    """B's behaviour against A's (versions or alias names), written into ``out``."""
    reg = Registry.open(registry)
    protected = [Protected("the registry", reg.path, folder=True)]
    if recordings is not None:
        protected.append(Protected("the recordings folder", recordings, folder=True))
    check_output_folder(out, KIND, protected, name="--out")
    va, vb = reg.resolve(a), reg.resolve(b)
    pa, pb = read_package(intact_package(reg, va), va), read_package(intact_package(reg, vb), vb)
    streams = held_out_streams(pa) if recordings is None else folder_streams(pa, recordings)
    diff = behaviour_diff(pa, pb, streams)
    diff.summary["a"]["name"], diff.summary["b"]["name"] = a, b
    write_diff(diff, out)
    return diff


def write_diff(diff: BehaviourDiff, out: Path) -> None:
    staging = make_staging(out, KIND)
    try:
        write_text_atomically(staging / JSON_FILE, json.dumps(diff.summary, indent=2) + "\n")
        write_text_atomically(staging / HTML_FILE, render_diff(diff))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    replace_folder(staging, out, KIND)  # (refused: it says where the results are left)
