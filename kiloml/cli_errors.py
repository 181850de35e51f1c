"""What reaches the command line instead of a traceback.

* a KilomlError (bad input): one line naming the file, the place and what is wrong, exit 2;
* the machine refusing a write (disk full, file too large, read-only, no permission): one
  line naming the file, exit 2 (the commands write whole files or nothing, so nothing is
  left half-written);
* Ctrl-C: one line, exit 130;
* anything else is a bug in kiloml: one line ``kiloml: internal error: <type>: <message>
  (details in <log file>)``, the traceback in that log file, exit 3.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import functools
import os
import platform
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from kiloml.errors import KilomlError
from kiloml.version import __version__

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 3
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for `kiloml ... | head`
LOG_DIR_ENV = "KILOML_LOG_DIR"
# typer's own exits and usage errors keep their meaning (and their exit codes)
PASS_THROUGH = (typer.Exit, typer.Abort, typer.TyperException)

# Writes the machine refused: the user's environment, not kiloml's bug.
_ENVIRONMENT_ERRNOS = {errno.ENOSPC: "no space left on the device",
                       errno.EDQUOT: "disk quota exceeded",
                       errno.EFBIG: "file too large (a file-size limit)",
                       errno.EROFS: "read-only file system",
                       errno.EACCES: "permission denied",
                       errno.EPERM: "operation not permitted"}


def log_directory() -> Path:
    """Where internal-error logs go: $KILOML_LOG_DIR, else ~/.cache/kiloml/logs, else the
    temporary folder (a home that cannot be written must not hide the report)."""
    configured = os.environ.get(LOG_DIR_ENV)
    candidates = [Path(configured)] if configured else []
    candidates += [Path.home() / ".cache" / "kiloml" / "logs",
                   Path(tempfile.gettempdir()) / "kiloml-logs"]
    for folder in candidates:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if os.access(folder, os.W_OK):
                return folder
        except OSError:
            continue
    return Path(tempfile.gettempdir())


def write_internal_error_log(exc: BaseException) -> Path | None:
    """The traceback and what ran, in a new file; None if even that cannot be written."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    text = (f"kiloml {__version__} internal error, {dt.datetime.now().isoformat()}\n"
            f"command: {' '.join(sys.argv)}\n"
            f"cwd: {os.getcwd()}\n"
            f"python {platform.python_version()} on {platform.platform()}\n\n"
            + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    try:
        fd, name = tempfile.mkstemp(prefix=f"internal-error-{stamp}-", suffix=".log",
                                    dir=log_directory())
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        return Path(name)
    except OSError:
        return None


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def environment_error(exc: OSError) -> str | None:
    """The one-line message for a write the machine refused, or None for other OSErrors."""
    what = _ENVIRONMENT_ERRNOS.get(exc.errno or -1)
    if what is None:
        return None
    where = exc.filename if exc.filename is not None else "a file kiloml was writing"
    return f"{where}: {what}; nothing was left half-written"


def report(exc: BaseException) -> int:
    """Print the one line for ``exc`` on stderr and return the exit code."""
    if isinstance(exc, KilomlError):
        sys.stderr.write(f"kiloml: error: {exc}\n")
        return EXIT_USER_ERROR
    if isinstance(exc, BrokenPipeError):
        # the reader went away (`| head`): stop quietly, and keep the interpreter's final
        # flush of stdout from raising again
        # (ValueError, OSError: stdout is not a file, as in a test runner's buffer)
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    if isinstance(exc, KeyboardInterrupt):
        sys.stderr.write("kiloml: interrupted; nothing was left half-written\n")
        return EXIT_INTERRUPTED
    if isinstance(exc, OSError) and (message := environment_error(exc)) is not None:
        sys.stderr.write(f"kiloml: error: {message}\n")
        return EXIT_USER_ERROR
    log = write_internal_error_log(exc)
    details = f"details in {log}" if log is not None else "no log could be written"
    sys.stderr.write(f"kiloml: internal error: {type(exc).__name__}: "
                     f"{_one_line(exc) or '(no message)'} ({details})\n")
    return EXIT_INTERNAL_ERROR


def user_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Run a command's body; any exception becomes its one line and exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except PASS_THROUGH:
            raise
        except (Exception, KeyboardInterrupt) as exc:
            raise typer.Exit(report(exc)) from None

    return wrapper


def report_usage_error(exc: Exception) -> int:
    """A command line that does not parse (unknown command or option, a missing or
    malformed value): one line too, naming the command, exit 2."""
    ctx = getattr(exc, "ctx", None)
    path = getattr(ctx, "command_path", None) or "kiloml"
    message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    if not message.strip():  # no_args_is_help: the help was printed, there is no error
        return int(getattr(exc, "exit_code", EXIT_USER_ERROR))
    sys.stderr.write(f"kiloml: error: {path}: {_one_line(message)} (see '{path} --help')\n")
    return int(getattr(exc, "exit_code", EXIT_USER_ERROR))


def _is_usage_error(exc: Exception) -> bool:
    return isinstance(exc, typer.TyperException) and hasattr(exc, "format_message")


class GuardedGroup(TyperGroup):
    """The command group: whatever a subcommand raises past its own handling (in option
    parsing callbacks, in printing) still ends as one line, never a traceback, and so do
    command lines that do not parse (typer would draw a multi-line box)."""

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().make_context(*args, **kwargs)
        except typer.TyperException as exc:
            if _is_usage_error(exc):
                raise typer.Exit(report_usage_error(exc)) from None
            raise

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort):
            raise
        except typer.TyperException as exc:
            if _is_usage_error(exc):
                raise typer.Exit(report_usage_error(exc)) from None
            raise
        except (Exception, KeyboardInterrupt) as exc:
            raise typer.Exit(report(exc)) from None
