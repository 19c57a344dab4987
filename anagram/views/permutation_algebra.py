"""Permutation algebra on flat index arrays: inverse, bijection check, block expansion, coarsening.

A permutation of an ``H x W`` grid is an index array ``perm`` of shape ``(H*W,)`` read as a gather:
output pixel ``i`` shows input pixel ``perm[i]``. These pure functions know nothing of views; the
view classes in `anagram.views.permutation` build their arrays with them.
"""

from __future__ import annotations

import torch

from .base import ViewError

__all__ = ["coarsen_permutation", "expand_permutation", "invert_permutation", "is_permutation"]


def invert_permutation(perm: torch.Tensor) -> torch.Tensor:
    """The inverse gather: ``x[perm][inv] == x``."""
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel(), device=perm.device)
    return inv


def is_permutation(perm: torch.Tensor) -> bool:
    """Whether ``perm`` holds every index ``0..n-1`` exactly once."""
    n = perm.numel()
    if n == 0 or int(perm.min()) < 0 or int(perm.max()) >= n:
        return False
    return bool(torch.bincount(perm.flatten(), minlength=n).eq(1).all())


def expand_permutation(perm: torch.Tensor, rows: int, cols: int, height: int, width: int) -> torch.Tensor:
    """A ``rows x cols`` grid permutation acting on ``height x width`` pixels: each cell a block.

    Output block ``i`` is the input block ``perm[i]``, moved whole (its pixels keep their order).
    """
    fy, fx = height // rows, width // cols
    y = torch.arange(height)[:, None]
    x = torch.arange(width)[None, :]
    source_cell = perm[(y // fy) * cols + x // fx]
    sy = (source_cell // cols) * fy + y % fy
    sx = (source_cell % cols) * fx + x % fx
    return (sy * width + sx).flatten()


def coarsen_permutation(perm: torch.Tensor, height: int, width: int, rows: int, cols: int) -> torch.Tensor:
    """The ``rows x cols`` version of a ``height x width`` pixel permutation, if it has one.

    It exists when every aligned output block of ``height/rows x width/cols`` pixels is filled from
    a single aligned input block (in any internal order); then average pooling commutes with the
    view: ``pool(view(x)) == view_coarse(pool(x))``. Raises `ViewError` otherwise.
    """
    perm = torch.as_tensor(perm).flatten().cpu()
    if height % rows or width % cols:
        raise ViewError(
            f"a {height}x{width} permutation has no {rows}x{cols} version: {rows}x{cols} does not divide "
            f"{height}x{width} (use a size whose sides divide {height} and {width})"
        )
    fy, fx = height // rows, width // cols
    source_block = (perm // width // fy) * cols + (perm % width) // fx
    blocks = source_block.view(rows, fy, cols, fx).permute(0, 2, 1, 3).reshape(rows * cols, fy * fx)
    if not bool((blocks == blocks[:, :1]).all()):
        raise ViewError(
            f"the {height}x{width} permutation has no {rows}x{cols} version: it scatters the pixels of "
            f"aligned {fy}x{fx} blocks to different blocks (only block-wise permutations coarsen; use the "
            f"full {height}x{width} size, or a view defined at the coarser size)"
        )
    return blocks[:, 0].clone()
