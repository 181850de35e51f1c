"""User-facing errors: one line naming the file, the place in it, and what is wrong."""

from __future__ import annotations

from pathlib import Path


class KilomlError(Exception):
    """Bad input from the user (a file, a setting, an argument).

    The command line prints it as one line and exits with code 2. ``location``
    is whatever narrows the place down: a line number, a column name, a field.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        where: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = str(file) if file is not None else None
        self.line = line
        self.where = where

    def __str__(self) -> str:
        head = ""
        if self.file is not None:
            head = self.file
            if self.line is not None:
                head += f":{self.line}"
            head += ": "
        if self.where:
            head += f"{self.where}: "
        text = " ".join(f"{head}{self.message}".split("\n"))
        # Names and values quoted from a user's file may hold control characters (a CR,
        # a terminal escape): shown escaped, so the error stays one plain line.
        return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii")
                       for ch in text)


class DataLeakError(KilomlError):
    """A group or recording appears on both sides of an evaluation split."""


class ToolchainError(KilomlError):
    """A compiler, emulator or other system tool is missing or failed."""
