"""Optional dependencies: imported where a feature needs them, or one line naming the extra.

The base install (``pip install kiloml``) runs tree and DSP projects; networks, the built-in
data sets, Ray and the comparison benchmarks need extras. Every import of one of these
packages in kiloml goes through ``needs`` (a ``with`` block around the import statements,
so a module keeps its ordinary typed imports) or ``require`` (a function's lazy import),
so a missing package is a KilomlError (``kiloml: error: ... pip install 'kiloml[nn]'``,
exit 2) instead of a ModuleNotFoundError. tests/test_packaging.py checks every import site.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from kiloml.errors import KilomlError

__all__ = ["OPTIONAL", "MissingDependencyError", "OptionalPackage", "needs", "require"]


@dataclass(frozen=True)
class OptionalPackage:
    title: str  # how a person calls it (PyTorch)
    distribution: str  # what pip installs (torch, tflite-micro)
    extra: str  # kiloml's extra that brings it (nn)


# Import name -> package. pyproject.toml's [project.optional-dependencies] lists the same
# packages under the same extras (tests/test_packaging.py checks both ways).
OPTIONAL: dict[str, OptionalPackage] = {
    "torch": OptionalPackage("PyTorch", "torch", "nn"),
    "onnx": OptionalPackage("onnx", "onnx", "nn"),
    "onnxscript": OptionalPackage("onnxscript", "onnxscript", "nn"),
    "tflite_micro": OptionalPackage("tflite-micro", "tflite-micro", "nn"),
    "flatbuffers": OptionalPackage("flatbuffers", "flatbuffers", "nn"),
    "seglearn": OptionalPackage("seglearn", "seglearn", "data"),
    "aeon": OptionalPackage("aeon", "aeon", "data"),
    "ray": OptionalPackage("Ray", "ray", "cluster"),
    "emlearn": OptionalPackage("emlearn", "emlearn", "bench"),
    "m2cgen": OptionalPackage("m2cgen", "m2cgen", "bench"),
    "river": OptionalPackage("river", "river", "bench"),
    "sqlalchemy": OptionalPackage("SQLAlchemy", "sqlalchemy", "fleet"),
    "psycopg": OptionalPackage("psycopg", "psycopg", "fleet"),
    "fastapi": OptionalPackage("FastAPI", "fastapi", "fleet"),
    "uvicorn": OptionalPackage("uvicorn", "uvicorn", "fleet"),
    "cryptography": OptionalPackage("cryptography", "cryptography", "sign"),
}


class MissingDependencyError(KilomlError):
    """An optional package that a feature needs is not installed (or does not import)."""

    def __init__(self, message: str, *, extra: str, file: str | Path | None = None,
                 where: str | None = None) -> None:
        super().__init__(message, file=file, where=where)
        self.extra = extra


def _top(name: str | None) -> str:
    return (name or "").split(".")[0]


@contextmanager
def needs(module: str, purpose: str = "this", *, file: str | Path | None = None,
          where: str | None = None) -> Iterator[None]:
    """Run the import statements of the block; an ImportError from them (the package
    ``module``, one of its submodules or one of its own dependencies) becomes one line
    naming the package and the extra to install. ``purpose`` says what needs it
    ("reading .tflite models"); ``file`` and ``where`` place the error like any other."""
    package = OPTIONAL[_top(module)]
    try:
        yield
    except ImportError as exc:
        missing = _top(exc.name)
        if missing == "kiloml":  # kiloml's own module or name: a bug, not an install
            raise
        if isinstance(exc, ModuleNotFoundError) and exc.name == missing and missing in OPTIONAL:
            package = OPTIONAL[missing]  # the block's package or another optional one
            text = f"{purpose} needs {package.title}, which is not installed"
        else:
            # Installed but broken or the wrong version (a submodule, a dependency of its
            # own or a shared library missing): the extra pins what kiloml needs.
            reason = " ".join(str(exc).split())[:200] or type(exc).__name__
            text = f"{purpose} needs {package.title}, which does not import ({reason})"
        raise MissingDependencyError(f"{text}: pip install 'kiloml[{package.extra}]'",
                                     extra=package.extra, file=file, where=where) from None


def require(module: str, purpose: str = "this", *, file: str | Path | None = None,
            where: str | None = None) -> ModuleType:
    """``importlib.import_module(module)``, or the one-line error of ``needs``."""
    with needs(module, purpose, file=file, where=where):
        return importlib.import_module(module)
    raise AssertionError("unreachable")  # pragma: no cover - needs re-raises
