"""`anagram animate` and `anagram sheet`: pictures of finished samples (`anagram.outputs`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .terminal import console, fail


def animate(
    path: Path = typer.Argument(..., help="An output image (its JSON beside it), its JSON, or an output folder."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for the animations (default: the input's)."),
    formats: str = typer.Option("gif,mp4", "--format", "-f", help="Comma-separated formats: gif, mp4."),
    fps: float = typer.Option(20, min=1, help="Frames per second."),
    hold: float = typer.Option(1.0, min=0, help="Seconds on each view (at least one frame)."),
    transition: float = typer.Option(1.5, min=0, help="Seconds from one view to the next (eased in and out)."),
    size: int = typer.Option(384, min=2, help="Long side of the image in pixels (small images enlarged crisply)."),
    gif_size: Optional[int] = typer.Option(None, "--gif-size", min=2,
                                           help="Long side of the GIF's image (default: the smaller of --size and 192)."),
    gif_fps: Optional[float] = typer.Option(None, "--gif-fps", min=1,
                                            help="GIF frames per second (default: the smaller of --fps and 10)."),
    font_size: int = typer.Option(20, min=1, help="Caption font size."),
    font: Optional[Path] = typer.Option(None, help="TrueType font file for the captions."),
    captions: bool = typer.Option(True, "--captions/--no-captions", help="Show each view's prompt."),
    boomerang: bool = typer.Option(True, "--boomerang/--no-boomerang",
                                   help="Travel back to the first view, so the loop is seamless."),
):
    """Animate anagrams: GIF/MP4 of the image turning from view to view, each held with its prompt.

    The MP4 is the full animation; the GIF a light preview (smaller, fewer frames, one palette)."""
    from ..outputs.animation import write_animation
    from ..outputs.records import MissingRecordError
    from ..views import ViewError

    try:
        write_animation(path, out, formats, show_captions=captions, fps=fps, hold_seconds=hold,
                        transition_seconds=transition, size=size, gif_size=gif_size, gif_fps=gif_fps, font_size=font_size,
                        font_path=str(font) if font else None, boomerang=boomerang,
                        on_written=lambda written: console.print(f"wrote {written}", soft_wrap=True))
    except (MissingRecordError, ViewError, ValueError, OSError) as error:
        fail(str(error))


def sheet(
    directory: Path = typer.Argument(..., help="An output folder (images with their JSON records)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for the sheet (default: DIRECTORY)."),
    metrics: Optional[Path] = typer.Option(None, help="Scores CSV with a 'stem' column (default: DIRECTORY/metrics.csv "
                                           "if present)."),
    columns: Optional[str] = typer.Option(None, help="Comma-separated scores to show (default: all)."),
    sort_by: Optional[str] = typer.Option(None, "--sort-by", help="Order the rows by this score."),
    ascending: bool = typer.Option(False, "--ascending", help="Lowest score first (default: highest first)."),
    rows_per_page: int = typer.Option(50, "--rows-per-page", min=1, help="Samples per page."),
    tile: int = typer.Option(192, min=8, help="Long side of each view's picture in pixels."),
    font_size: int = typer.Option(14, min=1, help="Text font size."),
    font: Optional[Path] = typer.Option(None, help="TrueType font file."),
):
    """Contact sheet of a run: every sample with all its views, prompts, seed and scores."""
    from ..outputs.contact_sheet import write_contact_sheet
    from ..views import ViewError

    if not directory.is_dir():
        fail(f"no such folder: {directory}")
    try:
        pages = write_contact_sheet(directory, out, metrics_path=metrics, sort_by=sort_by, descending=not ascending,
                                    columns=[c.strip() for c in columns.split(",") if c.strip()] if columns else None,
                                    rows_per_page=rows_per_page, tile=tile, font_size=font_size,
                                    font_path=str(font) if font else None)
    except (ViewError, ValueError, OSError) as error:
        fail(str(error))
    for page in pages:
        console.print(f"wrote {page}", soft_wrap=True)
