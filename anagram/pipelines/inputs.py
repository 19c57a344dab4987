"""Input resolution shared by the pipelines: views, prompts, negative prompts, reduction.

Everything here fails early with a message that says what to do, before any model runs.
"""

from __future__ import annotations

from typing import Sequence

from ..views import parse_view
from ..views.base import View, ViewError

DEFAULT_VIEWS = {1: ("identity",), 2: ("identity", "rotate_180")}


def parse_views(views, num_prompts: int) -> list[View]:
    """View objects from names, specs, configs or View instances (default: one view per prompt)."""
    if views is None:
        if num_prompts not in DEFAULT_VIEWS:
            raise ValueError(f"{num_prompts} prompts need {num_prompts} views, one per prompt in the same order "
                             "(--views identity,rotate_cw,flip on the command line, views=[...] in Python); only "
                             "2 prompts have a default (identity,rotate_180)")
        views = DEFAULT_VIEWS[num_prompts]
    if isinstance(views, (str, View, dict)):
        views = [views]
    resolved = [parse_view(v) for v in views]
    if not resolved:
        raise ValueError("at least one view is needed (use 'identity' for a plain image)")
    return resolved


def resolve_views(views, num_prompts: int, height: int, width: int, space: str, scale: int = 1,
                  multiple: int = 1) -> list[View]:
    """The views of a call, parsed (`parse_views`) and checked for the sample's size and space.

    ``height x width`` is the grid the views act on: the image's for a pixel model, the latent's for
    a latent one (``scale``: the VAE's factor), where a view's size advice is given in latent pixels
    and is translated here into image sizes. ``multiple``: the grid sides the model takes are its
    multiples, so the sizes a view suggests are too (not 30 or 35 for a 5x5 jigsaw on a model of
    multiples of 8, but 40)."""
    resolved = parse_views(views, num_prompts)
    for view in resolved:
        try:
            view.check(height, width, space, multiple)
        except ViewError as error:
            if scale == 1:
                raise
            raise ViewError(f"{error} (on this latent model the views act on the {height}x{width} latent of the "
                            f"{height * scale}x{width * scale} image: multiply those sizes by {scale} for the "
                            "image size)") from None
    return resolved


def resolve_prompts(prompt, views: Sequence[View], style: str | None = None) -> list[str]:
    """One prompt per view, each prefixed by `style` (e.g. "an oil painting of")."""
    prompts = [prompt] if isinstance(prompt, str) else list(prompt or [])
    if len(prompts) != len(views):
        names = ", ".join(v.name for v in views)
        raise ValueError(
            f"got {len(prompts)} prompt(s) for {len(views)} view(s) ({names}): give exactly one prompt per view, "
            "in the same order"
        )
    if any(not isinstance(p, str) for p in prompts):
        raise TypeError("every prompt must be a string")
    if style:
        prompts = [f"{style.strip()} {p.strip()}" for p in prompts]
    return prompts


def resolve_negative(negative_prompt, num_views: int) -> list[str] | None:
    """The negative prompt of each view's unconditional branch (None: the empty prompt)."""
    if negative_prompt is None:
        return None
    if isinstance(negative_prompt, str):
        return [negative_prompt] * num_views
    negative = list(negative_prompt)
    if len(negative) != num_views:
        raise ValueError(f"got {len(negative)} negative prompts for {num_views} views: give one, or one per view")
    return negative


def resolve_reduction(views: Sequence[View], reduction: str | None) -> str:
    """"sum" for factorized views (their components add up to the estimate), "mean" otherwise."""
    factorized = [v.factorized for v in views]
    if any(factorized) and not all(factorized):
        raise ValueError(
            "factorized views (low_pass, high_pass, grayscale, ...) cannot be mixed with spatial views: they split "
            "the noise estimate into components that must add up; use only factorized views together"
        )
    default = "sum" if all(factorized) else "mean"
    return reduction or default
