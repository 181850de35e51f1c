"""kiloml export --format cmake: the package configures, builds and installs on the host;
a consumer finds it with find_package(CONFIG) against the install prefix and streams the
held-out recordings with Python's decisions; the bare-metal example cross-compiles with
the package's toolchain file for mps2-an386 and prints the same decisions over QEMU's
UART; the replay firmware builds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import assert_user_error, run_cli
from export_helpers import make_run, printed_decisions, python_decisions, qemu_run, sh

CONSUMER_CMAKE = """cmake_minimum_required(VERSION 3.16)
project(consumer C)
find_package(toy 0.1 CONFIG REQUIRED)
add_executable(consumer {example}/main.c {example}/heldout_data.c board_host.c)
target_include_directories(consumer PRIVATE {example})
target_link_libraries(consumer PRIVATE toy::toy)
"""
BOARD_HOST = """#include <stdio.h>
#include "example_board.h"
void board_init(void) {}
void board_puts(const char *s) { fputs(s, stdout); }
"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("export_cmake"))


@pytest.fixture(scope="module")
def package(run_dir: Path) -> Path:
    out = run_dir.parent / "pkg"
    result = run_cli("export", str(run_dir), "--format", "cmake", "--out", str(out))
    assert result.exit_code == 0, result.stderr
    assert "cmake package 'toy'" in result.stdout
    return out


def test_layout_and_readme(package: Path, run_dir: Path) -> None:
    for rel in ["CMakeLists.txt", "cmake/toyConfig.cmake", "cmake/arm-none-eabi.cmake",
                "examples/mps2_an386/CMakeLists.txt", "examples/replay/main.c",
                "board/mps2/mps2_an386.ld", "src/kml_config.h", "README.md"]:
        assert (package / rel).is_file(), rel
    # every file of the run's library but its own CMakeLists travels
    shipped = {p.name for p in (package / "src").iterdir()}
    library = {p.name for p in (run_dir / "firmware").iterdir()} - {"CMakeLists.txt"}
    assert shipped == library
    readme = (package / "README.md").read_text()
    for fragment in ("find_package(toy CONFIG REQUIRED)", "kml_push_sample", "50 Hz",
                     "| cortex-m4f |", "45/45 held-out windows", "QEMU mps2-an386",
                     "ax", "idle"):
        assert fragment in readme, fragment
    for path in package.rglob("*"):
        if path.suffix in {".c", ".h", ".ld", ".cmake"} or path.name == "CMakeLists.txt":
            assert "SPDX-License-Identifier: Apache-2.0" in path.read_text().splitlines()[0], \
                path


def test_install_and_find_package_on_the_host(package: Path, tmp_path: Path,
                                              run_dir: Path) -> None:
    build, prefix = tmp_path / "build", tmp_path / "prefix"
    sh("cmake", "-S", package, "-B", build, "-DCMAKE_BUILD_TYPE=Release")
    sh("cmake", "--build", build)
    sh("cmake", "--install", build, "--prefix", prefix)
    assert (prefix / "lib" / "libtoy.a").is_file()
    assert (prefix / "include" / "toy" / "kiloml_model.h").is_file()
    assert (prefix / "lib" / "cmake" / "toy" / "toyConfigVersion.cmake").is_file()
    consumer = tmp_path / "consumer"
    consumer.mkdir()
    example = package / "examples" / "mps2_an386"
    (consumer / "CMakeLists.txt").write_text(CONSUMER_CMAKE.format(example=example))
    (consumer / "board_host.c").write_text(BOARD_HOST)
    sh("cmake", "-S", consumer, "-B", consumer / "build", f"-DCMAKE_PREFIX_PATH={prefix}",
       "-DCMAKE_C_COMPILER=gcc")
    sh("cmake", "--build", consumer / "build")
    text = sh(consumer / "build" / "consumer")
    expected = python_decisions(run_dir)
    assert printed_decisions(text) == expected
    assert f"parity {len(expected)}/{len(expected)} decisions equal to Python" in text


def test_bare_metal_example_in_qemu(package: Path, tmp_path: Path, run_dir: Path) -> None:
    toolchain = package / "cmake" / "arm-none-eabi.cmake"
    for example, elf in [("mps2_an386", "toy_stream.elf"), ("replay", "toy_replay.elf")]:
        build = tmp_path / example
        sh("cmake", "-S", package / "examples" / example, "-B", build,
           f"-DCMAKE_TOOLCHAIN_FILE={toolchain}")
        sh("cmake", "--build", build)
        assert (build / elf).is_file()
    result = qemu_run(tmp_path / "mps2_an386" / "toy_stream.elf")
    expected = python_decisions(run_dir)
    assert result.returncode == 0, result.stdout[-500:]
    assert printed_decisions(result.stdout) == expected
    assert f"parity {len(expected)}/{len(expected)}" in result.stdout
    # the model's identity record survives the board's --gc-sections link
    from kiloml.codegen.identity import read_info

    m = json.loads((run_dir / "metrics.json").read_text())
    (record,) = read_info(tmp_path / "mps2_an386" / "toy_stream.elf")
    assert record["model_id"] == m["library"]["model_id"]


def test_bad_input(package: Path, run_dir: Path, tmp_path: Path) -> None:
    assert_user_error(run_cli("export", str(run_dir), "--format", "keil", "--out",
                              str(tmp_path / "x")), "unknown export format 'keil'", "cmake")
    assert_user_error(run_cli("export", str(run_dir), "--format", "cmake", "--out",
                              str(package)), "exists and is not empty")
    assert_user_error(run_cli("export", str(tmp_path), "--format", "cmake", "--out",
                              str(tmp_path / "y")), "not a run folder")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
