"""The CMake package: a static library target with install rules and a package config
(``find_package(<name> CONFIG)`` after ``cmake --install``), an arm-none-eabi toolchain
file, and two bare-metal examples for QEMU's mps2-an386: the stream example (held-out
recordings built in, decisions printed over UART0) and the replay firmware `kiloml
replay` talks to."""

from __future__ import annotations

from pathlib import Path

from kiloml.export import examples
from kiloml.export.common import HeldOut, PackageMeta, RunSource, board_files, library_files
from kiloml.export.readme import readme

SPDX = "# SPDX-License-Identifier: Apache-2.0"
STREAM_TARGET = "{name}_stream"  # examples/mps2_an386 -> <name>_stream.elf
REPLAY_TARGET = "{name}_replay"  # examples/replay -> <name>_replay.elf


def _root_cmake(run: RunSource, name: str, version: str) -> str:
    sources = "\n".join(f"  src/{s}" for s in run.sources)
    headers = "\n".join(f"  src/{h}" for h in run.headers)
    up = name.upper()
    return f"""{SPDX}
# kiloml model library "{name}" (project {run.pipeline.name}), exported by kiloml.
#   add_subdirectory(path/to/{name})  ->  target {name}::{name}
#   or: cmake -S . -B build && cmake --build build && cmake --install build --prefix P
#       then find_package({name} CONFIG REQUIRED) with CMAKE_PREFIX_PATH=P
cmake_minimum_required(VERSION 3.16)
project({name} VERSION {version} LANGUAGES C)

include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set({up}_SOURCES
{sources}
)
set({up}_HEADERS
{headers}
)

add_library({name} STATIC ${{{up}_SOURCES}})
add_library({name}::{name} ALIAS {name})
target_include_directories({name} PUBLIC
  $<BUILD_INTERFACE:${{CMAKE_CURRENT_SOURCE_DIR}}/src>
  $<INSTALL_INTERFACE:${{CMAKE_INSTALL_INCLUDEDIR}}/{name}>)
set_target_properties({name} PROPERTIES C_STANDARD 99 C_STANDARD_REQUIRED ON
  C_EXTENSIONS OFF)
# Parity with the Python reference needs a*b+c rounded twice: no fused multiply-add.
target_compile_options({name} PRIVATE
  $<$<C_COMPILER_ID:GNU,Clang,AppleClang>:-ffp-contract=off>)
if(NOT MSVC)
  target_link_libraries({name} PUBLIC m)
endif()

if(CMAKE_SOURCE_DIR STREQUAL CMAKE_CURRENT_SOURCE_DIR)
  set(_{name}_top ON)
else()
  set(_{name}_top OFF)
endif()
option({up}_INSTALL "Install {name} and its CMake package config" ${{_{name}_top}})
if({up}_INSTALL)
  set({up}_CMAKE_DIR ${{CMAKE_INSTALL_LIBDIR}}/cmake/{name})
  install(TARGETS {name} EXPORT {name}Targets
    ARCHIVE DESTINATION ${{CMAKE_INSTALL_LIBDIR}}
    INCLUDES DESTINATION ${{CMAKE_INSTALL_INCLUDEDIR}}/{name})
  install(FILES ${{{up}_HEADERS}} DESTINATION ${{CMAKE_INSTALL_INCLUDEDIR}}/{name})
  install(EXPORT {name}Targets NAMESPACE {name}:: DESTINATION ${{{up}_CMAKE_DIR}})
  write_basic_package_version_file(
    ${{CMAKE_CURRENT_BINARY_DIR}}/{name}ConfigVersion.cmake
    VERSION ${{PROJECT_VERSION}} COMPATIBILITY SameMajorVersion)
  install(FILES cmake/{name}Config.cmake
    ${{CMAKE_CURRENT_BINARY_DIR}}/{name}ConfigVersion.cmake
    DESTINATION ${{{up}_CMAKE_DIR}})
endif()
"""


def _config(name: str) -> str:
    return f"""{SPDX}
# find_package({name} CONFIG): the imported target {name}::{name} (static library, its
# headers, libm).
include("${{CMAKE_CURRENT_LIST_DIR}}/{name}Targets.cmake")
set({name}_FOUND TRUE)
"""


