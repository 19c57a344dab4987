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

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Visual anagrams with diffusion models.",
                  rich_markup_mode=None)  # click's plain help: the option texts keep their width at 80 columns


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


def _paragraphs(text: str) -> list[str]:
    return [" ".join(paragraph.split()) for paragraph in inspect.cleandoc(text or "").split("\n\n")]


def _unwrap_help(typer_app: typer.Typer) -> None:
    """Each command's help one line per paragraph, and its summary the whole first paragraph: click
    would break the docstrings' 100-column lines again in a narrower terminal (ragged half-empty
    lines) and cut the command list's summaries to a few words with "..."."""
    for info in typer_app.registered_commands:
        paragraphs = _paragraphs(info.help or getattr(info.callback, "__doc__", "") or "")
        info.help, info.short_help = "\n\n".join(paragraphs), info.short_help or paragraphs[0]
    for group in typer_app.registered_groups:
        help_text = group.help if isinstance(group.help, str) else group.typer_instance.info.help
        if isinstance(help_text, str):
            group.short_help = group.short_help or _paragraphs(help_text)[0]
        _unwrap_help(group.typer_instance)


_unwrap_help(app)


def main() -> None:  # pragma: no cover - console-script entry
    app()


__all__ = ["app", "main"]
