"""Whether a request's views can act on the model's images, said before any weights load.

A view cuts the image into a grid (``jigsaw:5`` into 5x5 pieces), so the image side must be a
multiple of the grid; the command line and job files take only sides that are multiples of 8
(`anagram.runs.request.SIZE_MULTIPLE`), and a latent model's views act on its latent. The pipeline
checks this too, but only once the weights are in memory; for a model folder (the built-in ones, a
``save_pretrained`` folder) the side and the sample space are in its configs, so `check_view_sizes`
says it first, suggesting sizes the command line takes (40 for ``jigsaw:5`` on the 32 px ``digits``
model: a multiple of 5 and of 8, not 30 or 35).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from ..pipelines.inputs import resolve_views
from ..pipelines.loading import IF_CLASSES, builtin_models
from ..views import LATENT, PIXEL
from .request import SIZE_MULTIPLE, Request


@dataclass(frozen=True)
class ModelGrid:
    """What a model folder's configs say about its samples."""

    side: int  # the image side it makes by default, in pixels
    space: str  # PIXEL or LATENT: where the views act
    scale: int  # image pixels per sample pixel (the VAE's factor; 1 in pixel space)
    multiple: int  # the image sides the pipeline takes are multiples of this
    cascaded: bool = False  # DeepFloyd IF: a stage II upscales, and the views act at stage I's own side


def _read(path: Path) -> dict:
    return json.loads(path.read_text())


def folder_grid(model: str) -> ModelGrid | None:
    """The `ModelGrid` of a built-in name or a model folder, from its JSON configs (no weights);
    None for a hub id or a folder whose configs do not say."""
    folder = builtin_models().get(model, Path(model).expanduser())
    try:
        index = _read(folder / "model_index.json")
        unet = _read(folder / "unet" / "config.json")
        size = unet["sample_size"]
        size = int(size if isinstance(size, int) else min(size))
        levels = 2 ** (len(unet["block_out_channels"]) - 1)
        if index.get("_class_name") in IF_CLASSES:  # DeepFloyd IF stage I: pixels, one halving per level
            return ModelGrid(size, PIXEL, 1, levels, cascaded=True)
        vae = index.get("vae") or [None, None]
        if vae[0] is None:  # a pixel-space AnagramPipeline (the testbed models): any side
            return ModelGrid(size, PIXEL, 1, 1)
        scale = 2 ** (len(_read(folder / "vae" / "config.json")["block_out_channels"]) - 1)
        return ModelGrid(size * scale, LATENT, scale, scale)
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None


def check_view_sizes(request: Request, grid: ModelGrid | None) -> None:
    """`ViewError` (a ValueError) when a view of ``request`` cannot act on the images ``grid``'s model
    makes at the request's size (its own by default), with sizes to use that the command line takes."""
    if grid is None:
        return
    upscaled = grid.cascaded and (request.upscaler or "") != "none"  # --size is not used then
    side = grid.side if upscaled else request.size or grid.side
    multiple = math.lcm(SIZE_MULTIPLE, grid.multiple)  # in image pixels; the views see side // scale
    resolve_views(list(request.views), len(request.prompts), side // grid.scale, side // grid.scale, grid.space,
                  scale=grid.scale, multiple=max(1, multiple // grid.scale))


__all__ = ["ModelGrid", "check_view_sizes", "folder_grid"]
