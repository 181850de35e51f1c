"""The one place kiloml's version is written: pyproject.toml reads it (dynamic version),
the generated C and every output folder's marker carry it, `kiloml --version` prints it.
(Modules import it from here, not from the package, whose lazy API would otherwise
make every module depend on kiloml.api.)"""

__version__ = "0.1.0"
