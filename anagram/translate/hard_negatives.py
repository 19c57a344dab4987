"""Hard negatives for the ``digits-to-typeset`` realism network: images a person would not take for
typeset although they share a typeset digit's easy cues.

A domain classifier trained on handwritten vs typeset digits alone can key on sharpness: the
handwritten digits are blurry 8x8 scans upsampled, the renders are crisp. Then every translator
that draws sharp strokes is "taken for typeset" and its FID/KID in those features is about 0,
whatever its glyphs look like (the first version of the measure did exactly that). These
transforms take the shortcuts away, made only from *real* train-split images (never from a
translator's output):

* `sharpened_handwriting`: a handwritten digit binarised at a random level (thick to thin
  strokes), optionally eroded and lightly anti-aliased, and placed like a render (random scale
  and position), so it has a render's sharpness, stroke width and placement but a hand's shapes.
* `elastic_typeset`: a typeset render warped by a smooth random displacement field, so it has a
  render's sharpness and stroke weight but wobbly, hand-like shapes.

Every function is pure in its ``generator``; images are ``(N, 1, H, W)`` in [-1, 1] (background -1).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["binarise", "elastic_typeset", "place_like_renders", "sharpened_handwriting"]


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def binarise(images: torch.Tensor, level: torch.Tensor | float, steepness: float = 30.0) -> torch.Tensor:
    """A soft threshold at ``level`` (in [0, 1] of the ink range; per image or one value): ink above it goes
    to +1, the rest to -1, with an edge about one grey level wide (steep, not a hard step, so it stays
    differentiable and anti-aliased like a render)."""
    level = torch.as_tensor(level, dtype=images.dtype).reshape(-1, 1, 1, 1)
    return torch.sigmoid(((images + 1) / 2 - level) * steepness) * 2 - 1


def place_like_renders(images: torch.Tensor, generator: torch.Generator, scale: tuple[float, float] = (0.5, 1.0),
                       max_rotation_deg: float = 6.0) -> torch.Tensor:
    """Shrink each image by a random ``scale``, rotate it a little and move it anywhere it still fits,
    as the glyph renderer places its digits (scale 0.35-0.9 of the canvas, any position)."""
    n = images.shape[0]
    s = _uniform(n, *scale, generator)
    angle = _uniform(n, -1, 1, generator) * math.radians(max_rotation_deg)
    room = (1 - s).clamp_min(0)  # how far the shrunk digit can move and stay on the canvas
    tx, ty = _uniform(n, -1, 1, generator) * room, _uniform(n, -1, 1, generator) * room
    cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
    theta = torch.stack([torch.stack([cos, -sin, -(cos * tx - sin * ty)], 1),
                         torch.stack([sin, cos, -(sin * tx + cos * ty)], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images + 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1


def sharpened_handwriting(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Handwritten digits with typeset-like strokes: placed like renders, binarised at a random level
    (0.25-0.65: thick to thin), eroded by a 3x3 min-filter half of the time (thinner still), and
    anti-aliased by a 3x3 box blur half of the time."""
    n = images.shape[0]
    x = place_like_renders(images, generator)
    x = binarise(x, _uniform(n, 0.25, 0.65, generator), steepness=float(_uniform(1, 15, 40, generator)))
    erode = (torch.rand(n, 1, 1, 1, generator=generator) < 0.5).to(x.dtype)
    eroded = -F.max_pool2d(-x, 3, stride=1, padding=1)
    x = erode * eroded + (1 - erode) * x
    blur = (torch.rand(n, 1, 1, 1, generator=generator) < 0.5).to(x.dtype)
    blurred = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), value=-1.0), 3, stride=1)
    return (blur * blurred + (1 - blur) * x).clamp(-1, 1)


def elastic_typeset(images: torch.Tensor, generator: torch.Generator, amplitude: tuple[float, float] = (0.09, 0.22),
                    coarse: int = 4) -> torch.Tensor:
    """Typeset renders warped by a smooth random displacement field: random offsets on a
    ``coarse`` x ``coarse`` grid (``amplitude`` in half-canvas units: 0.09-0.22 is 1.4-3.5 px on 32 px; weaker
    warps still looked typeset, the strongest mangle a glyph while keeping a font's stroke),
    upsampled bicubically, so straight strokes wobble and curves change shape as a hand's would."""
    n, _, h, w = images.shape
    amp = _uniform(n, *amplitude, generator).reshape(n, 1, 1, 1)
    field = torch.randn(n, 2, coarse, coarse, generator=generator) * amp
    field = F.interpolate(field, size=(h, w), mode="bicubic", align_corners=True).permute(0, 2, 3, 1)
    identity = F.affine_grid(torch.eye(2, 3).expand(n, 2, 3), [n, 1, h, w], align_corners=False)
    warped = F.grid_sample(images + 1, identity + field, mode="bilinear", padding_mode="zeros", align_corners=False)
    return (warped - 1).clamp(-1, 1)
