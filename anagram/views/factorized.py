"""Factorized-diffusion views: leave the model input alone and keep one component of the noise.

A factorized view's ``view(x)`` is ``x``; its ``inverse`` extracts a component of the noise
estimate (a frequency band, the grey level, a motion-blurred part, a coarse-scale part). Views of
one family add up to the identity (``low + high == x``, ``band_low + band_mid + band_high == x``,
``grayscale + color == x``, ``motion + motion_residual == x``, ``scale + scale_residual == x``), so
the sampler combines them with reduction "sum" and each prompt controls its own component.

They are linear but not orthogonal (``orthogonal = False``), not invertible, apply to the noise
channels only (a learned variance passes through), and leave attention maps alone.

Sizes: blur widths are given in pixels of a 64-pixel image and scale with ``min(H, W) / 64``, so
a view means the same at 64 (DeepFloyd stage 1, SD latents) and 256 pixels. Blurs mirror the
image at its borders. The Gaussian blur is the separable reflect-padded convolution written as a
banded matrix product per axis (GEMMs on the non-zero blocks); the motion blur is a sparse
convolution (one shifted add per tap of its line). Every view takes well under a millisecond per
image on a (8, 4, 128, 128) batch on one CPU core: ``python benchmarks/views_speed.py``.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F

from .base import PIXEL, View, ViewError, _as_batch, apply_to_noise_channels, divisibility_problem

REFERENCE_SIZE = 64  # blur widths are given in pixels of an image of this side


def _size_scale(height: int, width: int) -> float:
    return min(height, width) / REFERENCE_SIZE


def mirror_index(index: torch.Tensor, n: int) -> torch.Tensor:
    """Fold indices into ``0..n-1`` by mirroring at the borders without repeating the edge pixel
    (``torch.nn.functional.pad``'s "reflect"), for any overhang."""
    if n == 1:
        return torch.zeros_like(index)
    period = 2 * (n - 1)
    folded = torch.remainder(index, period)
    return torch.where(folded >= n, period - folded, folded)


@lru_cache(maxsize=64)
def blur_matrix(n: int, sigma: float) -> torch.Tensor:
    """``(n, n)`` float64 matrix of a 1D Gaussian blur with mirrored borders (rows sum to 1)."""
    if sigma <= 1e-6:
        return torch.eye(n, dtype=torch.float64)
    radius = max(1, math.ceil(4 * sigma))
    taps = torch.arange(-radius, radius + 1)
    weights = torch.exp(-(taps.double() ** 2) / (2 * sigma * sigma))
    weights = weights / weights.sum()
    rows = torch.arange(n)[:, None].expand(n, taps.numel())
    cols = mirror_index(rows + taps[None, :], n)
    matrix = torch.zeros(n, n, dtype=torch.float64)
    matrix.index_put_((rows.flatten(), cols.flatten()), weights.repeat(n), accumulate=True)
    return matrix


def _work_dtype(x: torch.Tensor) -> torch.dtype:
    """float32/float64 as given; half precisions and integers are computed in float32."""
    return x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32


BLOCK_ROWS = 32  # rows per block of a banded operator (16-64 measured alike on CPU; fewer calls)


class BandedOperator:
    """A square matrix kept as blocks of rows, each with the span of columns it touches.

    A blur matrix is zero away from its diagonal (plus the folded-back mirror at the borders), so
    multiplying block by block skips the zeros: about half the work of a dense product at the
    default widths, with exactly the dense product's terms. Nearly dense matrices stay one block.
    """

    def __init__(self, matrix: torch.Tensor, block_rows: int = BLOCK_ROWS):
        n = matrix.shape[0]
        self.matrix = matrix
        nonzero_cols = matrix.ne(0)
        spans = []
        for row0 in range(0, n, block_rows):
            row1 = min(n, row0 + block_rows)
            used = nonzero_cols[row0:row1].any(0).nonzero().flatten()
            col0, col1 = (int(used.min()), int(used.max()) + 1) if used.numel() else (0, 1)
            spans.append((row0, row1, col0, col1))
        if sum((r1 - r0) * (c1 - c0) for r0, r1, c0, c1 in spans) > 0.75 * n * n:
            spans = [(0, n, 0, n)]  # too dense for blocks to pay off
        self.spans = tuple(spans)
        self._blocks: dict[tuple, list[torch.Tensor]] = {}

    def blocks(self, device: torch.device, dtype: torch.dtype) -> list[torch.Tensor]:
        key = (str(device), dtype)
        if key not in self._blocks:  # one cast per device and dtype, kept
            cast = self.matrix.to(device=device, dtype=dtype)
            self._blocks[key] = [cast[r0:r1, c0:c1].contiguous() for r0, r1, c0, c1 in self.spans]
        return self._blocks[key]

    def times_rows(self, x: torch.Tensor) -> torch.Tensor:
        """``matrix @ x`` over the second-to-last dim."""
        parts = [block @ x[..., c0:c1, :]
                 for block, (_, _, c0, c1) in zip(self.blocks(x.device, x.dtype), self.spans)]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-2)

    def times_cols(self, x: torch.Tensor) -> torch.Tensor:
        """``x @ matrix.T`` over the last dim."""
        parts = [x[..., c0:c1] @ block.T
                 for block, (_, _, c0, c1) in zip(self.blocks(x.device, x.dtype), self.spans)]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)


