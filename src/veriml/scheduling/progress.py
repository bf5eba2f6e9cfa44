"""A rich progress bar for a long search (the searches themselves only call back)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from veriml.scheduling.search import Progress as OnProgress


@contextmanager
def search_bar(label: str, console: Console | None = None) -> Iterator[OnProgress]:
    """A callback for a search's `on_progress` that draws its budget used and best cost so far."""
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("best {task.fields[best]}"),
        TimeRemainingColumn(),
        console=console or Console(stderr=True),
        transient=True,
    )
    with bar:
        task = bar.add_task(label, total=1.0, best="-")

        def update(fraction: float, best: float) -> None:
            bar.update(task, completed=fraction, best=f"{best:.3f} s")

        yield update
