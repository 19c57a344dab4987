"""Views that permute pixels (or latent cells): a shared exact, cached gather, and its families.

A `PermutationView` is defined by one index array per grid size: ``perm`` of shape ``(H*W,)`` such
that ``view(x).flatten(-2) == x.flatten(-2)[..., perm]`` (a gather: output pixel ``i`` shows input
pixel ``perm[i]``). The array is built once per size on the CPU, checked to be a bijection, and
cached (and cached again per device it is used on), so applying a view is one index gather.

Attention maps live on a coarser grid than the sample, so every view here can also say what it
means at a coarser size: views defined in relative geometry (skew, inner_circle, square_hinge,
patch_permute, jigsaw) simply rasterise themselves at that size; views defined pixel by pixel
(pixel_permute, the generic ``permutation``) coarsen their array with `coarsen_permutation`,
which only works when whole aligned blocks move to whole aligned blocks.

Animation frames move the pixels: each source pixel travels on a straight line to where the view
puts it (`splat_frame`), and views made of rigid pieces move and turn whole pieces instead
(`rigid_piece_frame`).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from .base import FRAME_BACKGROUND, View, ViewError, divisibility_problem
from .permutation_algebra import coarsen_permutation, expand_permutation, invert_permutation, is_permutation

# -- animation helpers ------------------------------------------------------------------------------


def splat_frame(
    image: torch.Tensor, target_y: torch.Tensor, target_x: torch.Tensor, background: float = FRAME_BACKGROUND
) -> torch.Tensor:
    """Forward-warp: paint each source pixel at its (fractional) target position, bilinearly.

    ``image`` is ``(C, H, W)`` or ``(B, C, H, W)``; ``target_y``/``target_x`` are ``(H, W)`` (where
    each source pixel lands) or ``(S, H, W)`` (S sub-samples per source pixel, each painting 1/S of
    it, which avoids holes when pieces turn). Overlaps average, uncovered output shows ``background``.
    """
    batch = image if image.dim() == 4 else image[None]
    b, c, height, width = batch.shape
    samples = target_y.numel() // (height * width)
    values = batch.reshape(b * c, height * width).float().repeat(1, samples)
    y0, x0 = target_y.floor(), target_x.floor()
    fy, fx = (target_y - y0).flatten().float(), (target_x - x0).flatten().float()
    y0, x0 = y0.long().flatten(), x0.long().flatten()
    colour = torch.zeros(b * c, height * width, device=values.device)
    cover = torch.zeros(height * width, device=values.device)
    for dy, wy in ((0, 1 - fy), (1, fy)):  # the 4 bilinear neighbours (not a per-pixel loop)
        for dx, wx in ((0, 1 - fx), (1, fx)):
            yy, xx = y0 + dy, x0 + dx
            inside = (yy >= 0) & (yy < height) & (xx >= 0) & (xx < width)
            weight = (wy * wx * inside / samples).to(values.device)
            index = (yy.clamp(0, height - 1) * width + xx.clamp(0, width - 1)).to(values.device)
            colour.index_add_(1, index, values * weight)
            cover.index_add_(0, index, weight)
    # A pixel at least half covered counts as covered (turned grids and the image border leave
    # fractional cover); less than that fades to the background, which antialiases piece edges.
    alpha = (2 * cover).clamp(max=1)
    frame = colour / cover.clamp(min=1e-12) * alpha + (1 - alpha) * background
    frame = frame.view(b, c, height, width).to(batch.dtype)
    return frame if image.dim() == 4 else frame[0]


def rigid_piece_frame(
    image: torch.Tensor,
    s: float,
    owner: torch.Tensor,
    source_centres: torch.Tensor,
    target_centres: torch.Tensor,
    turns: torch.Tensor,
) -> torch.Tensor:
    """Frame ``s`` of pieces moving rigidly: each travels centre to centre on a straight line while
    turning by ``s * turns`` quarter turns (clockwise on screen) about its centre.

    ``owner`` is the ``(H, W)`` piece index of every pixel; centres are ``(n, 2)`` ``(y, x)`` pixel
    coordinates; ``turns`` is ``(n,)``.
    """
    height, width = owner.shape
    # 2x2 sub-samples per pixel: a turned grid painted with one sample per pixel leaves holes.
    offsets = torch.tensor([-0.25, 0.25], dtype=torch.float64)
    y = (torch.arange(height, dtype=torch.float64)[:, None] + offsets.repeat_interleave(2)[:, None, None])
    x = (torch.arange(width, dtype=torch.float64)[None, :] + offsets.repeat(2)[:, None, None])
    source = source_centres.double()[owner]
    target = target_centres.double()[owner]
    angle = turns.double()[owner] * (math.pi / 2) * s
    dy, dx = y - source[..., 0], x - source[..., 1]
    cos, sin = angle.cos(), angle.sin()
    centre = (1 - s) * source + s * target
    target_y = centre[..., 0] + dx * sin + dy * cos
    target_x = centre[..., 1] + dx * cos - dy * sin
    return splat_frame(image, target_y.to(image.device), target_x.to(image.device))


# -- the base class --------------------------------------------------------------------------------


class PermutationView(View):
    """Base of views that permute the pixels of each channel; subclasses build the index array.

    Subclasses implement `_build_permutation` (and extend `size_problem` with the sizes they can
    tile). ``view`` and ``inverse`` are one gather each, on any device and dtype, any batch shape
    ``(..., H, W)``, and apply to every channel (spatial moves carry the variance channels too).
    """

    def _build_permutation(self, height: int, width: int) -> torch.Tensor:
        """The gather indices ``(height*width,)`` (CPU, int64) for this grid size."""
        raise NotImplementedError

    def _tables(self, height: int, width: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(perm, inverse)`` for a size, built once on the CPU then cached per device."""
        cache = self.__dict__.setdefault("_permutation_cache", {})
        key = (height, width, str(device) if device is not None else "cpu")
        if key not in cache:
            cpu_key = (height, width, "cpu")
            if cpu_key not in cache:
                cache[cpu_key] = self._build_checked(height, width)
            cache[key] = tuple(t.to(device) for t in cache[cpu_key])
        return cache[key]

    def _build_checked(self, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        self.check(height, width, self.spaces[0])
        perm = self._build_permutation(height, width).to(torch.long).flatten()
        if perm.numel() != height * width or not is_permutation(perm):
            raise RuntimeError(f"{self!r} built an invalid permutation for {height}x{width} (a bug)")
        return perm, invert_permutation(perm)

    def permutation(self, height: int, width: int) -> torch.Tensor:
        """The gather indices for a ``height x width`` grid; `ViewError` if the view cannot tile it.

        At a coarser size than the image (attention maps), this is the same transformation
        rasterised at that size, or refused when the view has no such version.
        """
        return self._tables(height, width)[0]

    def inverse_permutation(self, height: int, width: int) -> torch.Tensor:
        """The gather indices of the inverse view."""
        return self._tables(height, width)[1]

    def _gather(self, x: torch.Tensor, which: int) -> torch.Tensor:
        height, width = x.shape[-2:]
        index = self._tables(height, width, x.device)[which]
        # Advanced indexing on the flattened grid is the fastest gather on CPU and GPU.
        return x.flatten(-2)[..., index].unflatten(-1, (height, width))

    def view(self, x: torch.Tensor) -> torch.Tensor:
        return self._gather(x, 0)

    def inverse(self, x: torch.Tensor, noise_channels: int | None = None) -> torch.Tensor:
        return self._gather(x, 1)

    def make_frame(self, image: torch.Tensor, s: float) -> torch.Tensor:
        """Every pixel travels on a straight line from where it is to where the view puts it."""
        if s <= 0 or s >= 1:
            return super().make_frame(image, s)
        height, width = image.shape[-2:]
        destination = self.inverse_permutation(height, width).view(height, width).double()
        y = torch.arange(height, dtype=torch.float64)[:, None]
        x = torch.arange(width, dtype=torch.float64)[None, :]
        target_y = (1 - s) * y + s * torch.div(destination, width, rounding_mode="floor")
        target_x = (1 - s) * x + s * torch.remainder(destination, width)
        return splat_frame(image, target_y.to(image.device), target_x.to(image.device))


def _pixel_grid(height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column index grids ``(H, 1)`` and ``(1, W)`` (int64, broadcastable)."""
    return torch.arange(height)[:, None], torch.arange(width)[None, :]


# -- grid-defined permutations: patch_permute, pixel_permute, permutation ----------------------------


class _GridPermutationView(PermutationView):
    """A permutation of the cells of a fixed ``rows x cols`` grid (`_grid`).

    On a multiple of the grid each cell is a block of pixels moved whole (DeepFloyd's 256-pixel
    stage sees a 64-pixel permutation as 4x4 blocks); on a divisor of the grid the permutation is
    coarsened when it moves aligned blocks wholesale; other sizes are refused.
    """

    grid_what = "grid"

    def _grid(self) -> tuple[torch.Tensor, int, int]:
        """``(perm, rows, cols)``: the gather indices of the cells, in raster order."""
        raise NotImplementedError

    def _cells(self) -> tuple[torch.Tensor, int, int]:
        """`_grid`, computed once (size checks and builds both need it)."""
        cells = self.__dict__.get("_cells_cache")
        if cells is None:
            cells = self.__dict__["_cells_cache"] = self._grid()
        return cells

    def _build_permutation(self, height: int, width: int) -> torch.Tensor:
        perm, rows, cols = self._cells()
        if height % rows == 0 and width % cols == 0:
            return expand_permutation(perm, rows, cols, height, width)
        return coarsen_permutation(perm, rows, cols, height, width)

    def _size_hint(self) -> str:
        return ""

    def size_problem(self, height: int, width: int, multiple: int = 1) -> str | None:
        problem = super().size_problem(height, width)
        if problem is not None:
            return problem
        perm, rows, cols = self._cells()
        if height % rows == 0 and width % cols == 0:
            return None
        if rows % height == 0 and cols % width == 0:  # a coarser grid: only block-wise moves coarsen
            try:
                coarsen_permutation(perm, rows, cols, height, width)
            except ViewError as error:
                return str(error)
            return None
        return divisibility_problem(height, width, rows, cols, self.grid_what, multiple) + self._size_hint()


def _seeded_randperm(n: int, seed: int) -> torch.Tensor:
    """A random permutation of ``n`` that depends only on ``seed`` (not on the global RNG)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))


