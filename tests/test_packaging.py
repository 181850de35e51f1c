"""Packaging: the wheel in clean virtual environments, optional extras, licence, version.

`make test` runs the checks on the source tree and one clean Python 3.11 environment with
the base install (no extras): `kiloml --version`, a CSV tree project with and without the
emulator, and the one-line error naming the extra for every path that needs one. `make
package-test` (KILOML_PACKAGE_MATRIX=1) adds Python 3.12 and 3.13 and, on 3.11, every extra
(`kiloml[nn,data,cluster,bench]`, PyTorch from the machine's CPU wheel).
"""

from __future__ import annotations

import ast
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import run_cli, write_toy_project
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import kiloml
from kiloml.optional import OPTIONAL

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "kiloml"
FIXTURES = ROOT / "tests" / "nn" / "fixtures"
MATRIX = os.environ.get("KILOML_PACKAGE_MATRIX") == "1"
SPDX = re.compile(r"^/\* SPDX-License-Identifier: (?P<expr>[^*]+) \*/$")
# Every C file kiloml ships (copied into libraries or compiled by its harnesses).
SHIPPED_C = ["runtime", "verify/harness", "verify/mcu", "verify/nn"]
# The only PyTorch pip may install: the CPU build on this machine's disk (PyPI's build of
# the same version pulls gigabytes of CUDA libraries).
TORCH_PIN = "torch==2.13.0+cpu"


# ---- the source tree -------------------------------------------------------------------

def _guarded(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Inside `with needs(...)`, a try that handles ImportError, or `if TYPE_CHECKING`."""
    child, node = node, parents.get(node)
    while node is not None:
        if isinstance(node, ast.With) and any(
                isinstance(i.context_expr, ast.Call) and (
                    getattr(i.context_expr.func, "id", None) == "needs"
                    or getattr(i.context_expr.func, "attr", None) == "needs")
                for i in node.items):
            return True
        if isinstance(node, ast.Try) and child in node.body and any(
                h.type is not None and {n.id for n in ast.walk(h.type) if isinstance(n, ast.Name)}
                & {"ImportError", "ModuleNotFoundError"} for h in node.handlers):
            return True
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test) and \
                child in node.body:
            return True
        child, node = node, parents.get(node)
    return False


def test_every_import_of_an_optional_package_goes_through_kiloml_optional() -> None:
    """A missing extra must be one line naming it, wherever kiloml imports the package:
    each import statement of an optional package sits in `with needs(...)` (or a try that
    handles its absence), at module level or inside a function."""
    unguarded = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        parents = {c: p for p in ast.walk(tree) for c in ast.iter_child_nodes(p)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            if any(n.split(".")[0] in OPTIONAL for n in names) and not _guarded(node, parents):
                unguarded.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert not unguarded, "\n".join(unguarded)


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            name, version = line.split("==", 1)
            pins[canonicalize_name(name.strip())] = version.split(";")[0].strip()
    return pins


def test_extras_match_kiloml_optional_and_the_lock_satisfies_every_range() -> None:
    project = _pyproject()["project"]
    extras = {name: [Requirement(r) for r in reqs]
              for name, reqs in project["optional-dependencies"].items()}
    by_extra = {name: {canonicalize_name(r.name) for r in reqs} for name, reqs in extras.items()}
    for module, package in OPTIONAL.items():
        assert canonicalize_name(package.distribution) in by_extra[package.extra], \
            (module, package)
    named = {(canonicalize_name(p.distribution), p.extra) for p in OPTIONAL.values()}
    for extra, names in by_extra.items():
        if extra != "dev":  # the test tools are no feature's optional package
            assert {(n, extra) for n in names} <= named, (extra, names)
    pins = _lock()
    for req in [Requirement(r) for r in project["dependencies"]] + \
            [r for reqs in extras.values() for r in reqs]:
        name = canonicalize_name(req.name)
        assert name in pins, f"{req} is not pinned in requirements.lock"
        assert req.specifier.contains(pins[name], prereleases=True), \
            f"requirements.lock's {name}=={pins[name]} is outside pyproject's {req}"


def test_version_is_written_once_and_printed() -> None:
    project = _pyproject()
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "kiloml.version.__version__"}
    result = run_cli("--version")
    assert result.exit_code == 0 and result.stdout == f"kiloml {kiloml.__version__}\n"


def test_license_file_and_spdx_expression() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.lstrip().startswith("Apache License") and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text and "APPENDIX" in text  # the full text
    assert _pyproject()["project"]["license"] == "Apache-2.0"


def _c_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix in (".c", ".h") and p.is_file())


def assert_spdx(files: list[Path]) -> None:
    assert files
    wrong = []
    for path in files:
        first = path.read_text().split("\n", 1)[0]
        m = SPDX.match(first)
        if not m or "Apache-2.0" not in m["expr"].split():
            wrong.append(f"{path}: {first[:80]!r}")
    assert not wrong, "first line is not the SPDX identifier:\n" + "\n".join(wrong)


def test_every_shipped_c_file_starts_with_its_spdx_identifier() -> None:
    assert_spdx([p for d in SHIPPED_C for p in _c_files(PACKAGE / d)])
    assert SPDX.match((PACKAGE / "verify/mcu/link.ld.in").read_text().split("\n", 1)[0])


def test_every_generated_c_file_starts_with_its_spdx_identifier(toy_run: Path,
                                                               tmp_path: Path) -> None:
    """A tree project's run folder (its library, the rule baseline's, the verify copies)
    and `kiloml model compile` of a network (its library and harness)."""
    assert_spdx(_c_files(toy_run.parent / "out"))
    out = tmp_path / "compiled"
    result = run_cli("model", "compile", str(FIXTURES / "mlp_int8.tflite"), "--target",
                     "host", "--out", str(out))
    assert result.exit_code == 0, result.stderr
    files = _c_files(out)
    assert {"kiloml_nn.c", "kiloml_nn.h", "kml_nn.c"} <= {p.name for p in files}
    assert_spdx(files)


TRACE_IMPORTS = """
import json, sys
import kiloml
after_import = sorted(m for m in sys.modules if m.split(".")[0] in OPTIONS)
from kiloml.cli import app
try:
    app(["run", sys.argv[1], "--no-emulator"], prog_name="kiloml")
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "after_import": after_import,
                  "after_run": sorted(m for m in sys.modules if m.split(".")[0] in OPTIONS)}))
