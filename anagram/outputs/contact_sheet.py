"""Contact sheets: every sample of a run on a page, to pick the good ones.

    from anagram.outputs.contact_sheet import write_contact_sheet
    write_contact_sheet("outputs/")      # outputs/contact_sheet.png (+ contact_sheet_2.png, ... if long)

One row per sample: a header line (row number, file stem, seed), its views side by side (each the
view as a viewer sees it, `View.view_image`, captioned with the view's name and prompt) and, when
there are any, its scores underneath. Scores come from ``DIR/metrics.csv`` if it exists (a
``stem`` column, one row per sample, a column per metric: what `anagram evaluate` writes) and from
the ``scores`` argument (``{stem: {metric: value}}``, which wins over the CSV). Rows can be sorted by
a metric (best first). Long runs are cut into pages of ``rows_per_page`` rows.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from PIL import Image, ImageDraw

from .atomic import write_png
from .pictures import caption_font, scale_image, to_pil, to_tensor, wrap_text
from .records import METRICS_FILE, StoredSample, find_samples

SHEET_NAME = "contact_sheet"
DEFAULT_TILE = 192
DEFAULT_ROWS_PER_PAGE = 50
DEFAULT_FONT_SIZE = 14
GAP = 8


class SheetError(ValueError):
    """A contact sheet cannot be made as asked (unknown metric, bad options)."""


def _value(text: Any) -> Any:
    if isinstance(text, str):
        try:
            return float(text) if text.strip() else None
        except ValueError:
            return text
    return text


def read_metrics(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """``{stem: {metric: value}}`` from a CSV with a ``stem`` column (numbers parsed, blanks dropped).

    Several rows for one stem are merged (later values win).
    """
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or "stem" not in reader.fieldnames:
            raise SheetError(f"{path} has no 'stem' column (columns: {', '.join(reader.fieldnames or [])})")
        scores: dict[str, dict[str, Any]] = {}
        for row in reader:
            stem = (row.pop("stem") or "").strip()
            if not stem:
                continue
            values = {key: _value(text) for key, text in row.items() if key is not None}
            scores.setdefault(stem, {}).update({k: v for k, v in values.items() if v is not None})
    return scores


def gather_scores(out_dir: str | os.PathLike, scores: Mapping[str, Mapping[str, Any]] | None = None,
                  metrics_path: str | os.PathLike | None = None) -> dict[str, dict[str, Any]]:
    """The CSV scores (``DIR/metrics.csv`` or ``metrics_path``) merged with ``scores``."""
    path = Path(metrics_path) if metrics_path is not None else Path(out_dir) / METRICS_FILE
    merged = read_metrics(path) if path.is_file() else {}
    if metrics_path is not None and not path.is_file():
        raise SheetError(f"no such metrics file: {path}")
    for stem, values in (scores or {}).items():
        merged.setdefault(stem, {}).update(values)
    return merged


def format_score(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e6:
        return str(int(value))
    return f"{value:.4g}"


def _order(samples: list[StoredSample], scores: dict[str, dict[str, Any]], sort_by: str | None,
           descending: bool) -> list[StoredSample]:
    if sort_by is None:
        return samples
    known = {key for values in scores.values() for key in values}
    if sort_by not in known:
        raise SheetError(f"cannot sort by {sort_by!r}: no such score (scores: {', '.join(sorted(known)) or 'none'})")

    def key(sample: StoredSample):
        value = scores.get(sample.stem, {}).get(sort_by)
        if not isinstance(value, (int, float)):
            return (1, 0.0)  # samples without the score go last
        return (0, -value if descending else value)

    return sorted(samples, key=key)


def _tiles(sample: StoredSample, tile: int) -> list[Image.Image]:
    image = to_tensor(sample.load_image())
    tiles = []
    for view in sample.views():
        shown = to_pil(view.view_image(image))
        scale = tile / max(shown.size)
        box = (max(1, round(shown.width * scale)), max(1, round(shown.height * scale)))
        tiles.append(scale_image(shown, box))
    return tiles


def contact_sheets(
    out_dir: str | os.PathLike,
    columns: Sequence[str] | None = None,
    scores: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    rows_per_page: int = DEFAULT_ROWS_PER_PAGE,
    tile: int = DEFAULT_TILE,
    font_size: int = DEFAULT_FONT_SIZE,
    font_path: str | None = None,
    sort_by: str | None = None,
    descending: bool = True,
    metrics_path: str | os.PathLike | None = None,
) -> list[Image.Image]:
    """Every page of the contact sheet of the output folder ``out_dir``.

    ``columns``: the scores to show, in order (default: all of them). ``scores``: extra
    ``{stem: {metric: value}}``. ``sort_by``: a score to order the rows by (``descending`` = best
    first when higher is better). ``tile``: the long side of each view's picture in pixels.
    """
    if rows_per_page < 1:
        raise SheetError(f"rows_per_page must be at least 1, got {rows_per_page}")
    if tile < 8:
        raise SheetError(f"tile must be at least 8 pixels, got {tile}")
    out_dir = Path(out_dir)
    samples = find_samples(out_dir)
    all_scores = gather_scores(out_dir, scores, metrics_path)
    samples = _order(samples, all_scores, sort_by, descending)
    font = caption_font(font_size, font_path)
    title_font = caption_font(int(font_size * 1.3), font_path)
    line = int(round(font_size * 1.3))
    pages = [samples[i : i + rows_per_page] for i in range(0, len(samples), rows_per_page)]
    sheets = []
    for number, page in enumerate(pages):
        first = number * rows_per_page
        rows = [_row(first + i + 1, sample, all_scores.get(sample.stem, {}), columns, tile, font, line)
                for i, sample in enumerate(page)]
        title = f"{out_dir.resolve().name or out_dir}: {len(samples)} samples"
        if sort_by:
            title += f", sorted by {sort_by} ({'highest' if descending else 'lowest'} first)"
        if len(pages) > 1:
            title += f", page {number + 1}/{len(pages)}"
        sheets.append(_page(title, rows, title_font, line))
    return sheets


def contact_sheet(out_dir: str | os.PathLike, columns: Sequence[str] | None = None,
                  scores: Mapping[str, Mapping[str, Any]] | None = None, *, page: int = 0,
                  **options: Any) -> Image.Image:
    """One page (``page``, from 0) of the contact sheet; see `contact_sheets` for the options."""
    sheets = contact_sheets(out_dir, columns, scores, **options)
    if not 0 <= page < len(sheets):
        raise SheetError(f"no page {page}: the sheet has {len(sheets)} page(s), numbered from 0")
    return sheets[page]


def sheet_paths(out: str | os.PathLike, pages: int) -> list[Path]:
    """``contact_sheet.png``, ``contact_sheet_2.png``, ... in the folder ``out``."""
    out = Path(out)
    return [out / (f"{SHEET_NAME}.png" if i == 0 else f"{SHEET_NAME}_{i + 1}.png") for i in range(pages)]


def write_contact_sheet(out_dir: str | os.PathLike, out: str | os.PathLike | None = None,
                        **options: Any) -> list[Path]:
    """Write the pages of the contact sheet of ``out_dir`` into the folder ``out`` (default:
    ``out_dir``): ``contact_sheet.png`` then ``contact_sheet_2.png``, ... Pages left over from an
    earlier, longer sheet are removed. Returns the pages written (the first is ``contact_sheet.png``)."""
    sheets = contact_sheets(out_dir, **options)
    folder = Path(out) if out is not None else Path(out_dir)
    paths = sheet_paths(folder, len(sheets))
    for path, sheet in zip(paths, sheets):
        write_png(path, sheet)
    for stale in folder.glob(f"{SHEET_NAME}_*.png"):
        suffix = stale.stem[len(SHEET_NAME) + 1 :]
        if suffix.isdigit() and int(suffix) > len(sheets):
            stale.unlink(missing_ok=True)
    return paths


# -- drawing -----------------------------------------------------------------------------------------------


def _row(index: int, sample: StoredSample, scores: Mapping[str, Any], columns: Sequence[str] | None, tile: int,
         font, line: int) -> Image.Image:
    """Header (number, stem, seed), the views side by side with their captions, the scores."""
    tiles = _tiles(sample, tile)
    names = [view.name for view in sample.views()]
    prompts = sample.prompts() + [""] * (len(names) - len(sample.prompts()))
    width = len(tiles) * (tile + GAP) - GAP
    text_width = max(width, 3 * tile)
    captions = [wrap_text(f"{name}: {prompt}" if prompt else name, font, tile) for name, prompt in zip(names, prompts)]
    header = wrap_text(f"#{index}  {sample.stem}  (seed {sample.record.seed})", font, text_width)
    shown = list(columns) if columns is not None else list(scores)
    score_text = "   ".join(f"{name}: {format_score(scores[name])}" for name in shown if name in scores)
    score_lines = wrap_text(score_text, font, text_width) if score_text else []
    tile_height = max(t.height for t in tiles)
    caption_height = max(len(c) for c in captions) * line
    height = len(header) * line + GAP + tile_height + GAP // 2 + caption_height
    if score_lines:
        height += GAP // 2 + len(score_lines) * line
    widest_text = max(int(font.getlength(text)) + 1 for text in header + score_lines)
    row = Image.new("RGB", (max(width, widest_text), height), "white")
    draw = ImageDraw.Draw(row)
    y = 0
    for text in header:
        draw.text((0, y), text, fill="black", font=font)
        y += line
    top = y + GAP
    for k, (picture, lines) in enumerate(zip(tiles, captions)):
        x = k * (tile + GAP)
        row.paste(picture, (x, top))
        for i, text in enumerate(lines):
            draw.text((x, top + tile_height + GAP // 2 + i * line), text, fill=(60, 60, 60), font=font)
    y = top + tile_height + GAP // 2 + caption_height + GAP // 2
    for text in score_lines:
        draw.text((0, y), text, fill=(0, 70, 140), font=font)
        y += line
    return row


def _page(title: str, rows: list[Image.Image], title_font, line: int) -> Image.Image:
    margin = 2 * GAP
    width = max([row.width for row in rows] + [int(title_font.getlength(title)) + 1]) + 2 * margin
    title_height = int(line * 1.5) + GAP
    height = margin + title_height + sum(row.height + 3 * GAP for row in rows) + margin
    page = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(page)
    draw.text((margin, margin), title, fill="black", font=title_font)
    y = margin + title_height
    for row in rows:
        draw.line([(margin, y), (width - margin, y)], fill=(200, 200, 200), width=1)
        y += 1 + GAP
        page.paste(row, (margin, y))
        y += row.height + 2 * GAP - 1
    return page


__all__ = [
    "SheetError", "contact_sheet", "contact_sheets", "format_score", "gather_scores", "read_metrics", "sheet_paths",
    "write_contact_sheet",
]