class PatchPermuteView(_GridPermutationView):
    """Shuffle a ``num_patches x num_patches`` grid of square patches (seeded)."""

    name = "patch_permute"
    grid_what = "patch grid"
    positional = ("num_patches", "seed")

    def __init__(self, num_patches: int = 8, seed: int = 0):
        if int(num_patches) < 1:
            raise ViewError(f"patch_permute needs num_patches >= 1, got {num_patches}")
        self.num_patches, self.seed = int(num_patches), int(seed)

    def params(self) -> dict[str, Any]:
        return {"num_patches": self.num_patches, "seed": self.seed}

    def _grid(self):
        k = self.num_patches
        return _seeded_randperm(k * k, self.seed), k, k


class PixelPermuteView(_GridPermutationView):
    """Shuffle every pixel of a ``size x size`` image (seeded); pixel models only.

    On a multiple of ``size`` (a super-resolution stage) whole blocks move; a random pixel
    shuffle has no coarser version, so attention maps smaller than ``size`` are refused.
    """

    name = "pixel_permute"
    spaces = ("pixel",)
    grid_what = "pixel grid"
    positional = ("size", "seed")

    def __init__(self, size: int = 64, seed: int = 0):
        if int(size) < 1:
            raise ViewError(f"pixel_permute needs size >= 1, got {size}")
        self.size, self.seed = int(size), int(seed)

    def params(self) -> dict[str, Any]:
        return {"size": self.size, "seed": self.seed}

    def _grid(self):
        return _seeded_randperm(self.size * self.size, self.seed), self.size, self.size

    def _size_hint(self) -> str:
        return " (or build the view with size= the image side, e.g. pixel_permute:<side>)"


