"""Typeset glyphs rendered on the fly: the glyph testbed's data (26 lowercase letters, 10 digits).

The fonts are the TrueType faces bundled inside matplotlib's wheel (DejaVu Sans / Sans Mono /
Serif in four weights and slants, STIX General in four, and five Computer Modern faces), so
nothing is downloaded. Symbol fonts whose letter slots hold other shapes (cmsy10, cmex10, the STIX
size variants and non-Unicode faces, LastResort) and faces whose digits are old-style (cmmi10) are
left out; :data:`FONTS` lists the faces used and their style words.

Rendering happens in two stages:

* **Masters** (:func:`glyph_bank`): every (font, glyph, stroke weight) is drawn once with PIL at
  :data:`MASTER_SIZE` pixels per em, cropped to its ink, as ink coverage in ``[0, 1]``; cached per
  process.
* **Placement** (:func:`render_glyph`, :func:`render_batch`): a master is scaled, rotated and put
  on a ``size x size`` canvas with one ``grid_sample`` at 4x supersampling, then average-pooled
  (antialiased). The scale is the font's digit height (the height of its ``0``) as a fraction of
  the canvas height, so lowercase letters keep their relative sizes (``o`` is smaller than ``0``);
  a glyph that would not fit is shrunk until it does.

Images are ``(B, 1, size, size)`` float32 in ``[-1, 1]``: background ``-1``, ink ``+1``. Every
random choice is drawn from a ``torch.Generator``, so a batch is a pure function of its seed.

To add a glyph, append a character to :data:`CLASSES` (and its word to ``CLASS_WORDS`` if it has
one); to add a font, append a :class:`Font` (a file in matplotlib's font folder or an absolute
path) with its style words. Models trained before the change keep working on the old classes.
"""

from __future__ import annotations

import math
import string
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

#: The glyph classes, in class-index order: ``a``..``z`` then ``0``..``9``.
CLASSES: tuple[str, ...] = tuple(string.ascii_lowercase + string.digits)
#: Digits can also be prompted by their word ("a digit six").
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
CLASS_WORDS: dict[str, str] = {str(d): w for d, w in enumerate(DIGIT_WORDS)}
#: Style words a prompt may carry, in the order they are written ("a bold italic serif letter q").
STYLE_WORDS = ("bold", "italic", "serif", "sans", "mono")

DEFAULT_SIZE = 32
MASTER_SIZE = 64  # pixels per em of the masters
SUPERSAMPLE = 4
SCALE_RANGE = (0.35, 0.9)  # digit height / canvas height
MAX_ROTATION_DEGREES = 6.0
FIT_MARGIN = 1.0  # canvas pixels kept free on every side


@dataclass(frozen=True)
class Font:
    """A TrueType face and the style words that describe it.

    ``file`` is a name in matplotlib's bundled font folder or an absolute path; ``weights`` are
    the PIL stroke widths (master pixels) drawn around the outline: 0 is the face as designed,
    larger is heavier.
    """

    file: str
    styles: tuple[str, ...]
    weights: tuple[int, ...] = (0, 1, 2)

    def path(self) -> Path:
        p = Path(self.file)
        if p.is_absolute():
            return p
        import matplotlib

        return Path(matplotlib.get_data_path()) / "fonts" / "ttf" / self.file


_LIGHT = (0, 1, 2)
_HEAVY = (0, 1)  # bold faces: one step heavier at most (heavier closes the counters of e, a, 8)

#: The faces used, with their style words.
FONTS: tuple[Font, ...] = (
    Font("DejaVuSans.ttf", ("sans",), _LIGHT),
    Font("DejaVuSans-Bold.ttf", ("bold", "sans"), _HEAVY),
    Font("DejaVuSans-Oblique.ttf", ("italic", "sans"), _LIGHT),
    Font("DejaVuSans-BoldOblique.ttf", ("bold", "italic", "sans"), _HEAVY),
    Font("DejaVuSansMono.ttf", ("mono",), _LIGHT),
    Font("DejaVuSansMono-Bold.ttf", ("bold", "mono"), _HEAVY),
    Font("DejaVuSansMono-Oblique.ttf", ("italic", "mono"), _LIGHT),
    Font("DejaVuSansMono-BoldOblique.ttf", ("bold", "italic", "mono"), _HEAVY),
    Font("DejaVuSerif.ttf", ("serif",), _LIGHT),
    Font("DejaVuSerif-Bold.ttf", ("bold", "serif"), _HEAVY),
    Font("DejaVuSerif-Italic.ttf", ("italic", "serif"), _LIGHT),
    Font("DejaVuSerif-BoldItalic.ttf", ("bold", "italic", "serif"), _HEAVY),
    Font("STIXGeneral.ttf", ("serif",), _LIGHT),
    Font("STIXGeneralBol.ttf", ("bold", "serif"), _HEAVY),
    Font("STIXGeneralItalic.ttf", ("italic", "serif"), _LIGHT),
    Font("STIXGeneralBolIta.ttf", ("bold", "italic", "serif"), _HEAVY),
    Font("cmr10.ttf", ("serif",), _LIGHT),
    Font("cmb10.ttf", ("bold", "serif"), _HEAVY),
    Font("cmti10.ttf", ("italic", "serif"), _LIGHT),
    Font("cmss10.ttf", ("sans",), _LIGHT),
    Font("cmtt10.ttf", ("mono",), _LIGHT),
)


