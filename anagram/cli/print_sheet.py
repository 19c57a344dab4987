"""`anagram print`: a PDF print sheet of samples, one page each, with the marks their views need.

    anagram print outputs/a-digit-six_a-digit-nine__identity-jigsaw__seed0.json --out sheet.pdf --paper A4 --dpi 300
"""

from __future__ import annotations

from pathlib import Path
from typing import List

import typer

from .terminal import console, fail


def print_command(
    samples: List[Path] = typer.Argument(..., help="Sample images, their JSON records, or output folders."),
    out: Path = typer.Option(Path("sheet.pdf"), "--out", help="The PDF to write."),
    paper: str = typer.Option("A4", help="A3, A4, A5, Letter, Legal, or WIDTHxHEIGHT in mm."),
    dpi: int = typer.Option(300, help="Resolution of the printed pictures."),
    landscape: bool = typer.Option(False, "--landscape", help="Landscape pages."),
):
    """Print sheets: each sample on a page with its views, prompts, orientation marks and cut lines."""
    from ..outputs.print_sheet import PrintSheetError, gather, write_print_sheet
    from ..outputs.records import MissingRecordError, RecordError
    from ..views import ViewError

    try:
        found = gather(samples)
        written = write_print_sheet(found, out, paper=paper, dpi=dpi, landscape=landscape)
    except (PrintSheetError, RecordError, MissingRecordError, ViewError, OSError) as error:
        fail(str(error))
    console.print(f"wrote {written} ({len(found)} page{'s' if len(found) != 1 else ''})", soft_wrap=True)