class IndexPermutationView(_GridPermutationView):
    """Any permutation, from an index array: output pixel ``i`` shows input pixel ``perm[i]``.

    ``perm`` is a ``height x width`` nested list / array of flat source indices (or a flat one with
    ``height`` and ``width``). Multiples of the size move blocks; divisors coarsen if possible.
    """

    name = "permutation"
    positional = ("perm", "height", "width")

    def __init__(self, perm: Sequence | torch.Tensor, height: int | None = None, width: int | None = None):
        indices = torch.as_tensor(perm).detach().cpu().long()
        if indices.dim() not in (1, 2):
            raise ViewError(f"perm must be a 2D (height x width) or flat index array, got shape {tuple(indices.shape)}")
        if indices.dim() == 2:
            height, width = _agree(indices.shape, height, width)
        else:
            height, width = _flat_shape(indices.numel(), height, width)
        if indices.numel() != height * width:
            raise ViewError(f"perm must hold height*width = {height}x{width} indices, got {indices.numel()}")
        if not is_permutation(indices):
            raise ViewError(f"perm is not a permutation: it must hold each of 0..{indices.numel() - 1} exactly once")
        self.height, self.width = int(height), int(width)
        self._perm = indices.flatten().clone()

    def params(self) -> dict[str, Any]:
        return {"perm": self._perm.view(self.height, self.width).tolist(), "height": self.height, "width": self.width}

    def __repr__(self) -> str:  # the full array would flood logs
        return f"{type(self).__name__}(<{self.height}x{self.width} permutation>)"

    def _grid(self):
        return self._perm, self.height, self.width


