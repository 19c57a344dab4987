"""Thumbnails for the view picker: each view applied to one sample picture, so a person sees what it does.

The sample picture is drawn, not shipped: a sky over ground, a sun in the upper left, an "F" (no
symmetry at all, so every flip and turn shows) and a colour wheel of quadrants, at any size. A view
is applied through `View.view_image`, the rendering every other part of the toolkit shows, at the
first size in `SIZES` it accepts (a jigsaw needs a multiple of its grid, ``pixel_permute`` one of
its size), and the result is scaled to `THUMBNAIL` pixels.
"""

from __future__ import annotations

from functools import lru_cache

from PIL import Image, ImageDraw

from ..outputs.pictures import scale_image, to_pil, to_tensor
from ..views import PIXEL, View, ViewError, describe, parse_view

SIZES = (96, 128, 64, 192, 256, 120, 144)
THUMBNAIL = 112


def sample_picture(size: int) -> Image.Image:
    """The picture every thumbnail transforms (``size x size``, RGB)."""
    image = Image.new("RGB", (size, size))
    draw = ImageDraw.Draw(image)
    horizon = int(size * 0.62)
    for y in range(horizon):  # sky: light at the horizon, deep at the top
        t = y / max(1, horizon - 1)
        draw.line([(0, y), (size, y)], fill=(int(40 + 120 * t), int(90 + 110 * t), int(200 + 40 * t)))
    draw.rectangle([0, horizon, size, size], fill=(70, 140, 60))
    s = size / 96
    draw.ellipse([8 * s, 8 * s, 28 * s, 28 * s], fill=(255, 210, 40))
    # The letter F: a stem and two bars of different length.
    draw.rectangle([40 * s, 24 * s, 50 * s, 80 * s], fill=(200, 30, 40))
    draw.rectangle([40 * s, 24 * s, 76 * s, 33 * s], fill=(200, 30, 40))
    draw.rectangle([40 * s, 46 * s, 66 * s, 54 * s], fill=(200, 30, 40))
    for k, colour in enumerate(((255, 255, 255), (20, 20, 20), (250, 140, 0), (130, 40, 180))):
        x, y = (72 + 10 * (k % 2)) * s, (70 + 10 * (k // 2)) * s
        draw.rectangle([x, y, x + 10 * s - 1, y + 10 * s - 1], fill=colour)
    return image


def picture_size(view: View) -> int | None:
    """The first of `SIZES` the view can act on in pixel space, or None."""
    for size in SIZES:
        try:
            view.check(size, size, PIXEL)
            return size
        except ViewError:
            continue
    return None


@lru_cache(maxsize=256)
def thumbnail(spec: str) -> Image.Image:
    """The thumbnail of a view spec (``"rotate_180"``, ``"jigsaw:3"``); ViewError for a bad spec."""
    view = parse_view(spec)
    size = picture_size(view)
    if size is None:
        raise ViewError(f"view {view.label} has no picture size among {SIZES} it accepts")
    shown = to_pil(view.view_image(to_tensor(sample_picture(size))))
    return scale_image(shown, (THUMBNAIL, THUMBNAIL))


def catalogue() -> list[tuple[Image.Image, str]]:
    """Every registered view's thumbnail (its defaults) with ``"name: what it does"``, for a gallery."""
    items = []
    for row in describe():
        try:
            items.append((thumbnail(row["name"]), f"{row['name']}: {row['description']}"))
        except (ViewError, TypeError):  # a view that needs parameters (`permutation`) has no default picture
            continue
    return items


__all__ = ["SIZES", "THUMBNAIL", "catalogue", "picture_size", "sample_picture", "thumbnail"]
