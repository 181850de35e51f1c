"""kml_fp.h: every C file kiloml ships or writes turns float contraction off by itself and
refuses -ffast-math, whatever flags the firmware's build uses; shown by disassembly with
the real cross compiler (and that without the header the same builds do contract, so
these tests can fail). Every header compiles as C++; verify's fused multiply-add check
names the function that holds one."""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import run_cli, write_toy_project

from kiloml.codegen.library import FP_HEADER, RUNTIME_DIR
from kiloml.verify.fma_check import check_image, finding, fused_instructions

M4F = ["-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"]
ARDUINO = [*M4F, "-std=gnu11", "-O2"]  # GCC contracts here by default
ARM_GCC = shutil.which("arm-none-eabi-gcc")
needs_arm = pytest.mark.skipif(ARM_GCC is None, reason="arm-none-eabi-gcc is not installed")
# kml_fp.h's job is done by the pragma, never by the harness's own -ffp-contract=off
FIRST_INCLUDE = re.compile(r'^#include\s+"([^"]+)"', re.M)


def firmware(toy_run: Path) -> Path:
    return toy_run.parent / "out" / "firmware"


# Runtime files that are no part of a model library: copied into a firmware on their own,
# with no float arithmetic (so no kml_fp.h to depend on).
STANDALONE = {"kml_capture.c"}


def shipped_c(toy_run: Path) -> list[Path]:
    return sorted(p for p in RUNTIME_DIR.glob("*.c") if p.name not in STANDALONE) + \
        sorted(firmware(toy_run).glob("*.c"))


def test_every_c_file_includes_kml_fp_first(toy_run: Path) -> None:
    assert (firmware(toy_run) / FP_HEADER).read_bytes() == (RUNTIME_DIR / FP_HEADER).read_bytes()
    files = shipped_c(toy_run)
    assert len(files) > 15
    for path in files:
        text = path.read_text()
        first = FIRST_INCLUDE.search(text)
        assert first is not None and first.group(1) == FP_HEADER, path
        assert "#include" not in text[:first.start()], path  # nothing before it


def test_every_header_is_extern_c(toy_run: Path) -> None:
    headers = sorted(RUNTIME_DIR.glob("*.h")) + sorted(firmware(toy_run).glob("*.h"))
    checked = [h for h in headers if h.name not in (FP_HEADER, "kml_config.h")]  # macros only
    assert len(checked) >= 16
    for header in checked:
        text = header.read_text()
        assert '#ifdef __cplusplus\nextern "C" {\n#endif' in text, header
        assert text.count('extern "C"') == 1, header
        assert re.search(r"#endif[^\n]*\s*$", text), header
        close = text.rindex("#ifdef __cplusplus\n}\n#endif")
        assert "(" not in text[close:], header  # every declaration inside the guard