def _flat_shape(n: int, height: int | None, width: int | None) -> tuple[int, int]:
    """``(height, width)`` of a flat array of ``n`` indices: as given, inferred, or square."""
    if height is None and width is None:
        side = math.isqrt(n)
        if side * side != n:
            raise ViewError(f"a flat permutation of {n} indices needs height= and width= (it is not square)")
        return side, side
    if height is None:
        height = n // int(width) if int(width) > 0 else 0
    if width is None:
        width = n // int(height) if int(height) > 0 else 0
    return int(height), int(width)


def _agree(shape, height, width) -> tuple[int, int]:
    """The array's ``(height, width)``, checked against the ones given."""
    rows, cols = int(shape[0]), int(shape[1])
    if (height is not None and int(height) != rows) or (width is not None and int(width) != cols):
        raise ViewError(f"perm is {rows}x{cols} but height={height}, width={width} were given")
    return rows, cols


# -- geometric permutations: skew, inner_circle, square_hinge -----------------------------------------


class SkewView(PermutationView):
    """Circularly shift each column down by an amount growing linearly from left to right.

    Column ``x`` moves by ``round(factor * (x + 1/2 - W/2) * H / W)`` pixels: relative to the
    image, the shift is ``factor * (u - 1/2)`` of the height at relative position ``u``, so the
    view is the same geometry at every size (attention maps included), and exact since every
    shift is a whole number of pixels. The shifts are antisymmetric about the centre column.
    """

    name = "skew"

    def __init__(self, factor: float = 1.5):
        self.factor = float(factor)

    def params(self) -> dict[str, Any]:
        return {"factor": self.factor}

    def shifts(self, height: int, width: int) -> torch.Tensor:
        """The downward shift (pixels) of every column, ``(width,)`` int64."""
        x = torch.arange(width, dtype=torch.float64)
        return torch.round(self.factor * (x + 0.5 - width / 2) * height / width).long()

    def _build_permutation(self, height: int, width: int) -> torch.Tensor:
        y, x = _pixel_grid(height, width)
        source_y = torch.remainder(y - self.shifts(height, width)[None, :], height)
        return (source_y * width + x).flatten()

    def make_frame(self, image: torch.Tensor, s: float) -> torch.Tensor:
        """The columns slide (circularly) by ``s`` times their shift, interpolating between rows."""
        if s <= 0 or s >= 1:
            return super().make_frame(image, s)
        height, width = image.shape[-2:]
        shift = s * self.shifts(height, width).double()
        whole = shift.floor()
        frac = (shift - whole).to(device=image.device, dtype=image.dtype)
        y, x = _pixel_grid(height, width)
        flat = image.flatten(-2)
        rows = [torch.remainder(y - whole.long()[None, :] - k, height) * width + x for k in (0, 1)]
        near, far = (flat[..., r.flatten().to(image.device)].unflatten(-1, (height, width)) for r in rows)
        return (1 - frac) * near + frac * far


