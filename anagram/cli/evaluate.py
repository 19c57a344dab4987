"""`anagram evaluate`: the Visual Anagrams metrics of an output folder (`anagram.evaluation`)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .terminal import console, fail


def evaluate(
    directory: Path = typer.Argument(..., help="An output folder of `anagram generate` or `anagram batch`."),
    judge: str = typer.Option("auto", help="auto (the judge the samples' model declares: the second digit "
                              "classifier digit_judge for --model digits, the glyph judge for --model glyphs), "
                              "digit_judge, digits (the shipped digit classifier, also a balancing scorer), "
                              "digits:<classifier folder>, glyphs, or clip:<CLIP id or folder> for real models."),
    sheet: bool = typer.Option(False, "--sheet", help="Also write the contact sheet, with the scores."),
):
    """Visual Anagrams metrics (alignment, concealment, success; segregation for glyphs) over every sample;
    writes metrics.csv."""
    from ..evaluation import METRICS_FILE, evaluate_folder

    try:
        result = evaluate_folder(directory, judge)
    except (FileNotFoundError, ValueError) as error:
        fail(str(error))
    table = Table(title=f"{result['samples']} samples, judged by {result['judge']}")
    for column in ("metric", "mean", "q90", "q95"):
        table.add_column(column)
    for key in ("alignment", "concealment", "concealment_row", "concealment_column"):
        values = result[key]
        table.add_row(key, f"{values['mean']:.3f}", f"{values['q90']:.3f}", f"{values['q95']:.3f}")
    table.add_row("success rate", f"{result['success_rate']:.3f}", "", "")
    if "segregation_rate" in result:
        table.add_row("segregation rate", f"{result['segregation_rate']:.3f}", "", "")
    Console().print(table)
    skipped = result.get("skipped") or []
    if skipped:
        console.print(f"[bold yellow]skipped {len(skipped)} sample(s)[/] the judge cannot score (not in the numbers):",
                      soft_wrap=True)
        for entry in skipped:
            console.print(f"  {escape(entry['stem'])}: {escape(entry['reason'])}", soft_wrap=True, highlight=False)
    console.print(f"wrote {directory / METRICS_FILE}", soft_wrap=True)
    if sheet:
        from ..outputs.contact_sheet import write_contact_sheet

        for page in write_contact_sheet(directory, sort_by="alignment"):
            console.print(f"wrote {page}", soft_wrap=True)
