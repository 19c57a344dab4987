"""The rigid views: identity, flips, rotations by multiples of 90 degrees, transpose, negation.

All are exact (``torch.flip`` / ``torch.rot90`` / a sign change, no interpolation), orthogonal and
their own closed-form inverses. Their animation frames are affine warps (`affine_frame`): a smooth
rotation by the intermediate angle, or a 3D-like flip that squashes the image along the flip axis
and shows the mirrored image after the half-way point. The ends of every animation are exact.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .base import FRAME_BACKGROUND, PIXEL, View, _as_batch, apply_to_noise_channels

HW = (-2, -1)  # the spatial dims of a (..., C, H, W) batch


def affine_frame(image: torch.Tensor, matrix, background: float = FRAME_BACKGROUND) -> torch.Tensor:
    """Warp ``image`` by a 2x2 linear map about its centre (bilinear), for animation frames.

    ``matrix`` maps *output* pixel offsets ``(x, y)`` (pixels, y pointing down, origin at the
    image centre) to the input offsets they show. Working in pixel units (not grid_sample's
    normalised units) keeps rotations rigid on non-square images.
    """
    batch = image if image.dim() == 4 else image[None]
    _, _, height, width = batch.shape
    (a, b), (c, d) = matrix
    # normalised x = x_pixels * 2 / W (align_corners=False), so rescale the off-diagonal terms.
    theta = torch.tensor([[a, b * height / width, 0.0], [c * width / height, d, 0.0]], dtype=torch.float32)
    work = batch if batch.dtype in (torch.float32, torch.float64) else batch.float()  # grid_sample's dtypes
    theta = theta.to(device=batch.device, dtype=work.dtype)[None].expand(batch.shape[0], 2, 3)
    grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
    # Sample a ones channel with the image to know how much of each output pixel is covered.
    ones = torch.ones_like(work[:, :1])
    sampled = F.grid_sample(torch.cat([work, ones], 1), grid, mode="bilinear", align_corners=False)
    colour, cover = sampled[:, :-1], sampled[:, -1:]
    frame = (colour + (1 - cover) * background).to(batch.dtype)
    return frame if image.dim() == 4 else frame[0]


def rotation_matrix(angle: float):
    """Output-to-input map of a clockwise (as seen on screen, y down) rotation by ``angle`` radians."""
    cos, sin = math.cos(angle), math.sin(angle)
    return ((cos, sin), (-sin, cos))


def fold_matrix(normal: tuple[float, float], s: float):
    """Output-to-input map of a reflection across the line orthogonal to ``normal``, a fraction ``s`` done.

    The image is squashed by ``cos(pi s)`` along ``normal`` (a page turning about the line), so it
    is edge-on at ``s = 1/2`` and mirrored from then on; ``None`` when edge-on (nothing visible).
    """
    squash = math.cos(math.pi * s)
    if abs(squash) < 1e-3:
        return None
    nx, ny = normal
    k = 1 - 1 / squash  # inverse of (I - (1 - squash) n n^T) is (I - (1 - 1/squash) n n^T)
    return ((1 - k * nx * nx, -k * nx * ny), (-k * ny * nx, 1 - k * ny * ny))


class IdentityView(View):
    """The image as it is (the first view of most anagrams)."""

    name = "identity"

    def view(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def inverse(self, x: torch.Tensor, noise_channels: int | None = None) -> torch.Tensor:
        return x

    def make_frame(self, image: torch.Tensor, s: float) -> torch.Tensor:
        return image.clone()


class _AffineView(View):
    """A rigid view whose animation is an affine motion: subclasses give `_motion(s)`."""

    def _motion(self, s: float):
        """Output-to-input 2x2 matrix of the frame at ``0 < s < 1`` (``None``: nothing visible)."""
        raise NotImplementedError

    def make_frame(self, image: torch.Tensor, s: float) -> torch.Tensor:
        if s <= 0:
            return image.clone()
        if s >= 1:
            return self.view_image(image)
        matrix = self._motion(s)
        if matrix is None:
            return torch.full_like(image, FRAME_BACKGROUND)
        return affine_frame(image, matrix)


class _FlipLikeView(_AffineView):
    """A reflection (its own inverse); the animation folds the image over the mirror line."""

    normal: tuple[float, float] = (0.0, 1.0)

    def inverse(self, x: torch.Tensor, noise_channels: int | None = None) -> torch.Tensor:
        return self.view(x)

    def _motion(self, s: float):
        return fold_matrix(self.normal, s)


class FlipView(_FlipLikeView):
    """Upside-down: a vertical flip (top row becomes bottom row)."""

    name = "flip"
    normal = (0.0, 1.0)

    def view(self, x: torch.Tensor) -> torch.Tensor:
        return x.flip(-2)


class HFlipView(_FlipLikeView):
    """Mirror image: a horizontal flip (left column becomes right column)."""

    name = "hflip"
    normal = (1.0, 0.0)

    def view(self, x: torch.Tensor) -> torch.Tensor:
        return x.flip(-1)


class TransposeView(_FlipLikeView):
    """Reflection across the main diagonal (top-left to bottom-right); square images only."""

    name = "transpose"
    square_only = True
    normal = (math.sqrt(0.5), -math.sqrt(0.5))

    def view(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(-2, -1).contiguous()


class _RotateView(_AffineView):
    """A rotation by ``quarter_turns`` x 90 degrees clockwise, exact with `torch.rot90`."""

    quarter_turns: int = 1

    def view(self, x: torch.Tensor) -> torch.Tensor:
        # rot90's k=1 turns the (H, W) plane counter-clockwise on screen, hence the minus sign.
        # (contiguous: rot90 returns a strided view, and callers may `.view()` the result.)
        return torch.rot90(x, -self.quarter_turns, HW).contiguous()

    def inverse(self, x: torch.Tensor, noise_channels: int | None = None) -> torch.Tensor:
        return torch.rot90(x, self.quarter_turns, HW).contiguous()

    def _motion(self, s: float):
        return rotation_matrix(s * self.quarter_turns * math.pi / 2)


class RotateCWView(_RotateView):
    """Rotation by 90 degrees clockwise; square images only."""

    name = "rotate_cw"
    square_only = True
    quarter_turns = 1


class RotateCCWView(_RotateView):
    """Rotation by 90 degrees counter-clockwise; square images only."""

    name = "rotate_ccw"
    square_only = True
    quarter_turns = -1


class Rotate180View(_RotateView):
    """Rotation by 180 degrees (upside-down and mirrored); any size."""

    name = "rotate_180"
    quarter_turns = 2


class NegateView(View):
    """Colour inversion: ``-x`` on [-1, 1] pixels; pixel models only.

    The inverse negates only the noise channels: a learned variance is not a signed sample.
    Attention maps are not negated either (`inverse_map` is the identity).
    """

    name = "negate"
    spaces = (PIXEL,)
    changes_values = True  # on a [0, 1] display image it is 1 - x (see `View.view_image`)

    def view(self, x: torch.Tensor) -> torch.Tensor:
        return -x

    def inverse(self, x: torch.Tensor, noise_channels: int | None = None) -> torch.Tensor:
        return apply_to_noise_channels(x, noise_channels, torch.neg)

    def inverse_map(self, maps: torch.Tensor) -> torch.Tensor:
        return maps

