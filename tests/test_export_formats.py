"""kiloml export --format arduino | platformio | zephyr. Arduino: the library
specification 1.5 layout, and the library and sketch compiled (as C and C++) with
arm-none-eabi-gcc/g++ under an Arduino Cortex-M4F core's flags with a stub Arduino.h,
run on QEMU's mps2-an386: decisions equal Python's. PlatformIO and Zephyr: checked
against their specifications (not built here, which their READMEs say)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from conftest import run_cli
from export_helpers import make_run, printed_decisions, python_decisions, qemu_run, sh

from kiloml.board import MPS2_DIR, mps2_files
from kiloml.verify.mcu.toolchain import find_toolchain

STUB = Path(__file__).resolve().parent / "arduino_stub"
CPU = ["-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"]
# what an Arduino Cortex-M4F core's platform.txt compiles with (e.g. Adafruit SAMD51)
COMMON = ["-Os", *CPU, "-ffunction-sections", "-fdata-sections", "-Wall", "-MMD"]
C_FLAGS = ["-std=gnu11", *COMMON]
CXX_FLAGS = ["-std=gnu++17", *COMMON, "-fno-exceptions", "-fno-rtti", "-fno-threadsafe-statics"]
ARDUINO_REQUIRED = ("name", "version", "author", "maintainer", "sentence", "paragraph",
                    "category", "url", "architectures")
ARDUINO_CATEGORIES = {"Display", "Communication", "Signal Input/Output", "Sensors",
                      "Device Control", "Timing", "Data Storage", "Data Processing", "Other"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("export_formats"))


def export(run_dir: Path, fmt: str) -> Path:
    out = run_dir.parent / fmt
    result = run_cli("export", str(run_dir), "--format", fmt, "--out", str(out), "--author",
                     "Test Author <test@example.com>")
    assert result.exit_code == 0, result.stderr
    return out


def test_arduino_layout_compiles_and_runs_at_parity(run_dir: Path, tmp_path: Path) -> None:
    pkg = export(run_dir, "arduino")
    props = dict(line.split("=", 1) for line in
                 (pkg / "library.properties").read_text().splitlines() if line)
    for key in ARDUINO_REQUIRED:
        assert props.get(key), key
    assert props["category"] in ARDUINO_CATEGORIES
    assert re.fullmatch(r"\d+\.\d+\.\d+", props["version"])
    assert props["name"] == "toy" and props["architectures"] == "*"
    assert (pkg / "src" / props["includes"]).is_file()
    assert not (pkg / "library.json").exists()  # no other layout mixed in
    sketches = [p for p in (pkg / "examples").iterdir() if p.is_dir()]
    assert sketches and all((s / f"{s.name}.ino").is_file() for s in sketches)
    sketch = pkg / "examples" / "stream"

    tc = find_toolchain()
    gxx = tc.gcc.replace("gcc", "g++")
    objects = []
    # the library (src/, recursively as Arduino does) and the sketch folder's .c as C
    c_files = sorted((pkg / "src").rglob("*.c")) + sorted(sketch.glob("*.c"))
    for i, src in enumerate([*c_files, *[p for p in mps2_files() if p.suffix == ".c"]]):
        obj = tmp_path / f"c{i}.o"
        sh(tc.gcc, *C_FLAGS, f"-I{pkg / 'src'}", f"-I{sketch}", f"-I{MPS2_DIR}", "-c", src,
           "-o", obj)
        objects.append(obj)
    # the sketch as the Arduino builder makes it: #include <Arduino.h> first, then .cpp
    cpp = tmp_path / "stream.ino.cpp"
    cpp.write_text("#include <Arduino.h>\n" + (sketch / "stream.ino").read_text())
    for i, src in enumerate([cpp, STUB / "Arduino.cpp"]):
        obj = tmp_path / f"cxx{i}.o"
        sh(gxx, *CXX_FLAGS, f"-I{STUB}", f"-I{pkg / 'src'}", f"-I{sketch}", f"-I{MPS2_DIR}",
           "-c", src, "-o", obj)
        objects.append(obj)
    elf = tmp_path / "stream.elf"
    # linked by gcc: the sketch uses no libstdc++ (and Debian ships no nano libstdc++)
    sh(tc.gcc, *CPU, "-Os", "-Wl,--gc-sections", "--specs=nano.specs", "--specs=nosys.specs",
       "-nostartfiles", "-T", MPS2_DIR / "mps2_an386.ld", *objects, "-lm", "-o", elf)
    result = qemu_run(elf)
    expected = python_decisions(run_dir)
    assert result.returncode == 0, result.stdout[-500:]
    assert printed_decisions(result.stdout) == expected
    assert f"parity {len(expected)}/{len(expected)} decisions equal to Python" in result.stdout


def test_platformio_library_json_per_specification(run_dir: Path) -> None:
    pkg = export(run_dir, "platformio")
    m = json.loads((pkg / "library.json").read_text())
    assert isinstance(m["name"], str) and 0 < len(m["name"]) <= 50
    assert re.fullmatch(r"\d+\.\d+\.\d+", m["version"]) and len(m["version"]) <= 20
    assert isinstance(m["description"], str) and len(m["description"]) <= 255
    assert isinstance(m["keywords"], list) and all(
        isinstance(k, str) and len(k) <= 50 for k in m["keywords"])
    assert isinstance(m["authors"], list) and all(
        isinstance(a["name"], str) and set(a) <= {"name", "email", "url", "maintainer"}
        for a in m["authors"])
    assert m["authors"][0]["name"] == "Test Author <test@example.com>"
    assert m["license"] == "Apache-2.0"
    for key in ("frameworks", "platforms"):
        assert m[key] == "*" or isinstance(m[key], list)
    build = m["build"]
    assert set(build) <= {"srcDir", "includeDir", "flags", "srcFilter", "extraScript",
                          "libArchive", "libLDFMode", "libCompatMode", "builder"}
    assert (pkg / build["srcDir"]).is_dir() and (pkg / build["includeDir"]).is_dir()
    assert isinstance(build["flags"], list | str) and "-ffp-contract=off" in build["flags"]
    headers = m["headers"] if isinstance(m["headers"], list) else [m["headers"]]
    assert all((pkg / build["includeDir"] / h).is_file() for h in headers)
    assert sorted(p.name for p in (pkg / build["srcDir"]).glob("*.c")) == sorted(
        p.name for p in (run_dir / "firmware").glob("*.c"))
    for ex in m["examples"]:
        assert all((pkg / ex["base"] / f).is_file() for f in ex["files"])
    assert "not built here" in (pkg / "README.md").read_text()


def test_zephyr_module_per_specification(run_dir: Path) -> None:
    pkg = export(run_dir, "zephyr")
    module = yaml.safe_load((pkg / "zephyr" / "module.yml").read_text())
    assert set(module) <= {"name", "build", "samples", "boards", "tests", "package-managers",
                           "security"}
    assert re.fullmatch(r"[A-Za-z0-9_-]+", module["name"])
    build = module["build"]
    assert set(build) <= {"cmake", "kconfig", "cmake-ext", "kconfig-ext", "settings",
                          "depends", "sysbuild-cmake", "sysbuild-kconfig"}
    assert (pkg / build["cmake"] / "CMakeLists.txt").is_file()
    kconfig = (pkg / build["kconfig"]).read_text()
    symbol = re.search(r"^config (\w+)$", kconfig, re.M)[1]
    assert re.search(r'^\tbool "', kconfig, re.M) and "\thelp" in kconfig
    cmake = (pkg / build["cmake"] / "CMakeLists.txt").read_text()
    assert f"if(CONFIG_{symbol})" in cmake and cmake.rstrip().endswith("endif()")
    assert "zephyr_library_named(toy)" in cmake and "zephyr_include_directories(src)" in cmake
    sources = re.search(r"zephyr_library_sources\(([^)]*)\)", cmake)[1].split()
    assert sources and all((pkg / s).is_file() for s in sources)
    assert sorted(Path(s).name for s in sources) == sorted(
        p.name for p in (run_dir / "firmware").glob("*.c"))
    assert "not built here" in (pkg / "README.md").read_text()
