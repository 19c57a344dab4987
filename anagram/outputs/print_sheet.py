"""Print sheets: one PDF page per anagram, with what it takes to make the views physical.

    from anagram.outputs.print_sheet import write_print_sheet
    write_print_sheet(["outputs/a-digit-six_a-digit-nine__identity-rotate_180__seed0.json"], "sheet.pdf")

A page holds the image as large as the paper allows, the prompts, every view as a viewer sees it
(captioned with its prompt), and the marks each view needs on paper:

* **Orientation marks** for the views that move the whole sheet (rotations, flips, the transpose):
  a triangle on the edge that is "up" for that view, pointing outwards, and the view's prompt
  written along that edge so that it reads upright once the sheet is turned that way. Which edge is
  up is not looked up by name: `sheet_motion` asks the view where its top row comes from, so any
  view whose map is one of the square's eight symmetries gets its marks (third-party ones
  included). Views that mirror (flips, transpose) are seen through the back of the sheet held
  against a light, with the marked edge on top.
* **Cut lines and piece numbers** for the views that move pieces: the jigsaw's interlocking outlines
  (its knobs drawn from the geometry of `anagram.views.jigsaw`: a disc of radius
  ``KNOB_RADIUS x P`` whose centre lies ``KNOB_OFFSET x P`` past the edge, into the piece with the
  hole), the patch grid of ``patch_permute``, the squares of ``square_hinge`` and the disc of
  ``inner_circle``. Piece ``k`` is numbered on the image; the thumbnail of the view carries the
  same numbers where the pieces go, turned as the pieces are turned, which is the key for laying
  them out.

Geometry is in millimetres with the origin at the top-left of the page (fpdf2's user space). The
images are embedded at the sheet's DPI (small images enlarged crisply, `scale_image`), so a
32-pixel digit prints as sharp squares. Text uses the PDF core fonts (Latin-1; other characters
print as ``?``). Pages are built with fpdf2 and written atomically; nothing here prints.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import torch
from PIL import Image

from ..views import View, ViewError
from ..views.jigsaw import KNOB_OFFSET, KNOB_RADIUS, JigsawView
from ..views.permutation import InnerCircleView, PatchPermuteView, SquareHingeView
from .atomic import atomic_write_bytes
from .pictures import scale_image, to_pil, to_tensor
from .records import StoredSample, find_samples

MM_PER_INCH = 25.4
PAPER_SIZES = {"a3": (297.0, 420.0), "a4": (210.0, 297.0), "a5": (148.0, 210.0), "letter": (215.9, 279.4),
               "legal": (215.9, 355.6)}
DEFAULT_PAPER, DEFAULT_DPI = "A4", 300
MIN_DPI, MAX_DPI = 50, 1200
MARGIN = 12.0  # mm
MARK_BAND = 9.0  # mm around the image for the orientation marks
THUMB_MAX, THUMB_GAP = 58.0, 8.0  # mm: the views' pictures under the image (large enough for a jigsaw key)
CUT_COLOUR = (220, 0, 120)  # a colour no print needs elsewhere, so cut lines are easy to see (and to test)
CUT_WIDTH = 0.35  # mm
ARC_POINTS = 24  # points per knob arc
EDGES = ("top", "right", "bottom", "left")
# Counter-clockwise angle (degrees) of text that reads upright when the edge is turned to the top.
EDGE_TEXT_ANGLE = {"top": 0.0, "right": -90.0, "bottom": 180.0, "left": 90.0}


class PrintSheetError(ValueError):
    """A print sheet cannot be made as asked (paper size, DPI, no samples)."""


# -- what a view needs on paper -------------------------------------------------------------------------


@dataclass(frozen=True)
class SheetMotion:
    """How a view moves the whole sheet: the canonical edge that ends up on top, and whether it mirrors."""

    up_edge: str
    mirrored: bool


_DIHEDRAL = {  # the eight symmetries of the square as index maps on (H, W): (up edge, mirrored)
    ("top", False): lambda x: x,
    ("left", False): lambda x: torch.rot90(x, -1, (-2, -1)),  # turned clockwise: the left edge comes up
    ("bottom", False): lambda x: torch.rot90(x, 2, (-2, -1)),
    ("right", False): lambda x: torch.rot90(x, 1, (-2, -1)),
    ("top", True): lambda x: torch.flip(x, (-1,)),
    ("bottom", True): lambda x: torch.flip(x, (-2,)),
    ("left", True): lambda x: x.transpose(-2, -1),
    ("right", True): lambda x: torch.rot90(x, 2, (-2, -1)).transpose(-2, -1),
}


def sheet_motion(view: View, side: int = 8) -> SheetMotion | None:
    """The sheet motion that shows ``view``, or None if the view is not a symmetry of the square.

    Asked of the view itself: it is applied to a grid of distinct numbers and compared with the
    eight symmetries (exact: small integers are exact in float32).
    """
    if view.factorized or view.changes_values:
        return None
    grid = torch.arange(side * side, dtype=torch.float32).view(1, 1, side, side)
    try:
        seen = view.view(grid)
    except (ViewError, RuntimeError, ValueError):
        return None
    for (edge, mirrored), move in _DIHEDRAL.items():
        if seen.shape == grid.shape and torch.equal(seen, move(grid)):
            return SheetMotion(edge, mirrored)
    return None


def motion_instruction(motion: SheetMotion) -> str:
    if motion.mirrored:
        return (f"turn the sheet over so its {motion.up_edge} edge is on top and look through it "
                "against a light (or in a mirror)")
    if motion.up_edge == "top":
        return "as printed"
    turns = {"left": "a quarter turn clockwise", "bottom": "upside down", "right": "a quarter turn anticlockwise"}
    return f"turn the sheet {turns[motion.up_edge]} (the marked {motion.up_edge} edge on top)"


@dataclass
class Pieces:
    """Cut lines (polylines in image pixels) and the pieces they make: where each lands in the view.

    ``labels[k]`` is the centre (x, y) of piece ``k`` on the image, ``slots[k]`` its centre in the
    view and ``turns[k]`` its clockwise quarter turns there.
    """

    lines: list[list[tuple[float, float]]]
    labels: list[tuple[float, float]]
    slots: list[tuple[float, float]]
    turns: list[int]
    instruction: str


def _knob_edge(start, end, towards, side: float) -> list[tuple[float, float]]:
    """An internal jigsaw edge from ``start`` to ``end`` with its knob bulging to the ``towards`` side
    (a unit normal): straight to the disc, around it, straight to the end."""
    (x0, y0), (x1, y1) = start, end
    length = math.hypot(x1 - x0, y1 - y0)
    tx, ty = (x1 - x0) / length, (y1 - y0) / length
    nx, ny = towards
    mx, my = (x0 + x1) / 2, (y0 + y1) / 2
    d, r = KNOB_OFFSET * side, KNOB_RADIUS * side
    h = math.sqrt(r * r - d * d)
    cx, cy = mx + d * nx, my + d * ny
    first, last = math.atan2(-d, -h), math.atan2(-d, h) - 2 * math.pi  # the long way round, through +n
    points = [(x0, y0)]
    for i in range(ARC_POINTS + 1):
        theta = first + (last - first) * i / ARC_POINTS
        u, v = math.cos(theta), math.sin(theta)
        points.append((cx + r * (u * tx + v * nx), cy + r * (u * ty + v * ny)))
    points.append((x1, y1))
    return points


def _cell_centre(slot: int, grid: int, side: float) -> tuple[float, float]:
    return ((slot % grid + 0.5) * side, (slot // grid + 0.5) * side)


def _border(size: float) -> list[tuple[float, float]]:
    return [(0.0, 0.0), (size, 0.0), (size, size), (0.0, size), (0.0, 0.0)]


def _grid_lines(grid: int, size: float) -> list[list[tuple[float, float]]]:
    step = size / grid
    lines = [[(k * step, 0.0), (k * step, size)] for k in range(1, grid)]
    return lines + [[(0.0, k * step), (size, k * step)] for k in range(1, grid)]


def sheet_pieces(view: View, size: int) -> Pieces | None:
    """The cut lines and pieces of a piece-moving view on a ``size x size`` image (None for other views)."""
    if isinstance(view, JigsawView):
        grid, side = view.grid, size / view.grid
        lines = [_border(size)]
        for r in range(grid):
            for c in range(grid):
                sign = 1 if (r + c) % 2 == 0 else -1  # even pieces own the knobs, which reach into odd ones
                if c + 1 < grid:
                    lines.append(_knob_edge(((c + 1) * side, r * side), ((c + 1) * side, (r + 1) * side),
                                            (sign, 0), side))
                if r + 1 < grid:
                    lines.append(_knob_edge((c * side, (r + 1) * side), ((c + 1) * side, (r + 1) * side),
                                            (0, sign), side))
        target, turns = view.puzzle()
        count = grid * grid
        return Pieces(lines, [_cell_centre(k, grid, side) for k in range(count)],
                      [_cell_centre(int(target[k]), grid, side) for k in range(count)],
                      [int(t) for t in turns], "cut along the lines; lay each numbered piece where the key shows "
                      "it, turned as its number is")
    if isinstance(view, PatchPermuteView):
        grid, side = view.num_patches, size / view.num_patches
        perm, _, _ = view._cells()  # slot j shows piece perm[j]
        slot_of = {int(piece): slot for slot, piece in enumerate(perm.tolist())}
        count = grid * grid
        return Pieces([_border(size)] + _grid_lines(grid, size), [_cell_centre(k, grid, side) for k in range(count)],
                      [_cell_centre(slot_of[k], grid, side) for k in range(count)], [0] * count,
                      "cut along the grid; lay each numbered square where the key shows it")
    if isinstance(view, SquareHingeView):
        grid, side = view.grid, size // view.grid  # whole pixels: leftover rows and columns stay in place
        span = grid * side
        lines = [_border(size)] + [[(k * side, 0.0), (k * side, span)] for k in range(1, grid + 1)]
        lines += [[(0.0, k * side), (span, k * side)] for k in range(1, grid + 1)]
        count = grid * grid
        centres = [_cell_centre(k, grid, side) for k in range(count)]
        turns = [1 if (k // grid + k % grid) % 2 == 0 else 3 for k in range(count)]
        return Pieces(lines, centres, centres, turns, "cut out the squares; turn each a quarter turn in place, "
                      "as its number in the key shows (odd numbers clockwise, even ones anticlockwise)")
    if isinstance(view, InnerCircleView):
        radius = view.radius * size
        circle = [(size / 2 + radius * math.cos(2 * math.pi * i / 96), size / 2 + radius * math.sin(2 * math.pi * i / 96))
                  for i in range(97)]
        centre = (size / 2, size / 2)
        return Pieces([_border(size), circle], [centre], [centre], [2],
                      "cut out the disc and turn it half a turn")
    return None


VIEW_HINTS = {
    "low_pass": "step back (or squint) to see it",
    "high_pass": "look at it up close",
    "grayscale": "see it in grey (a black and white copy)",
    "color": "the colour left once the grey is taken away",
    "negate": "the colour negative: no paper version, printed beside",
}


def view_instruction(view: View, size: int) -> str:
    """What a person does with the printed sheet to see ``view``."""
    motion = sheet_motion(view)
    if motion is not None:
        return motion_instruction(motion)
    pieces = sheet_pieces(view, size)
    if pieces is not None:
        return pieces.instruction
    return VIEW_HINTS.get(view.name, "no paper version: printed beside, as it looks")


# -- pages --------------------------------------------------------------------------------------------------


def paper_size(paper: str | tuple[float, float], landscape: bool = False) -> tuple[float, float]:
    """``(width, height)`` in mm of a named paper (A3, A4, A5, Letter, Legal), ``"WxH"`` in mm, or a pair."""
    if isinstance(paper, str):
        name = paper.strip().lower()
        if name in PAPER_SIZES:
            width, height = PAPER_SIZES[name]
        else:
            try:
                width, height = (float(part) for part in name.removesuffix("mm").split("x"))
            except ValueError:
                raise PrintSheetError(f"unknown paper {paper!r}: use {', '.join(n.upper() if n[0] == 'a' else n.title() for n in PAPER_SIZES)} "
                                      "or WIDTHxHEIGHT in millimetres, e.g. 200x250") from None
    else:
        width, height = (float(v) for v in paper)
    if min(width, height) < 80:
        raise PrintSheetError(f"paper {width:g}x{height:g} mm is too small for a sheet (at least 80 mm a side)")
    if landscape != (width > height):
        width, height = height, width
    return width, height


def check_dpi(dpi: int) -> int:
    if not MIN_DPI <= int(dpi) <= MAX_DPI:
        raise PrintSheetError(f"dpi must be between {MIN_DPI} and {MAX_DPI}, got {dpi}")
    return int(dpi)


def pixels_for(mm: float, dpi: int) -> int:
    """Pixels that print ``mm`` millimetres at ``dpi``."""
    return max(1, round(mm / MM_PER_INCH * dpi))


def _latin(text: str) -> str:
    return text.encode("latin-1", "replace").decode("latin-1")


@dataclass
class _Page:
    """One page being drawn (fpdf2 document, paper, DPI)."""

    pdf: object
    width: float
    height: float
    dpi: int

    def picture(self, image: Image.Image, x: float, y: float, w: float, h: float) -> None:
        self.pdf.image(scale_image(image.convert("RGB"), (pixels_for(w, self.dpi), pixels_for(h, self.dpi))),
                       x=x, y=y, w=w, h=h)

    def fitted_text(self, x: float, y: float, width: float, text: str, size: float, style: str = "") -> float:
        """Write ``text`` wrapped to ``width`` mm from (x, y); returns the y below it."""
        pdf = self.pdf
        pdf.set_font("helvetica", style, size)
        pdf.set_xy(x, y)
        pdf.multi_cell(width, size * 0.45, _latin(text), new_x="LEFT", new_y="NEXT")
        return pdf.get_y()


def _edge_point(edge: str, x: float, y: float, side: float, out: float, along: float) -> tuple[float, float]:
    """A point ``out`` mm outside the middle of an image edge, moved ``along`` mm along it (reading direction)."""
    middle = {"top": (x + side / 2 + along, y - out), "bottom": (x + side / 2 - along, y + side + out),
              "left": (x - out, y + side / 2 - along), "right": (x + side + out, y + side / 2 + along)}
    return middle[edge]


def _orientation_marks(page: _Page, marks: list[tuple[int, str, SheetMotion]], x: float, y: float, side: float):
    """Triangles and prompts on the edges that are up for the sheet-moving views."""
    pdf = page.pdf
    by_edge: dict[str, list[tuple[int, str, SheetMotion]]] = {}
    for mark in marks:
        by_edge.setdefault(mark[2].up_edge, []).append(mark)
    for edge, items in by_edge.items():
        angle = EDGE_TEXT_ANGLE[edge]
        for slot, (index, prompt, motion) in enumerate(items):
            along = (slot - (len(items) - 1) / 2) * side / max(1, len(items))
            # The triangle points away from the image: its tip is the view's "up".
            tip = _edge_point(edge, x, y, side, 4.2, along)
            base = [_edge_point(edge, x, y, side, 1.2, along + offset) for offset in (-2.2, 2.2)]
            pdf.set_fill_color(40, 40, 40)
            pdf.polygon([tip, *base], style="F")
            label = f"{index + 1}. {prompt}" + (" (through the back)" if motion.mirrored else "")
            tx, ty = _edge_point(edge, x, y, side, 2.4, along + 3.2)
            pdf.set_font("helvetica", "", 7)
            width = side / max(1, len(items)) - 8
            text = _latin(label)
            while len(text) > 4 and pdf.get_string_width(text) > width:
                text = text[:-4] + "..."
            with pdf.rotation(angle, tx, ty):
                pdf.text(tx, ty + 1.0, text)


def _cut_lines(page: _Page, pieces: Pieces, x: float, y: float, scale: float) -> None:
    pdf = page.pdf
    pdf.set_draw_color(*CUT_COLOUR)
    pdf.set_line_width(CUT_WIDTH)
    for line in pieces.lines:
        pdf.polyline([(x + px * scale, y + py * scale) for px, py in line])


def _numbers(page: _Page, centres: Sequence[tuple[float, float]], turns: Sequence[int], x: float, y: float,
             scale: float, size: float) -> None:
    """Piece numbers in small white discs, each turned clockwise by its quarter turns."""
    pdf = page.pdf
    pdf.set_font("helvetica", "B", size)
    radius = size * 0.3
    for k, ((cx, cy), q) in enumerate(zip(centres, turns)):
        px, py = x + cx * scale, y + cy * scale
        pdf.set_fill_color(255, 255, 255)
        pdf.set_draw_color(*CUT_COLOUR)
        pdf.set_line_width(0.15)
        pdf.circle(px, py, radius, style="DF")
        text = str(k + 1)
        with pdf.rotation(-90.0 * q, px, py):  # fpdf2 turns anticlockwise
            pdf.text(px - pdf.get_string_width(text) / 2, py + size * 0.12, text)


def draw_sample_page(page: _Page, sample: StoredSample) -> None:
    """One sample on a new page: prompts, the image with its marks, the views with what to do."""
    pdf = page.pdf
    pdf.add_page()
    record = sample.record
    views, prompts = sample.views(), sample.prompts()
    image = sample.load_image()
    tensor = to_tensor(image)
    size = image.width
    usable = page.width - 2 * MARGIN
    top = MARGIN
    top = page.fitted_text(MARGIN, top, usable, " / ".join(prompts), 12, "B") + 1
    style = f"style: {record.style}   " if record.style else ""
    top = page.fitted_text(MARGIN, top, usable, f"{style}seed {record.seed}   model {record.model_name}   "
                           f"{record.num_inference_steps} steps, guidance {record.guidance_scale:g}", 8) + 2

    thumbs = len(views)
    thumb_side = min(THUMB_MAX, (usable - (thumbs - 1) * THUMB_GAP) / thumbs)
    strip_height = thumb_side + 26
    side = min(usable - 2 * MARK_BAND, page.height - MARGIN - top - strip_height - 2 * MARK_BAND - 8)
    if side < 40:
        raise PrintSheetError(f"the page is too small for {len(views)} views; use a larger paper")
    x0 = (page.width - side) / 2
    y0 = top + MARK_BAND
    page.picture(image, x0, y0, side, side)
    scale = side / size
    marks = []
    for index, (view, prompt) in enumerate(zip(views, prompts)):
        motion = sheet_motion(view)
        if motion is not None:
            marks.append((index, prompt, motion))
    _orientation_marks(page, marks, x0, y0, side)
    for view in views:
        pieces = sheet_pieces(view, size)
        if pieces is not None:
            _cut_lines(page, pieces, x0, y0, scale)
            if len(pieces.labels) > 1 or pieces.turns != [2]:
                _numbers(page, pieces.labels, [0] * len(pieces.labels), x0, y0, scale,
                         min(9.0, max(5.0, side / math.sqrt(len(pieces.labels)) * 0.18)))

    y = y0 + side + MARK_BAND + 2
    pdf.set_draw_color(0, 0, 0)
    pdf.set_line_width(0.2)
    row_width = thumbs * thumb_side + (thumbs - 1) * THUMB_GAP
    for index, (view, prompt) in enumerate(zip(views, prompts)):
        x = (page.width - row_width) / 2 + index * (thumb_side + THUMB_GAP)
        shown = to_pil(view.view_image(tensor))
        page.picture(shown, x, y, thumb_side, thumb_side)
        pdf.set_draw_color(0, 0, 0)
        pdf.set_line_width(0.2)
        pdf.rect(x, y, thumb_side, thumb_side)
        pieces = sheet_pieces(view, size)
        if pieces is not None and (len(pieces.slots) > 1 or pieces.turns != [2]):
            _numbers(page, pieces.slots, pieces.turns, x, y, thumb_side / size,
                     min(7.0, max(4.5, thumb_side / math.sqrt(len(pieces.slots)) * 0.3)))
        below = page.fitted_text(x, y + thumb_side + 1.5, thumb_side, f"{index + 1}. {view.name}: {prompt}", 7, "B")
        page.fitted_text(x, below + 0.5, thumb_side, view_instruction(view, size), 6.5)

    pdf.set_text_color(110, 110, 110)
    page.fitted_text(MARGIN, page.height - MARGIN + 3, usable,
                     f"{sample.stem}  -  anagram generate --from-json {sample.record_path.name}", 6)
    pdf.set_text_color(0, 0, 0)


def print_sheet_bytes(samples: Sequence[StoredSample], paper: str | tuple[float, float] = DEFAULT_PAPER,
                      dpi: int = DEFAULT_DPI, landscape: bool = False) -> bytes:
    """The PDF of ``samples``, one page each."""
    from fpdf import FPDF

    if not samples:
        raise PrintSheetError("no samples to print")
    width, height = paper_size(paper, landscape)
    pdf = FPDF(unit="mm", format=(width, height))
    pdf.set_auto_page_break(False)
    pdf.set_creator("anagram")
    pdf.set_title("anagram print sheet")
    page = _Page(pdf, width, height, check_dpi(dpi))
    for sample in samples:
        draw_sample_page(page, sample)
    return bytes(pdf.output())


def gather(paths: Iterable[str | os.PathLike | StoredSample]) -> list[StoredSample]:
    """Samples from sample images, JSON records, folders or `StoredSample` objects, in order."""
    samples: list[StoredSample] = []
    for item in paths:
        samples.extend([item] if isinstance(item, StoredSample) else find_samples(item))
    return samples


def write_print_sheet(paths: Iterable[str | os.PathLike | StoredSample], out: str | os.PathLike,
                      paper: str | tuple[float, float] = DEFAULT_PAPER, dpi: int = DEFAULT_DPI,
                      landscape: bool = False) -> Path:
    """Write the print sheet of the samples ``paths`` name (images, records, folders) to ``out``."""
    out = Path(out)
    if out.suffix.lower() != ".pdf":
        raise PrintSheetError(f"the print sheet is a PDF: give a file name ending in .pdf, got {out}")
    return atomic_write_bytes(out, print_sheet_bytes(gather(paths), paper, dpi, landscape))


__all__ = [
    "CUT_COLOUR", "PAPER_SIZES", "Pieces", "PrintSheetError", "SheetMotion", "check_dpi", "gather", "paper_size",
    "pixels_for", "print_sheet_bytes", "sheet_motion", "sheet_pieces", "view_instruction", "write_print_sheet",
]
