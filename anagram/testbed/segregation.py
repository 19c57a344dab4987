"""Concept segregation on the glyph testbed: each prompt drawn as its own glyph in its own region.

A multi-view sample is meant to be *one* shape that reads as prompt ``k`` under view ``k``. It is
**segregated** when instead the prompts are drawn side by side: separate pieces of ink, each of
which is one prompt's glyph. Precisely, for a sample image ``x`` (``(C, H, W)`` in ``[0, 1]``, the
stored image, i.e. the identity frame), its views and prompts:

1. **Ink**: the pixels whose grey level (channel mean) is above :data:`INK_THRESHOLD` (0.5,
   midway between background 0 and ink 1), with hysteresis: pixels above :data:`LINK_THRESHOLD`
   (0.2) count as ink where they connect to such pixels (a thin antialiased hairline of a serif
   face stays one stroke).
2. **Components**: the 8-connected components of the ink (``scipy.ndimage.label``). Glyphs that
   touch or overlap are one component.
3. **Regions**: components are grouped; a component joins a larger one when it is a *fragment*
   of it: it holds at most :data:`FRAGMENT_SHARE` (half) of the larger one's ink and some pixel
   of it lies within ``max(FRAGMENT_GAP, GAP_SHARE x the larger one's height)`` (3 px at 32x32,
   scaled with the image; 30%) of the larger one's ink, or within ``STACK_GAP_SHARE`` (half) of
   its height when it sits straight above or below it (their columns overlap): the dot of an
   ``i`` or ``j``, a broken-off serif or stroke end. Grouping is transitive (union-find, smallest first). So a much
   smaller glyph drawn close to a larger one counts as a fragment of it (a missed segregation,
   never a false one).
4. **Specks**: a region whose ink is below ``max(MIN_AREA px, SPECK_SHARE x the largest region's
   ink)`` (6 px at 32x32, scaled with the image area; 8%) is a stray speck and is ignored.
5. **Reading a region**: the image with only that region's ink kept (every other pixel set to
   background) is seen in a frame, its ink box is cropped, recentred and rescaled (height 60% of
   the canvas, width at most 80%: the judge's training range), and the glyph judge
   (:mod:`anagram.testbed.glyph_judge`) reads it. Region ``r`` *shows prompt k* when the judge's
   top class in the identity frame or in view ``k``'s frame is prompt ``k``'s glyph with probability
   at least :data:`READ_PROBABILITY` (0.5).
6. **Segregated** when at least two regions remain and two *different* regions show prompts of two
   *different* glyphs: ``r1 != r2`` showing prompts ``k1``, ``k2`` with ``glyph(k1) != glyph(k2)``.

So one glyph read two ways (one region) is never segregated, overlapping glyphs (one component)
are not either, nor is a glyph with a stray speck (the speck is dropped). Two separate glyphs of
the two prompts are. Two separate pieces that are *not* each a prompt's glyph (a shape built of
two strokes) are not segregated: the judge must read the pieces as the prompts.

The judge that reads the regions is the testbed's judge, never a balancing scorer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .glyph_judge import glyph_of_prompt, glyph_probabilities
from .glyphs import CLASSES

INK_THRESHOLD = 0.5
LINK_THRESHOLD = 0.2
FRAGMENT_SHARE = 0.5
FRAGMENT_GAP = 3.0  # pixels at 32x32
GAP_SHARE = 0.3
STACK_GAP_SHARE = 0.5
MIN_AREA = 6.0  # pixels at 32x32
SPECK_SHARE = 0.08
READ_PROBABILITY = 0.5
CROP_HEIGHT = 0.6
CROP_MAX_WIDTH = 0.8
REFERENCE_SIZE = 32


@dataclass
class Reading:
    """The judge on one region in one frame (``frame`` -1: identity, else the view's index)."""

    region: int
    frame: int
    glyph: str
    probability: float


@dataclass
class Segregation:
    """The verdict on one sample: ``segregated``, the number of ink components and of regions
    (specks dropped), a label map ``(H, W)`` (0 background or speck, ``r + 1`` region ``r``), and
    which prompts each region shows (``shows[r]``: prompt indices)."""

    segregated: bool
    components: int
    regions: int
    labels: np.ndarray
    shows: list[list[int]] = field(default_factory=list)
    readings: list[Reading] = field(default_factory=list)


def ink_mask(image: torch.Tensor) -> np.ndarray:
    """Boolean ink ``(H, W)`` of an image ``(C, H, W)`` in [0, 1] (step 1: hysteresis thresholds)."""
    from scipy import ndimage

    gray = image.float().mean(0).cpu().numpy()
    weak, n = ndimage.label(gray > LINK_THRESHOLD, structure=np.ones((3, 3), dtype=int))
    strong = np.unique(weak[gray > INK_THRESHOLD])
    return np.isin(weak, strong[strong > 0])


def ink_regions(image: torch.Tensor) -> tuple[int, np.ndarray]:
    """Steps 1-4: ``(number of components, region label map)`` of an image ``(C, H, W)`` in [0, 1]."""
    from scipy import ndimage

    mask = ink_mask(image)
    h, w = mask.shape
    factor = min(h, w) / REFERENCE_SIZE
    comp, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=int))
    if n == 0:
        return 0, comp
    areas = ndimage.sum_labels(mask, comp, index=np.arange(1, n + 1)).astype(float)
    boxes = ndimage.find_objects(comp)
    heights = [float(box[0].stop - box[0].start) for box in boxes]
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    # distance of every pixel to each component's ink
    dist = [ndimage.distance_transform_edt(comp != i + 1) for i in range(n)]
    for i in sorted(range(n), key=lambda k: areas[k]):  # smallest first: fragments join what they break from
        best, best_d = None, None
        for j in range(n):
            if j == i or areas[i] > FRAGMENT_SHARE * areas[j]:
                continue
            d = float(dist[j][comp == i + 1].min())
            stacked = boxes[i][1].start < boxes[j][1].stop and boxes[j][1].start < boxes[i][1].stop
            reach = max(FRAGMENT_GAP * factor, (STACK_GAP_SHARE if stacked else GAP_SHARE) * heights[j])
            if d <= reach and (best_d is None or d < best_d):
                best, best_d = j, d
        if best is not None:
            parent[root(i)] = root(best)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(root(i), []).append(i)
    ink = {g: sum(areas[i] for i in members) for g, members in groups.items()}
    floor = max(MIN_AREA * factor * factor, SPECK_SHARE * max(ink.values()))
    kept = sorted((g for g in groups if ink[g] >= floor), key=lambda g: -ink[g])
    labels = np.zeros_like(comp)
    for r, g in enumerate(kept):
        for i in groups[g]:
            labels[comp == i + 1] = r + 1
    return n, labels