def _objects(sources: list[Path], includes: list[Path], flags: list[str], out: Path,
             cc: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    made = []
    for src in sources:
        obj = out / (src.stem + ".o")
        subprocess.run([cc, *flags, *[f"-I{d}" for d in includes], "-c", str(src), "-o",
                        str(obj)], check=True, capture_output=True, text=True)
        made.append(obj)
    return made


def _fused(objects: list[Path]) -> dict[str, int]:
    found: dict[str, int] = {}
    for obj in objects:
        out = subprocess.run(["arm-none-eabi-objdump", "-d", "--no-show-raw-insn", str(obj)],
                             check=True, capture_output=True, text=True).stdout
        found.update(fused_instructions(out))
    return found


def _without_header(library: Path, tmp: Path) -> Path:
    """A copy of ``library`` whose kml_fp.h does nothing (the build before this fix)."""
    copy = tmp / "no-header"
    shutil.copytree(library, copy)
    (copy / FP_HEADER).write_text("/* emptied */\n")
    return copy


@needs_arm
@pytest.mark.parametrize("flags", [ARDUINO, [*ARDUINO, "-ffp-contract=fast"],
                                   [*M4F, "-std=gnu17", "-O3"]],
                         ids=["gnu11-O2", "gnu11-O2-fast", "gnu17-O3"])
def test_no_fused_multiply_add_in_any_file(toy_run: Path, tmp_path: Path,
                                           flags: list[str]) -> None:
    """The runtime kernels that do float arithmetic and the whole generated library,
    under Arduino-like flags: no vfma/vfms/vfnma/vfnms; the same files with the header
    emptied hold them (kml_statistics among them: the issue's case)."""
    kernels = [RUNTIME_DIR / f"{m}.c" for m in ("kml_statistics", "kml_fft", "kml_math",
                                                 "kml_filters", "kml_spectral", "kml_mfcc")]
    library = firmware(toy_run)
    assert not _fused(_objects(kernels, [RUNTIME_DIR], flags, tmp_path / "k", ARM_GCC))
    lib_sources = sorted(library.glob("*.c"))
    assert not _fused(_objects(lib_sources, [library], flags, tmp_path / "l", ARM_GCC))
    bare = _without_header(RUNTIME_DIR, tmp_path)
    contracted = _fused(_objects([bare / k.name for k in kernels], [bare], flags,
                                 tmp_path / "bare", ARM_GCC))
    assert "kml_statistics" in contracted and len(contracted) >= 5, contracted


@needs_arm
def test_pragma_builds_what_ffp_contract_off_builds(tmp_path: Path) -> None:
    """GCC under -ffp-contract=fast with the header emits exactly the code it emits with
    -ffp-contract=off and no header: the pragma changes contraction and nothing else."""
    bare = _without_header(RUNTIME_DIR, tmp_path)
    for name in ("kml_statistics", "kml_math", "kml_fft"):
        a = _objects([RUNTIME_DIR / f"{name}.c"], [RUNTIME_DIR],
                     [*ARDUINO, "-ffp-contract=fast"], tmp_path / "pragma", ARM_GCC)[0]
        b = _objects([bare / f"{name}.c"], [bare], [*ARDUINO, "-ffp-contract=off"],
                     tmp_path / "flag", ARM_GCC)[0]
        dis = [subprocess.run(["arm-none-eabi-objdump", "-d", str(o)], check=True,
                              capture_output=True, text=True).stdout.split("\n", 3)[3]
               for o in (a, b)]
        assert dis[0] == dis[1], name


MAC_C = "float kml_test_mac(float a, float b, float c) { return a * b + c; }\n"
MAIN_C = """float kml_test_mac(float a, float b, float c);
volatile float x = 1.5f, y = 2.25f, z = 3.0f, r;
int main(void) { r = kml_test_mac(x, y, z); return 0; }
"""


@needs_arm
@pytest.mark.parametrize("lto", [False, True], ids=["objects", "lto"])
def test_fma_check_names_the_function(tmp_path: Path, lto: bool) -> None:
    """A deliberately contracting build (a*b+c, -ffp-contract=fast, no header) linked into
    an image: verify's check finds the instruction and names the function; the same file
    with kml_fp.h first (and under -flto, where contraction happens at link time) has
    none."""
    shutil.copyfile(RUNTIME_DIR / FP_HEADER, tmp_path / FP_HEADER)
    (tmp_path / "mac.c").write_text(MAC_C)
    (tmp_path / "mac_fp.c").write_text(f'#include "{FP_HEADER}"\n' + MAC_C)
    (tmp_path / "main.c").write_text(MAIN_C)
    flags = [*ARDUINO, "-ffp-contract=fast", *(["-flto"] if lto else [])]
    for source, expect in (("mac.c", ["kml_test_mac"]), ("mac_fp.c", [])):
        elf = tmp_path / f"{Path(source).stem}.elf"
        subprocess.run([ARM_GCC, *flags, f"-I{tmp_path}", str(tmp_path / source),
                        str(tmp_path / "main.c"), "--specs=nosys.specs", "-o", str(elf)],
                       check=True, capture_output=True)
        entry = check_image(ARM_GCC, elf)
        if lto and expect:  # the LTO partition may inline it into main
            assert entry["found"] and entry["instructions"] >= 1
            continue
        assert entry["found"] == expect and entry["checked"] == elf.name
        verdict = finding(entry)
        assert (verdict is None) == (not expect)
        if verdict:
            assert "kml_test_mac" in verdict and "mac.elf" in verdict


def test_fused_instruction_forms() -> None:
    dis = ("00008000 <f>:\n    8000:\tvfma.f32\ts15, s13, s14\n    8004:\tvfnmseq.f64\td0, d1, d2\n"
           "00008010 <g>:\n    8010:\tvmul.f32\ts0, s0, s1\n    8014:\tvadd.f32\ts0, s0, s2\n"
           "00008020 <h>:\n    8020:\tvfms.f32\ts1, s2, s3\n    8024:\tvfnma.f32\ts1, s2, s3\n")
    assert fused_instructions(dis) == {"f": 2, "h": 2}


FAST_MATH = "must not be built with -ffast-math or -Ofast"


@pytest.mark.parametrize("cc", ["gcc", "clang", "arm-none-eabi-gcc", "g++"])
@pytest.mark.parametrize("flag", ["-ffast-math", "-Ofast"])
def test_fast_math_is_refused(tmp_path: Path, cc: str, flag: str) -> None:
    if shutil.which(cc) is None:
        pytest.skip(f"{cc} is not installed")
    extra = ["-x", "c++"] if cc == "g++" else []
    result = subprocess.run([cc, *extra, flag, f"-I{RUNTIME_DIR}", "-c",
                             str(RUNTIME_DIR / "kml_statistics.c"), "-o",
                             str(tmp_path / "x.o")], capture_output=True, text=True)
    assert result.returncode != 0 and FAST_MATH in result.stderr
    assert "bit for bit" in result.stderr  # says why


# C++: designated initializers (the model's constant tables) are C++20, and a GNU and
# clang extension before it; g++ 12's -Wextra warns about the members they leave zero
# (-Wmissing-field-initializers, which C never does for designators), clang++ does not.
COMPILERS = [
    ("gcc", ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]),
    ("clang", ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]),
    ("g++", ["-x", "c++", "-std=gnu++11", "-O2", "-Wall", "-Werror"]),
    ("g++", ["-x", "c++", "-std=c++17", "-O2", "-Wall", "-Werror"]),
    ("clang++", ["-x", "c++", "-std=c++20", "-O2", "-Wall", "-Wextra", "-Werror",
                 "-pedantic"]),
    ("arm-none-eabi-g++", ["-x", "c++", *M4F, "-std=gnu++17", "-O2", "-Wall", "-Werror",
                           "-fno-rtti", "-fno-exceptions"]),  # as Arduino's cores build
]
COMPILER_IDS = ["gcc-c99", "clang-c99", "g++-gnu++11", "g++-c++17", "clang++-c++20", "arm-g++"]


