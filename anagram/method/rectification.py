"""Noise variance rectification (method spec §4): keep the combined noise at unit variance.

A weighted sum ``sum_k a_k e_k`` of unit-variance noise estimates has variance

    a^T R a = sum_k a_k^2 + 2 sum_{i<j} a_i a_j rho_ij

with ``rho_ij`` their correlation; it is 1 only when the estimates are perfectly correlated (two
independent views averaged with weight 1/2 have variance 1/2). Rectification multiplies the
combination by ``c = 1 / sqrt(a^T R a)``. The variance channels of a learned-variance model are
not rescaled: pass only the noise channels here.

Two estimators of ``rho_ij`` are offered:

* ``"product"`` (the reference): the mean of the elementwise product over all D elements of a
  sample, i.e. the correlation assuming zero-mean, unit-variance estimates;
* ``"correlation"``: the normalised (uncentred) correlation <e_i, e_j> / (|e_i| |e_j|).

In both cases the diagonal of ``R`` is 1, because the formula uses ``sum_k a_k^2`` (each
estimate is taken to have unit variance); the "product" off-diagonal is used as measured (it can
slightly exceed 1 for identical estimates of sample variance above 1), as in the reference.
Everything is one batched einsum on the noises' device, with no per-pair loop and no host sync.
"""

from __future__ import annotations

import torch

__all__ = ["ESTIMATORS", "pairwise_correlation", "rectification_scale", "rectify"]

ESTIMATORS = ("product", "correlation")


def pairwise_correlation(noises: torch.Tensor, estimator: str = "product") -> torch.Tensor:
    """Correlation matrix ``(B, N, N)`` (float32) of noise estimates ``noises`` ``(N, B, C, H, W)``."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown correlation estimator {estimator!r}; choose one of {ESTIMATORS}")
    if noises.dim() < 3:
        raise ValueError(f"noises must be (N, B, ...) with per-sample elements, got shape {tuple(noises.shape)}")
    flat = noises.float().flatten(2)  # (N, B, D); float32 so D-long sums of fp16 values stay exact enough
    if estimator == "correlation":
        # unit-normalise each estimate; the clamp keeps an all-zero estimate at 0 instead of NaN
        flat = flat / flat.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return torch.einsum("ibd,jbd->bij", flat, flat)
    return torch.einsum("ibd,jbd->bij", flat, flat) / flat.shape[-1]


def rectification_scale(
    noises: torch.Tensor,
    weights: torch.Tensor,
    estimator: str = "product",
    eps: float = 1e-6,
) -> torch.Tensor:
    """Scale ``c`` ``(B,)`` (float32) that brings ``sum_k a_k e_k`` back to unit variance.

    ``noises``: ``(N, B, C, H, W)`` noise channels of the N views' guided estimates (already in
    the canonical frame). ``weights``: ``(N,)`` shared or ``(B, N)`` per sample (e.g. balancing
    weights). ``c = 1 / sqrt(a^T R a)`` with ``R`` from `pairwise_correlation` and a unit diagonal;
    the quadratic form is clamped at ``eps`` so anti-correlated estimates give a large finite
    scale, not inf.
    """
    n, b = noises.shape[0], noises.shape[1]
    a = weights.float().to(noises.device)
    if a.dim() == 1:
        a = a.expand(b, -1)
    if a.shape != (b, n):
        raise ValueError(f"weights must be ({n},) or ({b}, {n}), got {tuple(weights.shape)}")
    r = pairwise_correlation(noises, estimator)
    # the formula's sum_k a_k^2 term is a unit diagonal, whatever the estimator measured there
    eye = torch.eye(n, dtype=torch.bool, device=r.device)
    r = r.masked_fill(eye, 1.0)
    quad = torch.einsum("bi,bij,bj->b", a, r, a)
    return quad.clamp_min(eps).rsqrt()


def rectify(noises: torch.Tensor, weights: torch.Tensor, estimator: str = "product") -> torch.Tensor:
    """The rectified combination ``c * sum_k a_k e_k`` ``(B, C, H, W)`` in the noises' dtype."""
    b = noises.shape[1]
    a = weights.float().to(noises.device)
    a = a.expand(b, -1) if a.dim() == 1 else a
    c = rectification_scale(noises, a, estimator)
    combined = torch.einsum("bn,nb...->b...", a, noises.float())
    return (c.view(-1, *([1] * (combined.dim() - 1))) * combined).to(noises.dtype)
