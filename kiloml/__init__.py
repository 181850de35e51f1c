"""kiloml: machine learning for microcontrollers, from sensor recordings to a verified C library."""

from kiloml.version import __version__

# The Python API (kiloml/api.py), imported on first use: `import kiloml` stays light
# (no scikit-learn, numpy or torch until a name below is used).
__all__ = ["Library", "Project", "RunResult", "__version__", "convert"]
_API = ("Library", "Project", "RunResult", "convert")


def __getattr__(name: str):
    if name in _API:
        from kiloml import api

        return getattr(api, name)
    raise AttributeError(f"module 'kiloml' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