@lru_cache(maxsize=64)
def blur_operator(n: int, sigmas: tuple[float, ...]) -> BandedOperator:
    """The Gaussian blurs at ``sigmas`` (applied in order) along an axis of ``n`` pixels, as one
    banded operator (the product of the blur matrices)."""
    matrix = torch.eye(n, dtype=torch.float64)
    for sigma in sigmas:
        matrix = blur_matrix(n, sigma) @ matrix
    return BandedOperator(matrix)


def separable_blur(x: torch.Tensor, *sigmas: float) -> torch.Tensor:
    """Blur the last two dims with Gaussians of ``sigmas`` pixels in turn (mirrored borders)."""
    height, width = x.shape[-2:]
    sigmas = tuple(float(sigma) for sigma in sigmas)
    work = x.to(_work_dtype(x))
    out = blur_operator(width, sigmas).times_cols(blur_operator(height, sigmas).times_rows(work))
    return out.to(x.dtype)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur the last two dims with a Gaussian of ``sigma`` pixels (mirrored borders)."""
    return separable_blur(x, sigma)


@lru_cache(maxsize=32)
def motion_kernel(length: float, angle: float) -> torch.Tensor:
    """``(K, K)`` float64 kernel of a straight motion blur: a line of ``length`` pixels through the
    centre at ``angle`` degrees (counter-clockwise from horizontal on screen), summing to 1."""
    radius = math.ceil(length / 2) + 1
    size = 2 * radius + 1
    kernel = torch.zeros(size, size, dtype=torch.float64)
    t = torch.linspace(-length / 2, length / 2, max(2, 4 * math.ceil(length) + 1), dtype=torch.float64)
    # Rounded so that 0/90/180 degrees give exactly axis-aligned lines (cos 90 is not 0 in floats).
    cos, sin = round(math.cos(math.radians(angle)), 12), round(math.sin(math.radians(angle)), 12)
    x = radius + t * cos
    y = radius - t * sin  # y points down
    y0, x0 = y.floor(), x.floor()
    for dy in (0, 1):  # bilinear splat of the samples (4 neighbours, not a per-pixel loop)
        for dx in (0, 1):
            weight = (1 - (y - y0 - dy).abs()) * (1 - (x - x0 - dx).abs())
            kernel.index_put_(((y0 + dy).long(), (x0 + dx).long()), weight, accumulate=True)
    # Trim all-zero borders (symmetrically: the kernel stays centred) to keep the padding small.
    used = kernel.abs().sum(0).gt(0) | kernel.abs().sum(1).gt(0)
    extent = int((torch.arange(size) - radius)[used].abs().max())
    kernel = kernel[radius - extent:radius + extent + 1, radius - extent:radius + extent + 1]
    return kernel / kernel.sum()


def mirror_pad(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Pad the last two dims by ``radius`` on every side, mirrored without repeating the edge."""
    height, width = x.shape[-2:]
    if radius < height and radius < width:
        flat = F.pad(x.reshape(-1, 1, height, width), (radius,) * 4, mode="reflect")
        return flat.view(*x.shape[:-2], height + 2 * radius, width + 2 * radius)
    # Tiny grids: mirror any overhang with explicit indices.
    rows = mirror_index(torch.arange(-radius, height + radius), height).to(x.device)
    cols = mirror_index(torch.arange(-radius, width + radius), width).to(x.device)
    return x[..., rows[:, None], cols[None, :]]


