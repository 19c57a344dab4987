"""Noise variance rectification (method spec §4, docs/method.md §4): keep the combined noise at unit variance.

A weighted sum ``sum_k a_k e_k`` of unit-variance noise estimates has variance

    a^T R a = sum_k a_k^2 + 2 sum_{i<j} a_i a_j rho_ij

with ``rho_ij`` their correlation; it is 1 only when the estimates are perfectly correlated (two
independent views averaged with weight 1/2 have variance 1/2). Rectification multiplies the
combination by ``c = 1 / sqrt(a^T R a)``. The variance channels of a learned-variance model are
not rescaled: pass only the noise channels here.

Three estimators of ``rho_ij`` are offered:

* ``"bounded"`` (the default of `anagram.method.MultiTask`): the normalised correlation, clamped to
  ``[0, 1]``. Every view's estimate is an estimate of the same noise in ``x_t``, so their true
  correlation lies between 0 (independent errors) and 1 (identical estimates); a measured negative
  value is the views disagreeing about the picture, not variance to restore. With weights
  ``a_k >= 0`` summing to 1 the quadratic form then lies in ``[sum_k a_k^2, 1]`` and the scale in
  ``[1, 1 / |a|_2]`` (at most sqrt(N) for plain averaging): it never shrinks the noise and never
  multiplies it by more than independence would justify.
* ``"product"`` (the reference formula): the mean of the elementwise product over all D elements
  of a sample, i.e. the correlation assuming zero-mean, unit-variance estimates. It is not
  normalised: guided estimates have a second moment above 1, so it can exceed 1 in size, and when
  the views disagree it goes below -1/2 and the quadratic form below 0, where only the ``eps``
  clamp stops it (a scale of up to ``1/sqrt(eps)`` = 1000: the sample turns to noise).
* ``"correlation"``: the normalised (uncentred) correlation <e_i, e_j> / (|e_i| |e_j|), unclamped
  (in [-1, 1]; anti-correlated estimates still give a large scale).

In every case the diagonal of ``R`` is 1, because the formula uses ``sum_k a_k^2`` (each
estimate is taken to have unit variance). Everything is one batched einsum on the noises' device,
with no per-pair loop and no host sync.
"""

from __future__ import annotations

import torch

__all__ = ["DEFAULT_ESTIMATOR", "ESTIMATORS", "pairwise_correlation", "rectification_scale", "rectify"]

ESTIMATORS = ("bounded", "product", "correlation")
DEFAULT_ESTIMATOR = "bounded"


def pairwise_correlation(noises: torch.Tensor, estimator: str = "product") -> torch.Tensor:
    """Correlation matrix ``(B, N, N)`` (float32) of noise estimates ``noises`` ``(N, B, C, H, W)``."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown correlation estimator {estimator!r}; choose one of {ESTIMATORS}")
    if noises.dim() < 3:
        raise ValueError(f"noises must be (N, B, ...) with per-sample elements, got shape {tuple(noises.shape)}")
    flat = noises.float().flatten(2)  # (N, B, D); float32 so D-long sums of fp16 values stay exact enough
    if estimator == "product":
        return torch.einsum("ibd,jbd->bij", flat, flat) / flat.shape[-1]
    # unit-normalise each estimate; the clamp keeps an all-zero estimate at 0 instead of NaN
    flat = flat / flat.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    correlation = torch.einsum("ibd,jbd->bij", flat, flat)
    return correlation.clamp(0.0, 1.0) if estimator == "bounded" else correlation


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
    scale, not inf (the ``"bounded"`` estimator never gets there: its form is at least |a|^2).
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