def class_index(glyph: str) -> int:
    """Index of a glyph (``"q"``, ``"6"``, or a digit word ``"six"``) in :data:`CLASSES`."""
    g = glyph.strip().lower()
    if g in DIGIT_WORDS:
        g = str(DIGIT_WORDS.index(g))
    if g not in CLASSES:
        raise ValueError(f"{glyph!r} is not a glyph of the testbed: use a lowercase letter a-z, a digit 0-9 "
                         "or a digit word (zero..nine)")
    return CLASSES.index(g)


# -- masters ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Master:
    """One glyph drawn large: ink coverage ``(h, w)`` in ``[0, 1]`` cropped to its ink, and the
    height of its font's ``0`` at the same size (the reference the scale is measured against)."""

    ink: torch.Tensor
    digit_height: float


def _draw(font_path: Path, glyph: str, stroke: int):
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(font_path), MASTER_SIZE)
    pad = MASTER_SIZE
    canvas = Image.new("L", (3 * MASTER_SIZE, 3 * MASTER_SIZE), 0)
    ImageDraw.Draw(canvas).text((pad, 2 * pad), glyph, fill=255, font=font, anchor="ls",
                                stroke_width=stroke, stroke_fill=255)
    box = canvas.getbbox()
    if box is None:
        raise ValueError(f"font {font_path.name} draws nothing for {glyph!r}")
    return canvas.crop(box), box


@lru_cache(maxsize=None)
def _font_masters(font: Font) -> tuple[tuple[Master, ...], ...]:
    """``masters[class][weight]`` for one font."""
    import numpy as np

    path = font.path()
    if not path.is_file():
        raise FileNotFoundError(f"font file {path} not found (is matplotlib installed?)")
    out = []
    for glyph in CLASSES:
        per_weight = []
        for stroke in font.weights:
            image, _ = _draw(path, glyph, stroke)
            _, zero_box = _draw(path, "0", stroke)
            ink = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)
            per_weight.append(Master(ink, float(zero_box[3] - zero_box[1])))
        out.append(tuple(per_weight))
    return tuple(out)


def glyph_bank(fonts: Sequence[Font] = FONTS) -> list[tuple[tuple[Master, ...], ...]]:
    """The masters of every font: ``bank[font][class][weight]`` (built once per process)."""
    return [_font_masters(f) for f in fonts]


