"""The PlatformIO library: library.json (PlatformIO's library.json specification), src/
with the library and an umbrella header, a portable example. Not built here (no
PlatformIO platforms offline): the layout is checked against the specification."""

from __future__ import annotations

import json
from pathlib import Path

from kiloml.export import examples
from kiloml.export.common import (
    HeldOut,
    PackageMeta,
    RunSource,
    library_files,
    umbrella_header,
)
from kiloml.export.readme import readme

EXAMPLE = "stream"
NOT_BUILT = ("This package is **not built here**: kiloml checks its layout against the "
             "PlatformIO library.json specification (required keys, types, paths that "
             "exist), not with PlatformIO itself.")


def manifest(run: RunSource, meta: PackageMeta, headers: list[str],
             example_files: list[str]) -> dict:
    p = run.pipeline
    description = (f"kiloml model library for project {p.name}: {p.n_classes} classes from "
                   f"{', '.join(p.channels)} at {p.input_rate_hz:g} Hz (verified C99, no "
                   f"malloc)")[:255]
    return {
        "name": meta.name,
        "version": meta.version,
        "description": description,
        "keywords": ["kiloml", "tinyml", "machine-learning", "classification", "sensors"],
        "authors": [{"name": meta.author, "maintainer": True}],
        "license": "Apache-2.0",
        "homepage": meta.url,
        "frameworks": "*",
        "platforms": "*",
        "headers": headers,
        "build": {"srcDir": "src", "includeDir": "src",
                  # parity with Python needs no fused multiply-add; the library uses libm
                  "flags": ["-ffp-contract=off", "-lm"]},
        "examples": [{"name": EXAMPLE, "base": f"examples/{EXAMPLE}",
                      "files": example_files}],
    }


def _body() -> str:
    return f"""## Install

Put this folder in your project's `lib/`, or add it to `lib_deps` (a path or a
repository URL), and `#include` the header. `library.json` builds `src/` with
`-ffp-contract=off`.

`examples/{EXAMPLE}/` streams the held-out recordings in `heldout_data.c` through the
library; `main.c` needs `board_init()` and `board_puts()` (`example_board.h`) from your
board. The CMake export (`kiloml export --format cmake`) has the same example built and
run for QEMU's mps2-an386.

{NOT_BUILT}
"""


def files(run: RunSource, meta: PackageMeta, data: HeldOut) -> dict[str, str | Path]:
    umbrella = f"{meta.name}.h"
    out: dict[str, str | Path] = {}
    out.update(library_files(run, "src"))
    headers = [run.api.header]
    if f"src/{umbrella}" not in out:
        out[f"src/{umbrella}"] = umbrella_header(run, meta.name)
        headers.insert(0, umbrella)
    ex = f"examples/{EXAMPLE}"
    example = {"main.c": examples.stream_example(run),
               "heldout_data.h": examples.heldout_header(data, run.pipeline.n_channels),
               "heldout_data.c": examples.heldout_source(data),
               "example_board.h": examples.BOARD_HEADER}
    out.update({f"{ex}/{k}": v for k, v in example.items()})
    out["library.json"] = json.dumps(manifest(run, meta, headers, sorted(example)),
                                     indent=2) + "\n"
    out["README.md"] = readme(run, meta.name, "PlatformIO library", _body(), data)
    return out
