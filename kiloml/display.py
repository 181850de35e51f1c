"""Paths as the terminal shows them: relative to the working folder when inside it."""

from __future__ import annotations

from pathlib import Path


def shown_path(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
