"""Combination of the per-view noise estimates into one (spec §2, §3, §4).

Estimates arrive stacked as ``(N, B, C, H, W)``: N views, B samples, already brought back to the
canonical frame. The first ``noise_channels`` channels are the noise estimate; any further channels
are a learned variance (DeepFloyd IF) that is combined with the same weights but never rescaled.
"""

from __future__ import annotations

import torch

REDUCTIONS = ("mean", "sum")


def view_weights(num_views: int, batch: int, reduction: str, like: torch.Tensor) -> torch.Tensor:
    """Uniform weights ``(B, N)`` for plain averaging ("mean") or summing ("sum", factorized views)."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    value = 1.0 / num_views if reduction == "mean" else 1.0
    return torch.full((batch, num_views), value, device=like.device, dtype=torch.float32)


def weighted_sum(estimates: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``sum_k weights[b, k] * estimates[k, b]`` for estimates ``(N, B, ...)`` and weights ``(B, N)``."""
    shape = weights.T.shape + (1,) * (estimates.dim() - 2)
    return (weights.T.reshape(shape).to(estimates.dtype) * estimates).sum(0)


def combine_estimates(
    estimates: torch.Tensor,
    weights: torch.Tensor | None = None,
    reduction: str = "mean",
    noise_scale: torch.Tensor | None = None,
    noise_channels: int | None = None,
) -> torch.Tensor:
    """One noise estimate ``(B, C, H, W)`` from per-view estimates ``(N, B, C, H, W)``.

    Args:
        weights: ``(B, N)`` per-sample view weights (balancing); ``None`` means uniform by `reduction`.
        noise_scale: ``(B,)`` factor applied to the noise channels only (variance rectification).
        noise_channels: leading channels that are noise; the rest (learned variance) are not rescaled.
    """
    if estimates.shape[0] == 1 and weights is None and noise_scale is None:
        # A single view is passed through untouched, so that the single-view case is bit-identical to
        # the plain diffusers pipeline (a mean over one element may not be, in low precision).
        return estimates[0]
    if weights is None:
        combined = estimates.mean(0) if reduction == "mean" else estimates.sum(0)
    else:
        combined = weighted_sum(estimates, weights)
    if noise_scale is not None:
        channels = combined.shape[1] if noise_channels is None else noise_channels
        scale = noise_scale.to(combined.dtype).reshape(-1, *([1] * (combined.dim() - 1)))
        combined = torch.cat([combined[:, :channels] * scale, combined[:, channels:]], dim=1)
    return combined
