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

import inspect
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


def _help(command) -> str:
    """A command's docstring, one line per paragraph: typer keeps the source's line breaks, which a
    terminal narrower than the source then breaks again mid-sentence (ragged half-empty lines)."""
    doc = inspect.cleandoc(command.__doc__ or "")
    return "\n\n".join(" ".join(paragraph.split()) for paragraph in doc.split("\n\n"))


app.command(help=_help(generate))(generate)
app.command("views", help=_help(list_views))(list_views)
app.command("batch", help=_help(batch_command))(batch_command)
app.command(help=_help(animate))(animate)
app.command(help=_help(sheet))(sheet)
app.command(help=_help(evaluate))(evaluate)
app.command("print", help=_help(print_command))(print_command)
app.command("app", help=_help(app_command))(app_command)
app.add_typer(translate_app, name="translate")


def main() -> None:  # pragma: no cover - console-script entry
    app()


__all__ = ["app", "main"]