def normalise_glyph(image: torch.Tensor) -> torch.Tensor:
    """Crop ``(C, H, W)`` in [0, 1] to its ink box and recentre it, rescaled to 60% of the height
    (width at most 80%); an image without ink is returned as it is."""
    gray = image.float().mean(0, keepdim=True)
    ys, xs = torch.nonzero(gray[0] > INK_THRESHOLD / 2, as_tuple=True)
    if len(ys) == 0:
        return gray
    h, w = gray.shape[-2:]
    crop = gray[:, int(ys.min()): int(ys.max()) + 1, int(xs.min()): int(xs.max()) + 1]
    ch, cw = crop.shape[-2:]
    k = min(CROP_HEIGHT * h / ch, CROP_MAX_WIDTH * w / cw)
    th, tw = max(1, round(ch * k)), max(1, round(cw * k))
    scaled = F.interpolate(crop[None], size=(th, tw), mode="bilinear", align_corners=False,
                           antialias=k < 1)[0].clamp(0, 1)
    out = torch.zeros_like(gray)
    top, left = (h - th) // 2, (w - tw) // 2
    out[:, top: top + th, left: left + tw] = scaled
    return out


def _only(image: torch.Tensor, labels: np.ndarray, region: int) -> torch.Tensor:
    """The image with the ink of one region (and its antialiased rim, 1 px) kept, the rest background."""
    from scipy import ndimage

    keep = ndimage.binary_dilation(labels == region + 1, structure=np.ones((3, 3), dtype=bool))
    keep = torch.from_numpy(keep & ~((labels > 0) & (labels != region + 1)))
    return image * keep.to(image.dtype)


def segregation(image: torch.Tensor, views: Sequence, prompts: Sequence[str], judge=None) -> Segregation:
    """The verdict of the definition above on one sample.

    ``image``: ``(C, H, W)`` in [0, 1] (identity frame); ``views``: the sample's view objects
    (:class:`anagram.views.View`, with ``view_image``); ``prompts``: one per view, each naming a glyph
    (else ``ValueError``); ``judge``: a glyph judge network (default: the shipped one)."""
    if len(views) != len(prompts):
        raise ValueError(f"{len(views)} views but {len(prompts)} prompts")
    targets = [glyph_of_prompt(p) for p in prompts]
    components, labels = ink_regions(image)
    n_regions = int(labels.max())
    if n_regions < 2:
        return Segregation(False, components, n_regions, labels, [[] for _ in range(n_regions)])
    crops, keys = [], []
    for r in range(n_regions):
        alone = _only(image, labels, r)
        crops.append(normalise_glyph(alone))
        keys.append((r, -1))
        for k, view in enumerate(views):
            crops.append(normalise_glyph(view.view_image(alone)))
            keys.append((r, k))
    probs = glyph_probabilities(torch.stack(crops), value_range=(0.0, 1.0), judge=judge)
    top_p, top_c = probs.max(-1)
    readings = [Reading(r, f, CLASSES[int(c)], float(p)) for (r, f), p, c in zip(keys, top_p, top_c)]
    read = {(x.region, x.frame): (CLASSES.index(x.glyph), x.probability) for x in readings}

    def shows(r: int, k: int) -> bool:
        return any(read[(r, f)][0] == targets[k] and read[(r, f)][1] >= READ_PROBABILITY for f in (-1, k))

    shown = [[k for k in range(len(prompts)) if shows(r, k)] for r in range(n_regions)]
    segregated = any(targets[k1] != targets[k2]
                     for r1 in range(n_regions) for r2 in range(n_regions) if r1 != r2
                     for k1 in shown[r1] for k2 in shown[r2])
    return Segregation(segregated, components, n_regions, labels, shown, readings)


__all__ = ["FRAGMENT_GAP", "FRAGMENT_SHARE", "GAP_SHARE", "INK_THRESHOLD", "STACK_GAP_SHARE", "LINK_THRESHOLD", "MIN_AREA", "READ_PROBABILITY", "Reading",
           "SPECK_SHARE", "Segregation", "ink_mask", "ink_regions", "normalise_glyph", "segregation"]
