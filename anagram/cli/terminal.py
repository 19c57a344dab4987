"""The terminal: the one console every command writes to, errors, progress bars.

Only the faces (this package and the web app) print; the engines report through callbacks.
"""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)


def fail(message: str) -> None:
    """Print ``error: message`` and exit with status 2 (a mistake of the user's, said plainly)."""
    console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    raise typer.Exit(code=2)


def warn(message: str) -> None:
    """Print ``warning: message``: something will probably not come out as the user expects."""
    console.print(f"[bold yellow]warning:[/] {escape(message)}", soft_wrap=True, highlight=False)


def quiet_library_progress_bars() -> None:
    """diffusers/transformers draw their own tqdm bars while loading; ours (rich) is the only one shown."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()


def progress_bar() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), console=console)
