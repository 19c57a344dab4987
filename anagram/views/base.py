"""The `View` contract: an exact, batch-aware transformation of a sample and its inverse.

A view maps a batch `(B, C, H, W)` of samples (pixels or latents) to the batch the model sees,
and maps the model's output back to the canonical frame. Every other part of the toolkit
(the multi-view denoiser, anti-segregation, animations, metrics) talks to views only through
this class, so a third-party view that implements it works everywhere.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, ClassVar

import torch

PIXEL = "pixel"
LATENT = "latent"
SPACES = (PIXEL, LATENT)

# What animation frames show where no part of the image lands (pieces in transit, rotated corners).
FRAME_BACKGROUND = 1.0


class ViewError(ValueError):
    """A view cannot be used as asked (wrong size, wrong space, bad parameter)."""


class View:
    """Base class of every view.

    Subclasses set the class attributes below and implement `view` and `inverse`.

    Class attributes (declared properties):
        name: registry name (what users type: ``rotate_180``, ``jigsaw``...).
        orthogonal: the map is linear and orthogonal, so standard Gaussian noise stays standard
            Gaussian under it; only orthogonal views are statistically sound for anagrams.
        spaces: the sample spaces the view is meaningful in (``"pixel"``, ``"latent"``).
        square_only: the view needs ``height == width``.
        factorized: the view leaves the model input alone and instead extracts a component of the
            noise estimate (factorized diffusion); such views are combined with reduction "sum".
        invertible: ``inverse(view(x)) == x`` exactly.
    """

    name: ClassVar[str] = "view"
    orthogonal: ClassVar[bool] = True
    spaces: ClassVar[tuple[str, ...]] = SPACES
    square_only: ClassVar[bool] = False
    factorized: ClassVar[bool] = False
    invertible: ClassVar[bool] = True
    # The view changes pixel values, not only their places (negation); see `view_image`.
    changes_values: ClassVar[bool] = False
    # Constructor parameters that a string spec (``patch_permute:8``) fills in order; ``None``
    # means every constructor parameter, in declaration order.
    positional: ClassVar[tuple[str, ...] | None] = None

    # -- the maths ------------------------------------------------------------------------------

    def view(self, x: torch.Tensor) -> torch.Tensor:
        """Transform a batch ``(B, C, H, W)`` into the view's frame."""
        raise NotImplementedError

    def inverse(self, x: torch.Tensor, noise_channels: int | None = None) -> torch.Tensor:
        """Bring a batch ``(B, C', H, W)`` back from the view's frame.

        ``noise_channels`` is the number of leading channels that are a noise estimate, when the
        model predicts more channels than its input (DeepFloyd IF: 3 noise + 3 variance). Spatial
        moves apply to every channel; value changes (negation) only to the noise channels.
        ``None`` means every channel is noise-like.
        """
        raise NotImplementedError

    def inverse_map(self, maps: torch.Tensor) -> torch.Tensor:
        """Bring attention maps ``(B, K, h, w)`` back to the canonical frame.

        Maps live at a coarser resolution than the sample and are not signed values, so only the
        spatial part of the inverse applies (negation, for instance, leaves a map alone).
        """
        return self.inverse(maps, noise_channels=0)

    def render(self, image: torch.Tensor) -> torch.Tensor:
        """What a viewer sees under this view, on a batch ``(B, C, H, W)`` in the model's [-1, 1] range.

        For moves of pixels and for negation this is `view`; factorized views override it to show the
        component they keep (centred on mid-grey).
        """
        return self.view(image)

    # -- declared constraints --------------------------------------------------------------------

    def size_problem(self, height: int, width: int, multiple: int = 1) -> str | None:
        """Why the view cannot act on a ``height x width`` grid, or ``None`` if it can.

        ``multiple``: the model (or the command line) takes only sides that are multiples of it, so
        the sizes a message suggests are multiples of it too (see `divisibility_problem`)."""
        if height < 1 or width < 1:
            return "the grid is empty"
        if self.square_only and height != width:
            side = min(height, width)
            return f"it needs a square image (height == width), e.g. {side}x{side}"
        return None

    def check(self, height: int, width: int, space: str = PIXEL, multiple: int = 1) -> None:
        """Raise a `ViewError` naming the view, the size/space and what would work (sizes that are
        multiples of ``multiple`` as well, the sides the model takes)."""
        if space not in self.spaces:
            raise ViewError(
                f"view {self.label} is not valid in {space} space (it works in: "
                f"{', '.join(self.spaces)}); pick a view that supports {space} space, or a "
                f"{'/'.join(self.spaces)}-space model"
            )
        if "multiple" in inspect.signature(self.size_problem).parameters:
            problem = self.size_problem(height, width, multiple=multiple)
        else:  # a view written before `multiple` (a user's subclass): its own advice
            problem = self.size_problem(height, width)
        if problem is not None:
            raise ViewError(f"view {self.label} cannot act on a {height}x{width} grid: {problem}")

    # -- animation ---------------------------------------------------------------------------------

    def view_image(self, image: torch.Tensor) -> torch.Tensor:
        """The view as a viewer sees it, on a display image ``(C, H, W)``/``(B, C, H, W)`` in [0, 1].

        This is `render` taken on the model's [-1, 1] range (negation: ``1 - x``; factorized views: the
        component they keep), so that ``make_frame(image, 1)`` is always ``view_image(image)``.
        """
        if type(self).render is View.render and not self.changes_values:
            return _as_batch(image, self.view)  # pure moves of pixels commute with the range change: stay exact
        return _as_batch(image, lambda batch: (self.render(2 * batch - 1) + 1) / 2)

    def make_frame(self, image: torch.Tensor, s: float) -> torch.Tensor:
        """The transition from identity (``s=0``) to the view (``s=1``) for animations.

        ``image`` is ``(C, H, W)`` or ``(B, C, H, W)`` with values in [0, 1]. The ends are exact
        (``image`` and `view_image`); the default cross-fades in between, views with a natural
        motion (rotations, travelling pieces) override it.
        """
        if s <= 0:
            return image.clone()
        target = self.view_image(image)
        if s >= 1:
            return target
        return (1 - s) * image + s * target

    # -- serialisation -----------------------------------------------------------------------------

    def params(self) -> dict[str, Any]:
        """The constructor arguments that recreate this view (JSON-serialisable)."""
        return {}

    def config(self) -> dict[str, Any]:
        """``{"name": ..., **params}``; `anagram.views.from_config` turns it back into a view."""
        return {"name": self.name, **self.params()}

    @property
    def label(self) -> str:
        """The view as users write it: ``'rotate_180'``, ``'jigsaw(grid=4, seed=3)'``."""
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"'{self.name}({args})'" if args else f"'{self.name}'"

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, View) and self.config() == other.config()

    def __hash__(self) -> int:
        return hash(repr(self.config()))


