"""Progress bars and console output: progress and results on stdout, errors on stderr."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

T = TypeVar("T")

console = Console(highlight=False)
_quiet = False


def set_quiet(quiet: bool) -> None:
    """No progress bars (a search's worker processes: the search shows one bar of its own)."""
    global _quiet
    _quiet = quiet


@contextmanager
def quiet() -> Iterator[None]:
    """No progress bars inside (work nested in a step that shows its own)."""
    global _quiet
    before, _quiet = _quiet, True
    try:
        yield
    finally:
        _quiet = before


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a progress bar (rich) on stdout."""
    if _quiet:
        yield from items
        return
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(bar_width=30),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task(description, total=total)
        for item in items:
            yield item
            progress.advance(task)


def epoch_progress(max_epochs: int, description: str = "training"):
    """A progress bar for a training loop: (callback(epoch, total, train_loss, val_loss),
    close())."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("{task.description:<28}"), BarColumn(bar_width=30),
                   MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("{task.fields[losses]}"), console=console)
    bar.start()
    task = bar.add_task(description, total=max_epochs, losses="")

    def callback(epoch: int, total: int, train_loss: float, val_loss: float) -> None:
        bar.update(task, completed=epoch, total=total,
                   losses=f"loss {train_loss:.3f} / val {val_loss:.3f}")

    def close() -> None:
        bar.update(task, total=bar.tasks[0].completed)
        bar.stop()

    return callback, close
