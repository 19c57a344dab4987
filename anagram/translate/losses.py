"""The translator's losses (spec §2-§4) as pure functions of tensors: no module state, no host sync.

PatchNCE for one layer, with S sampled locations, queries ``q`` (from G(x)) and keys ``k`` (from x,
detached), all L2-normalised::

    l(q_s) = -log( exp(q_s.k_s / tau) / ( exp(q_s.k_s / tau) + sum_{s' != s} exp(q_s.k_s' / tau)
                                          + sum_n exp(q_s.e_n / tau) ) )

where ``e_n`` are optional extra negatives shared by every query of the image: the patches of the
multi-crop views (`crop_boxes`, `crop_views`; MCDUT) or the same number drawn at random from other
locations of x (`random_negative_ids`; the control). `multilayer_nce` is the mean over layers of
the mean over locations (CUT's reduction). Identity NCE is the same loss on (y, G(y)).

Domain consistency: ``L_DC = lambda_DC * mean | e(G(x)) - e(y) |`` with ``e`` a global embedding
(`pool_patches` per layer, concatenated, then a head); ``e(y)`` is a target and is detached here.
LSGAN: ``mean (D(.) - t)^2`` with t = 1 for real, 0 for fake; the discriminator's objective is
``0.5 (MSE(D(y), 1) + MSE(D(G(x)), 0))``. Logits are computed in float32 under mixed precision.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "CropError", "crop_boxes", "crop_views", "discriminator_loss", "domain_consistency_loss", "gather_patches",
    "generator_gan_loss", "l2_normalize", "lsgan_loss", "multilayer_nce", "patch_nce_logits", "patch_nce_loss",
    "pool_patches", "random_negative_ids", "sample_locations",
]


class CropError(ValueError):
    """A multi-crop view that would be the whole image (no new negatives) or empty."""


def l2_normalize(x: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """``x / (|x| + eps)`` over the last dimension (CUT's ``Normalize(2)``)."""
    return x / (x.norm(p=2, dim=-1, keepdim=True) + eps)


def sample_locations(num_locations: int, num_patches: int, generator: torch.Generator | None = None,
                     device: torch.device | str = "cpu") -> torch.Tensor:
    """``min(S, HW)`` distinct flat locations of an ``H x W`` map, drawn with ``generator`` (on the CPU)."""
    ids = torch.randperm(num_locations, generator=generator)[: min(num_patches, num_locations)]
    return ids.to(device, non_blocking=True)


def gather_patches(features: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Feature vectors ``(B, S, C)`` of a map ``(B, C, H, W)`` at flat locations ``ids`` ``(S,)``."""
    return features.flatten(2).index_select(2, ids).transpose(1, 2)


def patch_nce_logits(query: torch.Tensor, key: torch.Tensor, tau: float,
                     extra_negatives: torch.Tensor | None = None) -> torch.Tensor:
    """Logits ``(B, S, 1 + S + N)``: the positive first, then the S keys of the image (its own location
    masked to -inf, so it never counts as a negative), then N extra negatives ``(B, N, C)``."""
    query, key = query.float(), key.detach().float()
    positive = (query * key).sum(-1, keepdim=True)  # (B, S, 1)
    same_image = torch.bmm(query, key.transpose(1, 2))  # (B, S, S)
    diagonal = torch.eye(query.shape[1], dtype=torch.bool, device=query.device)
    same_image = same_image.masked_fill(diagonal, float("-inf"))
    parts = [positive, same_image]
    if extra_negatives is not None:
        parts.append(torch.bmm(query, extra_negatives.detach().float().transpose(1, 2)))
    return torch.cat(parts, dim=-1) / tau


def patch_nce_loss(query: torch.Tensor, key: torch.Tensor, tau: float = 0.07,
                   extra_negatives: torch.Tensor | None = None) -> torch.Tensor:
    """Mean PatchNCE over images and locations (formula at the top); ``query``/``key`` ``(B, S, C)``."""
    if query.shape != key.shape:
        raise ValueError(f"query {tuple(query.shape)} and key {tuple(key.shape)} must have one shape (B, S, C)")
    logits = patch_nce_logits(query, key, tau, extra_negatives)
    return -torch.log_softmax(logits, dim=-1)[..., 0].mean()


def multilayer_nce(queries: Sequence[torch.Tensor], keys: Sequence[torch.Tensor], tau: float = 0.07,
                   extra_negatives: Sequence[torch.Tensor | None] | None = None) -> torch.Tensor:
    """Mean over layers of `patch_nce_loss` (one query/key/extra tensor per layer)."""
    extra_negatives = extra_negatives or [None] * len(queries)
    losses = [patch_nce_loss(q, k, tau, e) for q, k, e in zip(queries, keys, extra_negatives)]
    return torch.stack(losses).mean()


def crop_boxes(height: int, width: int, count: int, scale_range: tuple[float, float] = (0.5, 0.9),
               centre_scale: float = 0.7, generator: torch.Generator | None = None) -> list[tuple[int, int, int, int]]:
    """``(top, left, h, w)`` of the centre crop and ``count`` random crops, each strictly smaller than the
    ``height x width`` image: side ``round(scale * side)`` with a scale drawn from ``scale_range``.

    Raises `CropError` when a crop would be the whole image (scale >= 1, or a side too small for the
    scale to shrink it), where the released code silently encoded the image again."""
    low, high = scale_range
    scales = [centre_scale] + [float(low + (high - low) * torch.rand((), generator=generator)) for _ in range(count)]
    boxes = []
    for index, scale in enumerate(scales):
        if not 0 < scale < 1:
            raise CropError(f"crop scale {scale} must lie strictly between 0 and 1 (1 is the whole image)")
        h, w = round(scale * height), round(scale * width)
        if not (1 <= h < height and 1 <= w < width):
            raise CropError(f"a crop of scale {scale:.3f} of a {height}x{width} image is {h}x{w}: it must be strictly "
                            f"smaller than the image and non-empty; use larger images or a smaller crop_scale")
        if index == 0:
            top, left = (height - h) // 2, (width - w) // 2
        else:
            top = int(torch.randint(0, height - h + 1, (), generator=generator))
            left = int(torch.randint(0, width - w + 1, (), generator=generator))
        boxes.append((top, left, h, w))
    return boxes


def crop_views(images: torch.Tensor, boxes: Sequence[tuple[int, int, int, int]]) -> torch.Tensor:
    """Each crop of ``images`` ``(B, C, H, W)`` resized back to ``H x W`` (bilinear): ``(V * B, C, H, W)``,
    view-major (the B images of view 0, then of view 1...), ready for one batched encoder pass."""
    size = images.shape[-2:]
    views = [F.interpolate(images[..., t:t + h, l:l + w], size=size, mode="bilinear", align_corners=False)
             for t, l, h, w in boxes]
    return torch.cat(views, dim=0)


def random_negative_ids(num_locations: int, sampled_ids: torch.Tensor, count: int,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """``count`` flat locations drawn uniformly from those NOT in ``sampled_ids`` (never a positive), with
    replacement; the "more negatives, no crops" control. Empty when every location is sampled."""
    free_count = num_locations - sampled_ids.numel()  # the sampled ids are distinct (`sample_locations`)
    if free_count <= 0 or count == 0:
        return torch.zeros(0, dtype=torch.long, device=sampled_ids.device)
    # the free locations in ascending order, found on the ids' device without a host sync (no nonzero())
    taken = torch.zeros(num_locations, dtype=torch.int8, device=sampled_ids.device)
    taken[sampled_ids] = 1
    free = torch.argsort(taken, stable=True)[:free_count]
    picks = torch.randint(0, free_count, (count,), generator=generator)
    return free[picks.to(sampled_ids.device, non_blocking=True)]


def pool_patches(projected: torch.Tensor) -> torch.Tensor:
    """Mean over the sampled locations of projected patches ``(B, S, D)`` -> ``(B, D)``."""
    return projected.mean(dim=1)


def domain_consistency_loss(embedding_fake: torch.Tensor, embedding_real: torch.Tensor,
                            weight: float = 10.0) -> torch.Tensor:
    """``weight * mean |e(G(x)) - e(y)|`` over batch and dimensions; ``e(y)`` is a target (detached).
    ``embedding_real`` may have batch 1 (a mean embedding of several real images) and is broadcast."""
    return weight * (embedding_fake.float() - embedding_real.detach().float()).abs().mean()


def lsgan_loss(prediction: torch.Tensor, target_is_real: bool) -> torch.Tensor:
    """Least-squares GAN term ``mean (prediction - t)^2``, t = 1 for real, 0 for fake."""
    target = 1.0 if target_is_real else 0.0
    return (prediction.float() - target).pow(2).mean()


def discriminator_loss(prediction_real: torch.Tensor, prediction_fake: torch.Tensor) -> torch.Tensor:
    """``0.5 (MSE(D(y), 1) + MSE(D(G(x)), 0))``."""
    return 0.5 * (lsgan_loss(prediction_real, True) + lsgan_loss(prediction_fake, False))


def generator_gan_loss(prediction_fake: torch.Tensor) -> torch.Tensor:
    """``MSE(D(G(x)), 1)``: the generator wants its images judged real."""
    return lsgan_loss(prediction_fake, True)