"""


def test_import_kiloml_and_a_tree_run_import_no_optional_package(tmp_path: Path) -> None:
    """In the development environment, where every extra is installed: `import kiloml` and
    `kiloml run` of a CSV tree project import none of them (torch above all)."""
    toml = write_toy_project(tmp_path)
    script = f"OPTIONS = {sorted(OPTIONAL)!r}\n" + TRACE_IMPORTS
    result = subprocess.run([sys.executable, "-c", script, str(toml)], capture_output=True,
                            text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen == {"code": 0, "after_import": [], "after_run": []}, seen


# ---- the wheel and clean virtual environments ------------------------------------------

@dataclass
class Venv:
    python: str  # "3.11"
    bin: Path
    install_s: float

    def run(self, *args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.bin / "kiloml"), *args], capture_output=True,
                              text=True, timeout=timeout, cwd=cwd, env=_clean_env())


def _clean_env() -> dict[str, str]:
    """The machine's environment without this test run's Python (PYTHONPATH, the venv)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME") and not k.startswith("PYTEST")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    return env


def find_python(version: str) -> str | None:
    """An interpreter of that version: on PATH (python3.12) or one of pyenv's."""
    pyenv = os.path.expanduser(f"~/.pyenv/versions/{version}.*/bin/python{version}")
    candidates = [shutil.which(f"python{version}"), *sorted(glob.glob(pyenv))]
    for candidate in filter(None, candidates):
        probe = subprocess.run([candidate, "-c", "import sys, venv; print('%d.%d' % "
                                "sys.version_info[:2])"], capture_output=True, text=True,
                               env=_clean_env())
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return candidate
    return None


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pip wheel` of a copy of the source tree (the build folder stays out of the repo)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(PACKAGE, src / "kiloml",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.so", "*.o"))
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                             "--no-build-isolation", "-w", str(out), "."], cwd=src,
                            capture_output=True, text=True, timeout=300, env=_clean_env())
    assert result.returncode == 0, result.stderr[-3000:]
    (built,) = out.glob("kiloml-*.whl")
    assert built.name == f"kiloml-{kiloml.__version__}-py3-none-any.whl"
    return built


def make_venv(python: str, version: str, where: Path, wheel: Path, extras: str = "",
              constraints: tuple[str, ...] = ()) -> Venv:
    """A new virtual environment with `pip install <wheel>[extras]`; dependencies come from
    the package index and the machine's find-links, PyTorch only as TORCH_PIN."""
    start = time.monotonic()
    subprocess.run([python, "-m", "venv", str(where)], check=True, env=_clean_env())
    constraints_file = where / "constraints.txt"
    constraints_file.write_text("\n".join([TORCH_PIN, *constraints]) + "\n")
    target = f"{wheel}[{extras}]" if extras else str(wheel)
    result = subprocess.run([str(where / "bin" / "python"), "-m", "pip", "install", "-q",
                             "-c", str(constraints_file), target], capture_output=True, text=True,
                            timeout=1800, env=_clean_env())
    assert result.returncode == 0, result.stderr[-3000:]
    check = subprocess.run([str(where / "bin" / "python"), "-m", "pip", "check"],
                           capture_output=True, text=True, env=_clean_env())
    assert check.returncode == 0, check.stdout + check.stderr
    venv = Venv(version, where / "bin", time.monotonic() - start)
    print(f"\npython {version}: pip install {target.rsplit('/', 1)[-1]}: {venv.install_s:.1f} s")
    return venv


def _installed(venv: Venv) -> dict[str, str]:
    out = subprocess.run([str(venv.bin / "python"), "-m", "pip", "list", "--format=json"],
                         capture_output=True, text=True, check=True, env=_clean_env()).stdout
    return {canonicalize_name(p["name"]): p["version"] for p in json.loads(out)}


def assert_one_line(result: subprocess.CompletedProcess, *fragments: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert "ModuleNotFoundError" not in result.stderr, result.stderr
    assert lines[0].startswith("kiloml: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def assert_parity(out: Path, *, emulator: bool, min_accuracy: float = 0.9) -> dict:
    """Every held-out window equal on the host (and on the emulated target)."""
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["evaluation"]["accuracy"] >= min_accuracy, metrics["evaluation"]
    where = ["host", "cortex-m4f"] if emulator else ["host"]
    assert sorted(metrics["parity"]) == sorted(where), metrics["parity"].keys()
    for name in where:
        parity = metrics["parity"][name]
        assert parity["all_decisions_equal"] and parity["n"] > 0, (name, parity)
    measured = metrics["resources"]["cortex-m4f"]["measured_on"]
    assert measured.startswith("qemu-") if emulator else "--no-emulator" in measured, measured
    return metrics


def check_tree_project(venv: Venv, root: Path, *, emulator: bool) -> None:
    toml = write_toy_project(root)
    start = time.monotonic()
    result = venv.run("run", str(toml), *([] if emulator else ["--no-emulator"]), cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_parity(root / "out", emulator=emulator)
    assert_spdx(_c_files(root / "out" / "firmware"))
    print(f"python {venv.python}: kiloml run {'' if emulator else '--no-emulator '}"
          f"(tree project): {time.monotonic() - start:.1f} s")


IMPORT_EVERY_MODULE = """
import importlib, pkgutil, sys, kiloml
from kiloml.optional import MissingDependencyError
for m in pkgutil.walk_packages(kiloml.__path__, "kiloml."):
    if m.name == "kiloml.__main__":
        continue
    try:
        importlib.import_module(m.name)
    except MissingDependencyError as exc:
        print(m.name, "->", exc)
"""


def check_missing_extras(venv: Venv, root: Path) -> None:
    """The base install: every path that needs an extra says which, in one line."""
    assert not {"torch", "onnx", "tflite-micro", "flatbuffers", "seglearn", "aeon", "ray"} & \
        set(_installed(venv)), "the base install brought an optional package"
    model_info = venv.run("model", "info", str(FIXTURES / "mlp_int8.tflite"), cwd=root)
    assert_one_line(model_info, "reading and writing .tflite models needs",
                    "pip install 'kiloml[nn]'")
    assert_one_line(venv.run("model", "info", str(FIXTURES / "cnn1d_torch.onnx"), cwd=root),
                    "cnn1d_torch.onnx", "needs onnx", "pip install 'kiloml[nn]'")
    toml = write_toy_project(root / "cnn")
    toml.write_text(toml.read_text().replace('kind = "random_forest"\nn_estimators = 5\n'
                                             'max_depth = 6', 'kind = "mlp"'))
    assert_one_line(venv.run("run", str(toml), "--no-emulator", cwd=root),
                    "needs PyTorch", "pip install 'kiloml[nn]'")
    watch = root / "watch.toml"
    watch.write_text('name = "w"\n[data]\nsource = "watch"\n[window]\nwindow_ms = 4000\n'
                     'stride_ms = 500\n[[features]]\nstage = "statistics"\n[model]\n'
                     'kind = "random_forest"\n')
    assert_one_line(venv.run("run", str(watch), "--no-emulator", cwd=root),
                    "[data] source", "the 'watch' data set needs seglearn",
                    "pip install 'kiloml[data]'")
    motions = root / "motions.toml"
    motions.write_text(watch.read_text().replace('"watch"', '"basic-motions"'))
    assert_one_line(venv.run("run", str(motions), "--no-emulator", cwd=root),
                    "basic-motions", "needs aeon", "pip install 'kiloml[data]'")
    search = write_toy_project(root / "search")
    search.write_text(search.read_text() + '\n[search]\n[search.space]\n'
                      '"window.window_ms" = [1000, 2000]\n')
    assert_one_line(venv.run("search", str(search), "--executor", "ray", "--address",
                             "127.0.0.1:9", cwd=root),
                    "--executor ray needs Ray", "pip install 'kiloml[cluster]'")
    # Every module imports, or says which extra it needs: never a ModuleNotFoundError.
    imports = subprocess.run([str(venv.bin / "python"), "-c", IMPORT_EVERY_MODULE],
                             capture_output=True, text=True, cwd=root, env=_clean_env())
    assert imports.returncode == 0, imports.stderr[-3000:]
    needing = dict(line.split(" -> ", 1) for line in imports.stdout.splitlines())
    assert "kiloml.nn.train" in needing and "kiloml.nn.tflite_io" in needing, needing
    assert all("pip install 'kiloml[" in why for why in needing.values()), needing


def test_wheel_holds_every_file_kiloml_reads(wheel: Path) -> None:
    """Every file of the package besides Python sources (runtime C, harnesses, linker
    template, profiles, calibration, template) is in the wheel, and LICENSE with it."""
    import zipfile

    names = set(zipfile.ZipFile(wheel).namelist())
    tree = {str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".so",
                                                                                  ".o")}
    assert tree - names == set(), sorted(tree - names)
    assert f"kiloml-{kiloml.__version__}.dist-info/licenses/LICENSE" in names
    meta = zipfile.ZipFile(wheel).read(f"kiloml-{kiloml.__version__}.dist-info/METADATA")
    assert b"License-Expression: Apache-2.0" in meta and b"Requires-Python: >=3.11" in meta


def test_clean_python_311_base_install_runs_a_tree_project(wheel: Path, tmp_path: Path) -> None:
    python = find_python("3.11")
    if python is None:
        pytest.fail("Python 3.11 is kiloml's development Python; it must be installed")
    venv = make_venv(python, "3.11", tmp_path / "venv", wheel)
    version = venv.run("--version", cwd=tmp_path)
    assert (version.returncode, version.stdout) == (0, f"kiloml {kiloml.__version__}\n")
    check_tree_project(venv, tmp_path / "no-emulator", emulator=False)
    check_tree_project(venv, tmp_path / "emulator", emulator=True)
    check_missing_extras(venv, tmp_path)


def test_python_310_is_refused_by_requires_python(wheel: Path, tmp_path: Path) -> None:
    """Below the floor pip refuses the wheel itself (kiloml needs tomllib, and its tested
    dependency versions need 3.11)."""
    python = find_python("3.10")
    if python is None:
        pytest.skip("no Python 3.10 on this machine")
    subprocess.run([python, "-m", "venv", str(tmp_path / "venv")], check=True, env=_clean_env())
    result = subprocess.run([str(tmp_path / "venv" / "bin" / "python"), "-m", "pip", "install",
                             "--no-deps", str(wheel)], capture_output=True, text=True,
                            timeout=300, env=_clean_env())
    assert result.returncode != 0
    assert "requires a different Python" in result.stderr and ">=3.11" in result.stderr


@pytest.mark.skipif(not MATRIX, reason="the newer Pythons run in make package-test")
@pytest.mark.parametrize("version", ["3.12", "3.13"])
def test_clean_newer_python_base_install_runs_a_tree_project(wheel: Path, tmp_path: Path,
                                                             version: str) -> None:
    python = find_python(version)
    if python is None:
        pytest.skip(f"no Python {version} on this machine")
    venv = make_venv(python, version, tmp_path / "venv", wheel)
    version_out = venv.run("--version", cwd=tmp_path)
    assert version_out.stdout == f"kiloml {kiloml.__version__}\n"
    check_tree_project(venv, tmp_path / "no-emulator", emulator=False)
    check_missing_extras(venv, tmp_path)


def lowest_versions() -> tuple[str, ...]:
    """Each base dependency at its floor's release series (numpy>=2.0 -> numpy==2.0.*)."""
    pins = []
    for text in _pyproject()["project"]["dependencies"]:
        req = Requirement(text)
        (floor,) = [s.version for s in req.specifier if s.operator == ">="]
        pins.append(f"{req.name}=={floor}.*")
    return tuple(pins)


@pytest.mark.skipif(not MATRIX, reason="the oldest dependencies run in make package-test")
def test_clean_python_311_with_the_oldest_dependencies_pyproject_allows(
        wheel: Path, tmp_path: Path) -> None:
    """pyproject's floors are real: the base install at those releases runs a tree project."""
    python = find_python("3.11")
    assert python is not None
    pins = lowest_versions()
    venv = make_venv(python, "3.11", tmp_path / "venv", wheel, constraints=pins)
    installed = _installed(venv)
    for pin in pins:
        name, series = pin.split("==")
        got, floor = installed[canonicalize_name(name)], series[:-2]  # "3.5.*" -> "3.5"
        assert got == floor or got.startswith(floor + "."), (pin, got)  # pyserial is "3.5"
    check_tree_project(venv, tmp_path / "no-emulator", emulator=False)


@pytest.mark.skipif(not MATRIX, reason="installing every extra runs in make package-test")
def test_clean_python_311_with_every_extra(wheel: Path, tmp_path: Path) -> None:
    """`pip install 'kiloml[nn,data,cluster,bench]'`: PyTorch is the CPU wheel on disk,
    networks import and train, the built-in data sets load, Ray and the benchmarks'
    generators import."""
    python = find_python("3.11")
    assert python is not None
    venv = make_venv(python, "3.11", tmp_path / "venv", wheel, "nn,data,cluster,bench")
    installed = _installed(venv)
    assert installed["torch"] == "2.13.0+cpu", installed["torch"]
    assert not [n for n in installed if n.startswith("nvidia-")], "a CUDA build came along"
    info = venv.run("model", "info", str(FIXTURES / "mlp_int8.tflite"), cwd=tmp_path)
    assert info.returncode == 0 and "FULLY_CONNECTED" in info.stdout, info.stderr[-2000:]
    onnx = venv.run("model", "info", str(FIXTURES / "cnn1d_torch.onnx"), cwd=tmp_path)
    assert onnx.returncode == 0, onnx.stderr[-2000:]
    toml = write_toy_project(tmp_path / "mlp")
    toml.write_text(toml.read_text().replace('kind = "random_forest"\nn_estimators = 5\n'
                                             'max_depth = 6',
                                             'kind = "mlp"\nhidden = [16]\nepochs = 20\n'
                                             'validation_groups = 1'))
    start = time.monotonic()
    run = venv.run("run", str(toml), "--no-emulator", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    metrics = assert_parity(tmp_path / "mlp" / "out", emulator=False, min_accuracy=0.5)
    assert metrics["neural"]["tflm_parity"]["all_bit_exact"], metrics["neural"]["tflm_parity"]
    print(f"python 3.11 [nn]: kiloml run --no-emulator (mlp): {time.monotonic() - start:.1f} s")
    script = ("from kiloml.data.public import load_watch, load_basic_motions\n"
              "print(len(load_watch()), len(load_basic_motions()))\n"
              "import ray, emlearn, m2cgen, onnxscript\n"
              "import torch\n"
              "m = torch.nn.Linear(3, 2)\n"
              "torch.onnx.export(m, (torch.zeros(1, 3),), 'linear.onnx')\n"
              "print('exported')\n")
    extras = subprocess.run([str(venv.bin / "python"), "-c", script], capture_output=True,
                            text=True, cwd=tmp_path, env=_clean_env(), timeout=600)
    assert extras.returncode == 0, extras.stderr[-3000:]
    lines = extras.stdout.strip().splitlines()  # the exporter prints its steps between
    assert (lines[0], lines[-1]) == ("140 80", "exported"), extras.stdout


def test_missing_extra_in_this_environment_is_one_line(tmp_path: Path) -> None:
    """The same error through the CLI in the development environment: a package that does
    not import (blocked here by a None entry in sys.modules, as Python does for a module it
    could not import) becomes the line naming the extra."""
    script = ("import sys\nsys.modules['flatbuffers'] = None\n"
              "from kiloml.cli import main\nsys.argv = ['kiloml', 'model', 'info', sys.argv[1]]\n"
              "main()\n")
    result = subprocess.run([sys.executable, "-c", script, str(FIXTURES / "mlp_int8.tflite")],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert_one_line(result, "reading and writing .tflite models needs flatbuffers",
                    "pip install 'kiloml[nn]'")

