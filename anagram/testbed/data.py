"""The testbed's data: scikit-learn's bundled 8x8 handwritten digits, upsampled, in ``[-1, 1]``.

``sklearn.datasets.load_digits`` ships 1797 grayscale 8x8 digits (values 0..16) inside the
scikit-learn wheel, so nothing is downloaded. Here they are

* upsampled to ``size x size`` (32 by default; any multiple of 8) with bilinear interpolation
  (smooth strokes, no overshoot), and
* scaled to ``[-1, 1]``: background ``-1``, ink ``+1`` (the range the diffusion model samples in).

The split is deterministic and stratified: :func:`load_split` gives the same 80/20 train/test
partition on every machine (``sklearn.model_selection.train_test_split`` with a fixed seed), so
the classifier's held-out accuracy and the diffusion model are measured on the same test images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

DEFAULT_SIZE = 32
SPLIT_SEED = 0
TEST_FRACTION = 0.2


def _raw_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images.astype(np.float32), bunch.target.astype(np.int64)


def upsample(images8: torch.Tensor, size: int = DEFAULT_SIZE) -> torch.Tensor:
    """Upsample ``(B, 1, 8, 8)`` images in ``[-1, 1]`` to ``(B, 1, size, size)`` (bilinear, clamped)."""
    if size == images8.shape[-1]:
        return images8.clone()
    out = F.interpolate(images8, size=(size, size), mode="bilinear", align_corners=False)
    return out.clamp(-1.0, 1.0)


def load_images(size: int = DEFAULT_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """All 1797 digits: images ``(N, 1, size, size)`` float32 in ``[-1, 1]`` and labels ``(N,)`` int64."""
    if size % 8:
        raise ValueError(f"size must be a multiple of 8, got {size}")
    images, labels = _raw_digits()
    x = torch.from_numpy(images).unsqueeze(1) / 8.0 - 1.0  # 0..16 -> -1..1
    return upsample(x, size), torch.from_numpy(labels)


@dataclass(frozen=True)
class DigitsSplit:
    """A train/test split of the digits (images in ``[-1, 1]``, shape ``(N, 1, size, size)``)."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor


def split_indices(
    labels: np.ndarray | torch.Tensor, test_fraction: float = TEST_FRACTION, seed: int = SPLIT_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic stratified split of ``range(len(labels))`` into sorted (train, test) indices."""
    from sklearn.model_selection import train_test_split

    labels = np.asarray(labels)
    idx = np.arange(len(labels))
    train_idx, test_idx = train_test_split(
        idx, test_size=test_fraction, random_state=seed, stratify=labels
    )
    return np.sort(train_idx), np.sort(test_idx)


def load_split(
    size: int = DEFAULT_SIZE, test_fraction: float = TEST_FRACTION, seed: int = SPLIT_SEED
) -> DigitsSplit:
    """The standard testbed split (80/20, stratified, seed 0): 1437 train / 360 test images."""
    images, labels = load_images(size)
    train_idx, test_idx = split_indices(labels.numpy(), test_fraction, seed)
    tr, te = torch.from_numpy(train_idx), torch.from_numpy(test_idx)
    return DigitsSplit(images[tr], labels[tr], images[te], labels[te])


def random_shift(
    images: torch.Tensor, max_shift: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Shift each image by a random integer offset in ``[-max_shift, max_shift]`` (both axes).

    Uncovered pixels are filled with the background value ``-1``. Used as light augmentation.
    """
    if max_shift <= 0:
        return images
    b, _, h, w = images.shape
    padded = F.pad(images, (max_shift,) * 4, value=-1.0)
    offs = torch.randint(0, 2 * max_shift + 1, (b, 2), generator=generator)
    rows = (torch.arange(h).view(1, h) + offs[:, :1]).view(b, 1, h, 1).expand(b, images.shape[1], h, w)
    cols = (torch.arange(w).view(1, w) + offs[:, 1:]).view(b, 1, 1, w).expand(b, images.shape[1], h, w)
    bi = torch.arange(b).view(b, 1, 1, 1)
    ci = torch.arange(images.shape[1]).view(1, -1, 1, 1)
    out = padded[bi, ci, rows, cols]
    return out


__all__ = [
    "DEFAULT_SIZE",
    "DigitsSplit",
    "load_images",
    "load_split",
    "random_shift",
    "split_indices",
    "upsample",
]
