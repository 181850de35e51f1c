"""kiloml: machine learning for microcontrollers, from sensor recordings to a verified C library."""

# The one place the version is written: pyproject.toml reads it (dynamic version), the
# generated C carries it, `kiloml --version` prints it.
__version__ = "0.1.0"
