"""Pictures for people: a strip of every view of one anagram with its prompt underneath."""

from __future__ import annotations

import textwrap
from typing import Sequence

from PIL import Image, ImageDraw, ImageFont

MIN_TILE = 256  # small models (the 32-pixel digits) are enlarged so that the strip is readable


def caption_font(size: int = 16, path: str | None = None) -> ImageFont.ImageFont:
    """A TrueType font at `size` if one is given or Pillow ships one, else Pillow's default."""
    if path:
        return ImageFont.truetype(path, size)
    return ImageFont.load_default(size=size)


def enlarge(image: Image.Image, min_size: int = MIN_TILE) -> Image.Image:
    """Scale up small images by an integer factor with nearest-neighbour, so pixels stay crisp."""
    factor = max(1, -(-min_size // max(image.size)))
    if factor == 1:
        return image
    return image.resize((image.width * factor, image.height * factor), Image.NEAREST)


def view_strip(images: Sequence[Image.Image], captions: Sequence[str], font_size: int = 16,
               font_path: str | None = None, min_tile: int = MIN_TILE, gap: int = 8) -> Image.Image:
    """Tiles side by side, each captioned below (wrapped to the tile width)."""
    tiles = [enlarge(image.convert("RGB"), min_tile) for image in images]
    font = caption_font(font_size, font_path)
    width_chars = max(8, int(tiles[0].width / (font_size * 0.55)))
    wrapped = [textwrap.fill(caption, width_chars) for caption in captions]
    line_height = int(font_size * 1.3)
    text_height = max(caption.count("\n") + 1 for caption in wrapped) * line_height + gap
    height = max(tile.height for tile in tiles) + text_height + 2 * gap
    width = sum(tile.width for tile in tiles) + gap * (len(tiles) + 1)
    strip = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(strip)
    x = gap
    for tile, caption in zip(tiles, wrapped):
        strip.paste(tile, (x, gap))
        draw.multiline_text((x, tile.height + 2 * gap), caption, fill="black", font=font, spacing=4)
        x += tile.width + gap
    return strip
