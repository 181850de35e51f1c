"""The Zephyr module: zephyr/module.yml (build: cmake and kconfig), a CMakeLists.txt
that adds the library with zephyr_library_named() when its Kconfig option is set, and
the Kconfig. Not built here (no Zephyr tree offline): the layout is checked against
Zephyr's module specification."""

from __future__ import annotations

from pathlib import Path

from kiloml.export import examples
from kiloml.export.common import HeldOut, PackageMeta, RunSource, library_files
from kiloml.export.readme import readme

NOT_BUILT = ("This module is **not built here**: kiloml checks its layout against "
             "Zephyr's module specification (zephyr/module.yml's build keys, the CMake and "
             "Kconfig files they name, the option guarding the library), not with west.")


def kconfig_symbol(meta: PackageMeta) -> str:
    return f"KILOML_{meta.name.upper()}"


def module_yml(meta: PackageMeta) -> str:
    return f"""# SPDX-License-Identifier: Apache-2.0
name: {meta.name}
build:
  cmake: .
  kconfig: Kconfig
"""


def cmake(run: RunSource, meta: PackageMeta) -> str:
    sym = kconfig_symbol(meta)
    sources = "\n".join(f"    src/{s}" for s in run.sources)
    return f"""# SPDX-License-Identifier: Apache-2.0
# kiloml model library "{meta.name}" (project {run.pipeline.name}) as a Zephyr module:
# enabled by CONFIG_{sym}=y in prj.conf.
if(CONFIG_{sym})
  zephyr_library_named({meta.name})
  zephyr_library_sources(
{sources}
  )
  zephyr_include_directories(src)
  # parity with the Python reference needs a*b+c rounded twice: no fused multiply-add
  zephyr_library_compile_options(-ffp-contract=off)
endif()
"""


def kconfig(run: RunSource, meta: PackageMeta) -> str:
    p = run.pipeline
    lines = [f"config {kconfig_symbol(meta)}",
             f'\tbool "kiloml model library {meta.name}"',
             "\thelp",
             f"\t  The verified C99 library of kiloml project {p.name}: {p.n_classes} classes",
             f"\t  from {', '.join(p.channels)} at {p.input_rate_hz:g} Hz. Static state, no",
             "\t  malloc; it needs the C library's math functions (newlib or picolibc)."]
    return "# SPDX-License-Identifier: Apache-2.0\n" + "\n".join(lines) + "\n"


def _body(meta: PackageMeta, run: RunSource) -> str:
    return f"""## Use

List this folder as a module (`ZEPHYR_EXTRA_MODULES=/path/to/{meta.name}` or a west
manifest entry), set `CONFIG_{kconfig_symbol(meta)}=y` in `prj.conf` and
`#include "{run.api.header}"`. `examples/stream/` holds the portable stream example
(`main.c` needs `board_init()` / `board_puts()`, e.g. over `printk`).

{NOT_BUILT}
"""


def files(run: RunSource, meta: PackageMeta, data: HeldOut) -> dict[str, str | Path]:
    out: dict[str, str | Path] = {}
    out.update(library_files(run, "src"))
    out.update({
        "zephyr/module.yml": module_yml(meta),
        "CMakeLists.txt": cmake(run, meta),
        "Kconfig": kconfig(run, meta),
        "examples/stream/main.c": examples.stream_example(run),
        "examples/stream/heldout_data.h": examples.heldout_header(data, run.pipeline.n_channels),
        "examples/stream/heldout_data.c": examples.heldout_source(data),
        "examples/stream/example_board.h": examples.BOARD_HEADER,
        "README.md": readme(run, meta.name, "Zephyr module", _body(meta, run), data),
    })
    return out