def sparse_convolve(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Convolve the last two dims with a small odd-sized ``kernel`` (mirrored borders), one
    shifted add per non-zero tap: a motion-blur line has a few dozen taps in a square of
    hundreds, so this beats dense and FFT convolutions (measured in benchmarks/views_speed.py)."""
    height, width = x.shape[-2:]
    dtype = _work_dtype(x)
    padded = mirror_pad(x.to(dtype), kernel.shape[-1] // 2)
    flipped = kernel.flip(-2, -1).cpu()  # convolution = correlation with the flipped kernel
    out = torch.zeros(x.shape, dtype=dtype, device=x.device)
    for i, j in flipped.nonzero().tolist():
        out.add_(padded[..., i:i + height, j:j + width], alpha=float(flipped[i, j]))
    return out.to(x.dtype)


# -- the base class ----------------------------------------------------------------------------------------


class FactorizedView(View):
    """Base of factorized views: subclasses implement `component` on a noise batch."""

    orthogonal = False
    factorized = True
    invertible = False

    def component(self, x: torch.Tensor) -> torch.Tensor:
        """The part of ``x`` (noise channels only, ``(..., C, H, W)``) that this view keeps."""
        raise NotImplementedError

    def view(self, x: torch.Tensor) -> torch.Tensor:
        return x  # the model sees the sample as it is

    def inverse(self, x: torch.Tensor, noise_channels: int | None = None) -> torch.Tensor:
        return apply_to_noise_channels(x, noise_channels, self.component)

    def inverse_map(self, maps: torch.Tensor) -> torch.Tensor:
        return maps  # nothing moved

    def render(self, image: torch.Tensor) -> torch.Tensor:
        """The component of a [-1, 1] image (a high-pass or colour component shows around mid-grey)."""
        return self.component(image)


class _SigmaView(FactorizedView):
    positional = ("sigma",)

    def __init__(self, sigma: float = 2.0):
        if float(sigma) < 0:
            raise ViewError(f"{self.name} needs sigma >= 0, got {sigma}")
        self.sigma = float(sigma)

    def params(self) -> dict[str, Any]:
        return {"sigma": self.sigma}

    def low(self, x: torch.Tensor) -> torch.Tensor:
        return gaussian_blur(x, self.sigma * _size_scale(*x.shape[-2:]))


class LowPassView(_SigmaView):
    """Low frequencies of the noise: a Gaussian blur (sigma in pixels at 64, scaled with size)."""

    name = "low_pass"

    def component(self, x: torch.Tensor) -> torch.Tensor:
        return self.low(x)


class HighPassView(_SigmaView):
    """High frequencies of the noise: ``x - low_pass(x)`` (adds up with low_pass to the identity)."""

    name = "high_pass"

    def component(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.low(x)


class _BandView(FactorizedView):
    """One of three frequency bands: the blurs at ``sigma_1`` then ``sigma_2`` split the noise."""

    band = 0

    def __init__(self, sigma_1: float = 1.0, sigma_2: float = 2.0):
        if float(sigma_1) < 0 or float(sigma_2) < 0:
            raise ViewError(f"{self.name} needs sigmas >= 0, got {sigma_1}, {sigma_2}")
        self.sigma_1, self.sigma_2 = float(sigma_1), float(sigma_2)

    def params(self) -> dict[str, Any]:
        return {"sigma_1": self.sigma_1, "sigma_2": self.sigma_2}

    def _smooth(self, x: torch.Tensor) -> torch.Tensor:
        """The blur at sigma_1: what the low and mid bands share."""
        return gaussian_blur(x, self.sigma_1 * _size_scale(*x.shape[-2:]))

    def _lowest(self, x: torch.Tensor) -> torch.Tensor:
        """The blur at sigma_1 then sigma_2, applied as one product matrix per axis."""
        scale = _size_scale(*x.shape[-2:])
        return separable_blur(x, self.sigma_1 * scale, self.sigma_2 * scale)

    def bands(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(low, mid, high)``, adding up to ``x``."""
        smooth, low = self._smooth(x), self._lowest(x)
        return low, smooth - low, x - smooth

    def component(self, x: torch.Tensor) -> torch.Tensor:
        if self.band == 0:
            return self._lowest(x)
        if self.band == 2:
            return x - self._smooth(x)
        return self._smooth(x) - self._lowest(x)


class BandLowView(_BandView):
    """Lowest of three frequency bands (with band_mid and band_high, adds up to the identity)."""

    name = "band_low"
    band = 0


class BandMidView(_BandView):
    """Middle of three frequency bands."""

    name = "band_mid"
    band = 1


class BandHighView(_BandView):
    """Highest of three frequency bands."""

    name = "band_high"
    band = 2


class GrayscaleView(FactorizedView):
    """The grey level of the noise: the channel mean on every channel; pixel models only."""

    name = "grayscale"
    spaces = (PIXEL,)

    def component(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(-3, keepdim=True).expand_as(x).contiguous()


class ColorView(FactorizedView):
    """The colour of the noise: ``x - grayscale(x)``; pixel models only."""

    name = "color"
    spaces = (PIXEL,)

    def component(self, x: torch.Tensor) -> torch.Tensor:
        return x - x.mean(-3, keepdim=True)


class _MotionBase(FactorizedView):
    positional = ("length", "angle")

    def __init__(self, length: float = 8.0, angle: float = 45.0):
        if float(length) < 0:
            raise ViewError(f"{self.name} needs length >= 0, got {length}")
        self.length, self.angle = float(length), float(angle)

    def params(self) -> dict[str, Any]:
        return {"length": self.length, "angle": self.angle}

    def blurred(self, x: torch.Tensor) -> torch.Tensor:
        length = self.length * _size_scale(*x.shape[-2:])
        if length < 1e-6:
            return x
        return sparse_convolve(x, motion_kernel(round(length, 6), self.angle))


class MotionView(_MotionBase):
    """Motion-blurred noise: a line blur of ``length`` pixels (at 64, scaled) at ``angle`` degrees."""

    name = "motion"

    def component(self, x: torch.Tensor) -> torch.Tensor:
        return self.blurred(x)


class MotionResidualView(_MotionBase):
    """What motion blur removes: ``x - motion(x)``."""

    name = "motion_residual"

    def component(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.blurred(x)


class _ScaleBase(FactorizedView):
    positional = ("factor",)

    def __init__(self, factor: int = 4):
        if int(factor) < 1:
            raise ViewError(f"{self.name} needs factor >= 1, got {factor}")
        self.factor = int(factor)

    def params(self) -> dict[str, Any]:
        return {"factor": self.factor}

    def size_problem(self, height: int, width: int, multiple: int = 1) -> str | None:
        return super().size_problem(height, width) or divisibility_problem(
            height, width, self.factor, self.factor, "downsampling blocks (side = factor)", multiple
        )

    def coarse(self, x: torch.Tensor) -> torch.Tensor:
        """Average over ``factor x factor`` blocks, shown at full size (area down, nearest up)."""
        height, width = x.shape[-2:]
        f = self.factor
        if height % f or width % f:
            self.check(height, width, self.spaces[0])
        blocks = x.unflatten(-1, (width // f, f)).unflatten(-3, (height // f, f))
        return blocks.mean((-3, -1), keepdim=True).expand_as(blocks).reshape(x.shape)


class ScaleView(_ScaleBase):
    """What survives downscaling by ``factor``: block averages, shown at full size."""

    name = "scale"

    def component(self, x: torch.Tensor) -> torch.Tensor:
        return self.coarse(x)


class ScaleResidualView(_ScaleBase):
    """What downscaling by ``factor`` removes: ``x - scale(x)``."""

    name = "scale_residual"

    def component(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.coarse(x)
