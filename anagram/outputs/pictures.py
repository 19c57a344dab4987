"""Pictures for people: conversions, crisp enlargement, text wrapping, and the strip of every view of
one anagram with its prompt underneath (the ``<stem>.views.png`` of every sample)."""

from __future__ import annotations

import textwrap
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

MIN_TILE = 256  # small models (the 32-pixel digits) are enlarged so that the strip is readable
NEAREST_FROM = 2.0  # enlargements by this factor or more use nearest-neighbour


class PictureError(ValueError):
    """Something that is not an image was given where one is needed."""


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


def to_tensor(image: Image.Image | torch.Tensor | np.ndarray) -> torch.Tensor:
    """A display image as a float ``(3, H, W)`` tensor in [0, 1] (PIL, HWC uint8 array or CHW tensor)."""
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        array = image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32)
        if array.ndim == 2:
            array = np.repeat(array[..., None], 3, axis=2)
        return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))
    if isinstance(image, torch.Tensor):
        tensor = image.detach().cpu().float()
        if tensor.dim() == 4:
            if tensor.shape[0] != 1:
                raise PictureError(f"animate one image at a time, got a batch of {tensor.shape[0]}")
            tensor = tensor[0]
        if tensor.dim() != 3:
            raise PictureError(f"expected an image (C, H, W), got shape {tuple(tensor.shape)}")
        return tensor
    raise PictureError(f"cannot animate {type(image).__name__}: give a PIL image, an array or a tensor")


def to_pil(tensor: torch.Tensor) -> Image.Image:
    """A ``(C, H, W)`` tensor in [0, 1] as an RGB PIL image (1-channel images become grey)."""
    array = (tensor.detach().cpu().float().clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    array = array.transpose(1, 2, 0)
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    return Image.fromarray(np.ascontiguousarray(array[..., :3]), "RGB")


def scale_image(image: Image.Image, box: tuple[int, int]) -> Image.Image:
    """``image`` resized to ``box``: nearest-neighbour when enlarged 2x or more, Lanczos otherwise."""
    if image.size == box:
        return image
    factor = min(box[0] / image.width, box[1] / image.height)
    return image.resize(box, Image.NEAREST if factor >= NEAREST_FROM else Image.LANCZOS)


def wrap_text(text: str, font, width: int) -> list[str]:
    """Greedy word wrap of ``text`` to ``width`` pixels in ``font`` (a too-long word gets its own line)."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for word in paragraph.split():
            candidate = f"{line} {word}" if line else word
            if line and font.getlength(candidate) > width:
                lines.append(line)
                line = word
            else:
                line = candidate
        lines.append(line)
    return lines
