"""Shared by the gate and diff tests: toy projects with one setting changed, run for real
(with or without the emulator), and released into a registry with `kiloml release`."""

from __future__ import annotations

from pathlib import Path

from conftest import run_cli, write_toy_project

# settings of the toy project (tests/conftest.py PROJECT_TOML) and what replaces them
WORSE_MODEL = {'stage = "statistics"': 'stage = "statistics"\nstatistics = ["mean"]'}
LONGER_WINDOW = {"window_ms = 1000": "window_ms = 2000", "stride_ms = 500": "stride_ms = 250"}
TWO_CHANNELS = {'timestamp_column = "t"': 'timestamp_column = "t"\nchannels = ["ax", "ay"]'}
HYSTERESIS = {"[target]": "[decision]\non_windows = 2\n\n[target]"}


def toy_variant(root: Path, changes: dict[str, str] | None = None, *, gate: str = "",
                emulate: bool = False) -> Path:
    """The toy project in ``root`` with ``changes`` made to its kiloml.toml and ``gate``
    appended as its [gate] section, run; returns the kiloml.toml (run folder root/out)."""
    toml = write_toy_project(root)
    text = toml.read_text()
    for old, new in (changes or {}).items():
        assert old in text, old
        text = text.replace(old, new)
    if gate:
        text += f"\n[gate]\n{gate}\n"
    toml.write_text(text)
    result = run_cli("run", str(toml), *([] if emulate else ["--no-emulator"]))
    assert result.exit_code == 0, result.stderr
    return toml


def release(toml: Path, registry: Path, version: str) -> None:
    """`kiloml release` of the toy run of ``toml`` (host parity only unless it was run with
    the emulator)."""
    result = run_cli("release", str(toml.parent / "out"), "--registry", str(registry),
                     "--version", version, "--allow-no-device-parity")
    assert result.exit_code == 0, result.stderr