class InnerCircleView(PermutationView):
    """Rotate the inner disc by 180 degrees about the image centre; the rest stays.

    The disc has radius ``radius * min(H, W)`` and holds the pixels whose *centres* lie inside it;
    that set is symmetric under the 180-degree turn (which maps the pixel grid onto itself), so the
    view is an exact permutation at any size.
    """

    name = "inner_circle"

    def __init__(self, radius: float = 0.375):
        if not 0 < float(radius):
            raise ViewError(f"inner_circle needs radius > 0 (a fraction of the image side), got {radius}")
        self.radius = float(radius)

    def params(self) -> dict[str, Any]:
        return {"radius": self.radius}

    def disc(self, height: int, width: int) -> torch.Tensor:
        """``(H, W)`` bool mask of the turning disc."""
        y, x = _pixel_grid(height, width)
        # Doubled pixel-centre offsets are integers and change sign exactly under the turn.
        dy, dx = (2 * y + 1 - height).double(), (2 * x + 1 - width).double()
        return dy * dy + dx * dx < (2 * self.radius * min(height, width)) ** 2

    def _build_permutation(self, height: int, width: int) -> torch.Tensor:
        y, x = _pixel_grid(height, width)
        turned = (height - 1 - y) * width + (width - 1 - x)
        fixed = y * width + x
        return torch.where(self.disc(height, width), turned, fixed).flatten()

    def make_frame(self, image: torch.Tensor, s: float) -> torch.Tensor:
        """The disc turns smoothly (clockwise) about the centre."""
        if s <= 0 or s >= 1:
            return super().make_frame(image, s)
        height, width = image.shape[-2:]
        owner = self.disc(height, width).long()
        centre = torch.tensor([[(height - 1) / 2, (width - 1) / 2]] * 2)
        return rigid_piece_frame(image, s, owner, centre, centre, torch.tensor([0.0, 2.0]))


class SquareHingeView(PermutationView):
    """Turn each square of a ``grid x grid`` tiling by 90 degrees about its own centre.

    Squares alternate like a checkerboard: (row + col) even turns clockwise, odd counter-clockwise
    (the "square hinge" of Visual Anagrams). Squares have side ``N // grid``; when ``grid`` does not
    divide ``N`` the leftover last rows and columns stay in place. Exact at any square size.
    """

    name = "square_hinge"
    square_only = True

    def __init__(self, grid: int = 3):
        if int(grid) < 1:
            raise ViewError(f"square_hinge needs grid >= 1, got {grid}")
        self.grid = int(grid)

    def params(self) -> dict[str, Any]:
        return {"grid": self.grid}

    def size_problem(self, height: int, width: int, multiple: int = 1) -> str | None:
        problem = super().size_problem(height, width, multiple)
        if problem is None and height < self.grid:
            problem = f"it needs at least {self.grid} pixels per side for its {self.grid}x{self.grid} squares"
        return problem

    def _build_permutation(self, height: int, width: int) -> torch.Tensor:
        g, side = self.grid, height // self.grid
        span = g * side
        index = torch.arange(height * width).view(height, width)
        blocks = index[:span, :span].reshape(g, side, g, side).permute(0, 2, 1, 3)
        # Gather semantics: output square = input square turned (rot90 k=-1 turns clockwise on screen).
        even = ((torch.arange(g)[:, None] + torch.arange(g)[None, :]) % 2 == 0)[..., None, None]
        turned = torch.where(even, torch.rot90(blocks, -1, (2, 3)), torch.rot90(blocks, 1, (2, 3)))
        index[:span, :span] = turned.permute(0, 2, 1, 3).reshape(span, span)
        return index.flatten()

    def make_frame(self, image: torch.Tensor, s: float) -> torch.Tensor:
        """Every square turns smoothly about its centre."""
        if s <= 0 or s >= 1:
            return super().make_frame(image, s)
        height, width = image.shape[-2:]
        g, side = self.grid, height // self.grid
        y, x = _pixel_grid(height, width)
        inside = (y < g * side) & (x < g * side)
        owner = torch.where(inside, (y // side).clamp(max=g - 1) * g + (x // side).clamp(max=g - 1), g * g)
        i, j = torch.arange(g).repeat_interleave(g), torch.arange(g).repeat(g)
        centres = torch.stack([(i + 0.5) * side - 0.5, (j + 0.5) * side - 0.5], 1).double()
        centres = torch.cat([centres, torch.zeros(1, 2, dtype=torch.float64)])
        turns = torch.where((i + j) % 2 == 0, 1.0, -1.0).double()
        turns = torch.cat([turns, torch.zeros(1, dtype=torch.float64)])
        return rigid_piece_frame(image, s, owner, centres, centres, turns)