# -- placement -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """Where and how a glyph sits on the canvas.

    ``scale``: the font's digit height as a fraction of the canvas height; ``angle``: degrees,
    counter-clockwise; ``center``: the ink box's centre as fractions of the canvas ``(x, y)``
    (the glyph is moved inwards if it would leave the canvas); ``weight``: index into the
    font's stroke weights.
    """

    scale: float = 0.6
    angle: float = 0.0
    center: tuple[float, float] = (0.5, 0.5)
    weight: int = 0


def _fit(master: Master, p: Placement, size: int) -> tuple[float, float, float]:
    """(canvas pixels per master pixel, centre x, centre y) with the rotated box inside the canvas."""
    h, w = master.ink.shape
    k = p.scale * size / master.digit_height
    a = math.radians(p.angle)
    box_w = k * (abs(w * math.cos(a)) + abs(h * math.sin(a)))
    box_h = k * (abs(w * math.sin(a)) + abs(h * math.cos(a)))
    room = size - 2 * FIT_MARGIN
    shrink = min(1.0, room / box_w, room / box_h)
    k, box_w, box_h = k * shrink, box_w * shrink, box_h * shrink
    cx = min(max(p.center[0] * size, FIT_MARGIN + box_w / 2), size - FIT_MARGIN - box_w / 2)
    cy = min(max(p.center[1] * size, FIT_MARGIN + box_h / 2), size - FIT_MARGIN - box_h / 2)
    return k, cx, cy


def place(master: Master, p: Placement, size: int = DEFAULT_SIZE) -> torch.Tensor:
    """Ink coverage ``(size, size)`` in ``[0, 1]`` of one placed master."""
    h, w = master.ink.shape
    k, cx, cy = _fit(master, p, size)
    a = math.radians(p.angle)
    cos, sin = math.cos(a), math.sin(a)
    # output normalised coords u -> canvas pixels -> (un-rotate, un-scale) -> master normalised coords
    # canvas: x = (u_x + 1) / 2 * size; master: g_x = 2 q_x / w - 1 with q the master pixel coordinate
    half = size / 2
    # q = R(-a) (p - c) / k + (w/2, h/2) with p = half * (u + 1); the y axis points down, so a
    # counter-clockwise turn on screen is R(+a) in (x, -y), i.e. [[cos, sin], [-sin, cos]] in (x, y)
    r = torch.tensor([[cos, -sin], [sin, cos]], dtype=torch.float64)  # inverse rotation in (x, y-down)
    lin = r * half / k
    off = r @ torch.tensor([half - cx, half - cy], dtype=torch.float64) / k
    scale_back = torch.tensor([2.0 / w, 2.0 / h], dtype=torch.float64)
    theta = torch.cat([lin * scale_back[:, None], (off * scale_back)[:, None]], dim=1).float()
    s = size * SUPERSAMPLE
    grid = F.affine_grid(theta[None], [1, 1, s, s], align_corners=False)
    ink = F.grid_sample(master.ink[None, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return F.avg_pool2d(ink, SUPERSAMPLE)[0, 0].clamp(0.0, 1.0)


def render_glyph(glyph: str, font: int | Font = 0, placement: Placement = Placement(),
                 size: int = DEFAULT_SIZE) -> torch.Tensor:
    """One glyph as an image ``(1, size, size)`` in ``[-1, 1]`` (``font``: index into :data:`FONTS` or a Font)."""
    f = FONTS[font] if isinstance(font, int) else font
    master = _font_masters(f)[class_index(glyph)][placement.weight]
    return place(master, placement, size)[None] * 2.0 - 1.0


@dataclass(frozen=True)
class GlyphBatch:
    """Rendered glyphs ``images (B, 1, size, size)`` in ``[-1, 1]``, their classes, fonts and placements."""

    images: torch.Tensor
    labels: torch.Tensor
    fonts: tuple[int, ...]
    placements: tuple[Placement, ...]


def random_placements(n: int, fonts: Sequence[int], generator: torch.Generator,
                      scale_range: tuple[float, float] = SCALE_RANGE,
                      max_rotation: float = MAX_ROTATION_DEGREES,
                      font_list: Sequence[Font] = FONTS) -> list[Placement]:
    """``n`` random placements: uniform scale, rotation, centre (the whole canvas) and stroke weight."""
    u = torch.rand((n, 5), generator=generator, dtype=torch.float64).tolist()
    lo, hi = scale_range
    return [Placement(scale=lo + (hi - lo) * r[0], angle=(2 * r[1] - 1) * max_rotation, center=(r[2], r[3]),
                      weight=min(int(r[4] * len(font_list[f].weights)), len(font_list[f].weights) - 1))
            for r, f in zip(u, fonts)]


def render_batch(labels: torch.Tensor | Sequence[int], generator: torch.Generator, size: int = DEFAULT_SIZE,
                 fonts: Sequence[Font] = FONTS, scale_range: tuple[float, float] = SCALE_RANGE,
                 max_rotation: float = MAX_ROTATION_DEGREES) -> GlyphBatch:
    """Render glyphs of classes ``labels`` in random fonts and placements drawn from ``generator``."""
    labels = torch.as_tensor(labels, dtype=torch.long)
    n = len(labels)
    font_idx = torch.randint(0, len(fonts), (n,), generator=generator).tolist()
    placements = random_placements(n, font_idx, generator, scale_range, max_rotation, fonts)
    bank = glyph_bank(fonts)
    images = torch.stack([place(bank[f][int(c)][p.weight], p, size)
                          for c, f, p in zip(labels.tolist(), font_idx, placements)])
    return GlyphBatch(images[:, None] * 2.0 - 1.0, labels, tuple(font_idx), tuple(placements))


def random_glyphs(n: int, generator: torch.Generator, size: int = DEFAULT_SIZE, **options) -> GlyphBatch:
    """``n`` glyphs of uniformly random classes, fonts and placements."""
    labels = torch.randint(0, len(CLASSES), (n,), generator=generator)
    return render_batch(labels, generator, size, **options)


def ink_fraction(images: torch.Tensor) -> torch.Tensor:
    """Images in ``[-1, 1]`` -> ink coverage in ``[0, 1]``."""
    return ((images + 1.0) / 2.0).clamp(0.0, 1.0)


__all__ = [
    "CLASSES", "CLASS_WORDS", "DEFAULT_SIZE", "DIGIT_WORDS", "FONTS", "Font", "GlyphBatch", "Master", "Placement",
    "STYLE_WORDS", "class_index", "glyph_bank", "ink_fraction", "place", "random_glyphs", "random_placements",
    "render_batch", "render_glyph",
]