@pytest.fixture(scope="module")
def updatable_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The toy project's library built updatable ([library] updatable: kml_blob.c and
    kml_sha256.c with the kml_config.h they need)."""
    root = tmp_path_factory.mktemp("updatable")
    toml = write_toy_project(root)
    toml.write_text(toml.read_text() + "\n[library]\nupdatable = true\n")
    result = run_cli("run", str(toml), "--no-emulator")
    assert result.exit_code == 0, result.stderr
    assert (root / "out" / "firmware" / "kml_blob.c").is_file()
    return root / "out" / "firmware"


@pytest.mark.parametrize("cc, flags", COMPILERS, ids=COMPILER_IDS)
def test_library_compiles_clean_as_c_and_cpp(toy_run: Path, updatable_library: Path,
                                             tmp_path: Path, cc: str, flags: list[str]
                                             ) -> None:
    """The whole generated library (and the runtime kernels it does not use, with its
    kml_config.h), warnings as errors: the pragmas raise none, C++ takes every file."""
    if shutil.which(cc) is None:
        pytest.skip(f"{cc} is not installed")
    library = firmware(toy_run)
    # kml_linear needs a linear model's kml_config.h, kml_blob an updatable library's (it
    # is compiled below with one)
    extra = [p for p in RUNTIME_DIR.glob("*.c") if not (library / p.name).exists()
             and p.name not in ("kml_linear.c", "kml_blob.c")]
    updatable = updatable_library
    for folder, sources in ((library, sorted(library.glob("*.c")) + sorted(extra)),
                            (updatable, sorted(updatable.glob("*.c")))):
        for src in sources:
            result = subprocess.run([cc, *flags, f"-I{folder}", f"-I{RUNTIME_DIR}", "-c",
                                     str(src), "-o", str(tmp_path / (src.stem + ".o"))],
                                    capture_output=True, text=True)
            assert result.returncode == 0, (src.name, result.stderr[-1500:])




@pytest.mark.parametrize("cc, flags", COMPILERS, ids=COMPILER_IDS)
def test_network_library_compiles_as_c_and_cpp(tmp_path: Path, cc: str,
                                               flags: list[str]) -> None:
    """`kiloml model compile`'s library (an int8 MLP): kiloml_nn.c includes kml_fp.h first,
    and every file builds as C and as C++."""
    from kiloml.codegen.nn_library import write_nn_library
    from kiloml.nn.load import load_model

    if shutil.which(cc) is None:
        pytest.skip(f"{cc} is not installed")
    mlp = Path(__file__).parent / "nn" / "fixtures" / "mlp_int8.tflite"
    library, _ = write_nn_library(load_model(mlp), tmp_path / "lib")
    assert FIRST_INCLUDE.search((tmp_path / "lib" / "kiloml_nn.c").read_text()).group(1) \
        == FP_HEADER
    assert (tmp_path / "lib" / FP_HEADER).is_file()
    for src in library.sources:
        result = subprocess.run([cc, *flags, f"-I{library.directory}", "-c", str(src), "-o",
                                 str(tmp_path / (src.stem + ".o"))], capture_output=True,
                                text=True)
        assert result.returncode == 0, (src.name, result.stderr[-1500:])


@pytest.mark.skipif(platform.machine() != "x86_64" or shutil.which("gcc") is None,
                    reason="an x86-64 host with gcc")
def test_no_vector_fma_from_gcc_loop_vectorizer(tmp_path: Path) -> None:
    """GCC 12 at -O3 for an FMA x86 (-march=x86-64-v3) vectorizes kml_rfft's butterflies
    into vfmaddsub even under -ffp-contract=off; kml_fp.h turns loop vectorization off
    where vectors have FMA (found by bench/flag_matrix.py: spectral features differed)."""
    bare = _without_header(RUNTIME_DIR, tmp_path)
    flags = ["-std=gnu11", "-O3", "-march=x86-64-v3"]
    for directory, extra, expect_fused in ((RUNTIME_DIR, ["-ffp-contract=fast"], False),
                                           (bare, ["-ffp-contract=off"], True)):
        obj = _objects([directory / "kml_fft.c"], [directory], [*flags, *extra],
                       tmp_path / str(expect_fused), "gcc")[0]
        dis = subprocess.run(["objdump", "-d", str(obj)], check=True, capture_output=True,
                             text=True).stdout
        assert bool(re.search(r"\tvfn?m(add|sub)", dis)) == expect_fused
