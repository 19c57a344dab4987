"""The `anagram` command line (typer): one module per group of verbs; this package owns the terminal.

    anagram generate "a digit six" "a digit nine" --views identity,rotate_180 --num-samples 4
    anagram batch jobs.csv --out runs/a
    anagram evaluate runs/a --sheet
    anagram animate runs/a
    anagram views
    anagram print outputs/ --out sheet.pdf
    anagram app

Importing it is cheap: every verb imports torch, diffusers and the engines only when it runs, so
``anagram --help``, ``anagram --version`` and ``anagram views`` answer at once.
"""

from __future__ import annotations

from typing import Optional

import typer

from .app import app_command
from .batch import batch_command
from .evaluate import evaluate
from .generate import generate
from .outputs import animate, sheet
from .print_sheet import print_command
from .translate import translate_app
from .views import list_views

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Visual anagrams with diffusion models.")


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"anagram {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True,
                                                 help="Print the version and exit.")):
    """Visual anagrams with diffusion models."""


app.command()(generate)
app.command("views")(list_views)
app.command("batch")(batch_command)
app.command()(animate)
app.command()(sheet)
app.command()(evaluate)
app.command("print")(print_command)
app.command("app")(app_command)
app.add_typer(translate_app, name="translate")


def main() -> None:  # pragma: no cover - console-script entry
    app()


__all__ = ["app", "main"]