TOOLCHAIN = f"""{SPDX}
# Cross-compiling for bare-metal Arm Cortex-M with the GNU Arm toolchain:
#   cmake -S examples/mps2_an386 -B build-arm -DCMAKE_TOOLCHAIN_FILE=cmake/arm-none-eabi.cmake
# The core defaults to the Cortex-M4F of mps2-an386; set KILOML_ARM_CPU_FLAGS for another
# (e.g. "-mcpu=cortex-m0plus -mthumb", "-mcpu=cortex-m7 -mthumb -mfpu=fpv5-d16
# -mfloat-abi=hard").
set(CMAKE_SYSTEM_NAME Generic)
set(CMAKE_SYSTEM_PROCESSOR arm)

set(KILOML_ARM_PREFIX "arm-none-eabi-" CACHE STRING "prefix of the cross tools")
set(KILOML_ARM_CPU_FLAGS "-mcpu=cortex-m4 -mthumb -mfpu=fpv4-sp-d16 -mfloat-abi=hard"
    CACHE STRING "core, instruction set and floating-point ABI")

set(CMAKE_C_COMPILER ${{KILOML_ARM_PREFIX}}gcc)
set(CMAKE_CXX_COMPILER ${{KILOML_ARM_PREFIX}}g++)
set(CMAKE_ASM_COMPILER ${{KILOML_ARM_PREFIX}}gcc)
# no operating system to link a test program for: configure checks compile only
set(CMAKE_TRY_COMPILE_TARGET_TYPE STATIC_LIBRARY)

set(CMAKE_C_FLAGS_INIT "${{KILOML_ARM_CPU_FLAGS}} -ffunction-sections -fdata-sections")
set(CMAKE_CXX_FLAGS_INIT "${{KILOML_ARM_CPU_FLAGS}} -ffunction-sections -fdata-sections")
set(CMAKE_ASM_FLAGS_INIT "${{KILOML_ARM_CPU_FLAGS}}")
set(CMAKE_EXE_LINKER_FLAGS_INIT
    "${{KILOML_ARM_CPU_FLAGS}} -Wl,--gc-sections --specs=nano.specs --specs=nosys.specs")

set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
"""


def _example_cmake(name: str, target: str, sources: list[str], what: str,
                   extra: str = "") -> str:
    up = name.upper()
    listed = "\n".join(f"  {s}" for s in sources)
    return f"""{SPDX}
# {what}
#   cmake -S . -B build -DCMAKE_TOOLCHAIN_FILE=../../cmake/arm-none-eabi.cmake
#   cmake --build build
#   qemu-system-arm -M mps2-an386 -nographic -monitor none -serial stdio \\
#     -semihosting-config enable=on,target=native -kernel build/{target}.elf
cmake_minimum_required(VERSION 3.16)
project({target} C)

if(NOT CMAKE_BUILD_TYPE)
  set(CMAKE_BUILD_TYPE MinSizeRel CACHE STRING "" FORCE)
endif()

set({up}_PACKAGE ${{CMAKE_CURRENT_LIST_DIR}}/../..)
set(MPS2_BOARD ${{{up}_PACKAGE}}/board/mps2)
# the library: from this package's sources, or an installed one (find_package)
option({up}_FROM_INSTALL "use an installed {name} (find_package) instead of its sources" OFF)
if({up}_FROM_INSTALL)
  find_package({name} CONFIG REQUIRED)
else()
  add_subdirectory(${{{up}_PACKAGE}} ${{CMAKE_CURRENT_BINARY_DIR}}/{name})
endif()

add_executable({target}
{listed}
  ${{MPS2_BOARD}}/mps2_startup.c
  ${{MPS2_BOARD}}/mps2_uart.c
  ${{MPS2_BOARD}}/mps2_exit.c
)
target_include_directories({target} PRIVATE ${{CMAKE_CURRENT_LIST_DIR}} ${{MPS2_BOARD}})
target_compile_options({target} PRIVATE -Wall -Wextra)
target_link_libraries({target} PRIVATE {name}::{name})
target_link_options({target} PRIVATE -T${{MPS2_BOARD}}/mps2_an386.ld -nostartfiles)
set_target_properties({target} PROPERTIES SUFFIX .elf
  LINK_DEPENDS ${{MPS2_BOARD}}/mps2_an386.ld)
{extra}"""