def _as_batch(image: torch.Tensor, fn) -> torch.Tensor:
    """Apply a batch function to a single image ``(C, H, W)`` or a batch."""
    if image.dim() == 3:
        return fn(image[None])[0]
    return fn(image)


def apply_to_noise_channels(x: torch.Tensor, noise_channels: int | None, fn) -> torch.Tensor:
    """``fn`` on the leading ``noise_channels`` channels of ``x`` (dim -3), the rest untouched.

    This is the channel policy of value-changing views: a learned-variance block that follows the
    noise estimate (DeepFloyd IF) is not a noise sample and must not be negated or filtered.
    """
    channels = x.shape[-3]
    if noise_channels is None or noise_channels >= channels:
        return fn(x)
    if noise_channels <= 0:
        return x
    noise, rest = x[..., :noise_channels, :, :], x[..., noise_channels:, :, :]
    return torch.cat([fn(noise), rest], dim=-3)


def divisibility_problem(height: int, width: int, rows: int, cols: int, what: str, multiple: int = 1) -> str | None:
    """A message when ``height x width`` cannot be cut into a ``rows x cols`` grid of ``what``.

    The message says what would work (the nearest multiples), e.g. "64x64 is not divisible by the
    3x3 piece grid; use a size that is a multiple of 3, e.g. 63 or 66". ``multiple``: the model takes
    only sides that are multiples of it, so the sizes suggested are multiples of both (their least
    common multiple: 40 for a 5x5 grid on a model that needs multiples of 8, not 30 or 35).
    """
    if height % rows == 0 and width % cols == 0 and height >= rows and width >= cols:
        return None
    bad = [(axis, size, k) for axis, size, k in (("height", height, rows), ("width", width, cols))
           if size % k or size < k]
    if height == width and rows == cols:  # a square image on a square grid: one hint for both axes
        bad = [("size", height, rows)]
    hint = "; ".join(_multiple_hint(size, k, axis, multiple) for axis, size, k in bad)
    return f"{height}x{width} is not divisible by the {rows}x{cols} {what}; {hint}"


def _multiple_hint(size: int, k: int, axis: str, multiple: int = 1) -> str:
    """"use a height that is a multiple of 3, e.g. 63 or 66" (the nearest multiples of ``k``, and of
    the model's ``multiple``: "a multiple of 40 (5 for the view, 8 for the image size), e.g. 40 or 80")."""
    step = math.lcm(k, max(1, int(multiple)))
    below, above = (size // step) * step, (size // step + 1) * step
    examples = f"{below} or {above}" if below > 0 else f"{above} or {above + step}"
    why = f" ({k} for the view, {multiple} for the image size)" if step != k else ""
    return f"use a {axis} that is a multiple of {step}{why}, e.g. {examples}"