def _body(name: str) -> str:
    stream, replay = STREAM_TARGET.format(name=name), REPLAY_TARGET.format(name=name)
    return f"""## Build and install

```sh
cmake -S . -B build && cmake --build build        # host (or any) compiler
cmake --install build --prefix /opt/{name}          # lib/, include/{name}/, lib/cmake/{name}/
```

Then in your project (`-DCMAKE_PREFIX_PATH=/opt/{name}`):

```cmake
find_package({name} CONFIG REQUIRED)
target_link_libraries(app PRIVATE {name}::{name})
```

or, without installing, `add_subdirectory(path/to/{name})` and the same
`target_link_libraries`. The library compiles with `-ffp-contract=off` (kept in its own
compile options; your flags do not reach it through the target).

## Bare-metal examples (QEMU mps2-an386, Cortex-M4F)

`cmake/arm-none-eabi.cmake` is a toolchain file for the GNU Arm toolchain
(`arm-none-eabi-gcc`); `board/mps2/` the start-up, linker script and UART driver of the
MPS2 AN386 board.

- `examples/mps2_an386/`: streams the held-out recordings in `heldout_data.c` through the
  library and prints one line per decision over UART0, then the parity count:

  ```sh
  cmake -S examples/mps2_an386 -B build-arm -DCMAKE_TOOLCHAIN_FILE=cmake/arm-none-eabi.cmake
  cmake --build build-arm
  qemu-system-arm -M mps2-an386 -nographic -monitor none -serial stdio \\
      -semihosting-config enable=on,target=native -kernel build-arm/{stream}.elf
  ```

  Output: `decision <recording> <sample> <label> <class>` per window, then
  `parity <equal>/<windows> decisions equal to Python`; the program exits 0 when all are.
  `main.c` needs only `board_init()` and `board_puts()` (`example_board.h`): port
  `board_mps2.c` to run it on another board.

- `examples/replay/`: the firmware `kiloml replay RUN_DIR --port PORT` talks to
  (hardware in the loop). Build it as above (`build-replay/{replay}.elf`,
  `-DREPLAY_BAUD=115200`), flash it, or run it in QEMU with UART0 on a port:

  ```sh
  qemu-system-arm -M mps2-an386 -nographic -monitor none \\
      -serial tcp:127.0.0.1:4321,server=on,wait=off,nodelay=on \\
      -kernel build-replay/{replay}.elf &
  kiloml replay RUN_DIR --port socket://127.0.0.1:4321
  ```

  The framing is documented at the top of `examples/replay/main.c`. (`nodelay=on`: the
  firmware answers each sample with a short line, which Nagle's algorithm would hold
  for the host's delayed acknowledgement, some 40 ms a sample.)
"""


def files(run: RunSource, meta: PackageMeta, data: HeldOut) -> dict[str, str | Path]:
    name, version = meta.name, meta.version
    stream, replay = STREAM_TARGET.format(name=name), REPLAY_TARGET.format(name=name)
    replay_extra = ('set(REPLAY_BAUD 115200 CACHE STRING "UART0 baud rate")\n'
                    f"target_compile_definitions({replay} PRIVATE REPLAY_BAUD=${{REPLAY_BAUD}}u)"
                    "\n")
    out: dict[str, str | Path] = {
        "CMakeLists.txt": _root_cmake(run, name, version),
        f"cmake/{name}Config.cmake": _config(name),
        "cmake/arm-none-eabi.cmake": TOOLCHAIN,
        "examples/mps2_an386/CMakeLists.txt": _example_cmake(
            name, stream, ["main.c", "heldout_data.c", "board_mps2.c"],
            f"Stream example for {name}: held-out recordings through the library on "
            f"mps2-an386, decisions over UART0."),
        "examples/mps2_an386/main.c": examples.stream_example(run),
        "examples/mps2_an386/heldout_data.h": examples.heldout_header(
            data, run.pipeline.n_channels),
        "examples/mps2_an386/heldout_data.c": examples.heldout_source(data),
        "examples/mps2_an386/board_mps2.c": examples.BOARD_GLUE,
        "examples/mps2_an386/example_board.h": examples.BOARD_HEADER,
        "examples/replay/CMakeLists.txt": _example_cmake(
            name, replay, ["main.c"],
            f"Replay firmware for {name}: `kiloml replay` streams recordings to it over "
            f"UART0 and reads its decisions back.", replay_extra),
        "examples/replay/main.c": examples.replay_firmware(run),
        "README.md": readme(run, name, "CMake package", _body(name), data),
    }
    out.update(library_files(run, "src"))
    out.update(board_files("board/mps2"))
    return out
