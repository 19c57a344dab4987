"""Noise vector balancing (method spec §3): give lagging views more weight.

Each view is a task with a completion score ``c_k`` in (0, 1] (how well view k of the current
sample matches its prompt). The views' guided noise estimates are combined with

    alpha_k = c_k^-(1 + i/n) / sum_j c_j^-(1 + i/n)

where ``i`` is the step index and ``n`` the number of steps, so the exponent grows from 1 to
almost 2 and the re-weighting sharpens along the trajectory. The weights multiply the whole
guided noise ``e_k`` (and the learned-variance channels), at every step.

Switches change the reference (``MultiTask(balance_strength=..., balance_scores=..., balance_max_weight=...,
balance_start=...)``), each measured against it by ``benchmarks/quality.py``:

* ``strength`` multiplies the exponent: ``s (1 + i/n)`` (1: the reference);
* ``relative_scores`` turns a scorer's matrix ``S[k, j]`` (view k against prompt j) into
  ``c_k = S_kk / sum_j S_kj``: the share of view k's match that goes to its own prompt, so a view
  that reads as another view's prompt lags even when its raw similarity is high (the reference
  uses ``S_kk`` alone);
* ``max_weight`` caps every view's weight (`cap_weights`): a scorer whose score of one view falls to
  the clamp floor (a cosine <= 0) otherwise hands that view the whole noise estimate, dropping the
  other views' prompts for that step;
* ``start`` (in `anagram.method.hooks`) keeps plain averaging on the first ``round(start * n)`` steps,
  where the predicted clean sample the scorer reads is still a blur.
"""

from __future__ import annotations

import torch

__all__ = ["BALANCE_SCORES", "balance_exponent", "balance_weights", "cap_weights", "relative_scores", "score_matrix"]

#: How completion scores are read: ``"raw"`` (the reference, ``S_kk``) or ``"relative"`` (`relative_scores`).
BALANCE_SCORES = ("raw", "relative")


def balance_exponent(step_index: int, num_steps: int, strength: float = 1.0) -> float:
    """The exponent ``strength * (1 + i/n)`` of step ``i`` out of ``n`` (strength 1: the reference)."""
    if num_steps <= 0:
        raise ValueError(f"num_steps must be positive, got {num_steps}")
    if not 0 <= step_index <= num_steps:
        raise ValueError(f"step_index must be in [0, {num_steps}], got {step_index}")
    if not strength > 0:
        raise ValueError(f"the balancing strength must be positive, got {strength}")
    return strength * (1.0 + step_index / num_steps)


def relative_scores(matrix: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """``(B, N)`` scores ``S_kk / sum_j S_kj`` from a score matrix ``(B, N, N)`` (``S[b, k, j]``: view k
    of sample b against prompt j), entries clamped into ``[eps, 1]`` first; in (0, 1]."""
    m = torch.nan_to_num(matrix.float(), nan=eps).clamp(eps, 1.0)
    return m.diagonal(dim1=-2, dim2=-1) / m.sum(-1)


def score_matrix(scorer, inputs) -> torch.Tensor:
    """``(B, N, N)``: ``S[b, k, j]`` the score of view k of sample b against prompt j, from N calls of an
    image scorer with the prompts rotated (call r gives ``S[k, (k + r) mod N]``); ``inputs`` is a
    `anagram.method.scorers.ScoreInputs`."""
    import dataclasses

    prompts = list(inputs.prompts)
    n = len(prompts)
    columns = []
    for r in range(n):
        rotated = prompts[r:] + prompts[:r]
        columns.append(scorer(dataclasses.replace(inputs, prompts=rotated)))  # (B, N): S[k, (k + r) % n]
    shifted = torch.stack(columns, -1)  # (B, N, R): [b, k, r] = S[b, k, (k + r) % n]
    k = torch.arange(n, device=shifted.device)
    index = (k[None, :] - k[:, None]) % n  # matrix[k, j] = shifted[k, (j - k) % n]
    return shifted.gather(-1, index.expand(shifted.shape[0], n, n))


def balance_weights(scores: torch.Tensor, step_index: int, num_steps: int, eps: float = 1e-4,
                    strength: float = 1.0) -> torch.Tensor:
    """Balancing weights ``alpha`` for completion ``scores`` of shape ``(..., N)`` (we use ``(B, N)``).

    Returns float32 weights of the same shape that sum to 1 over the last dimension; a lower score
    (a lagging view) gets a larger weight. Scores are clamped below at ``eps`` so that a score of
    0, a negative score or NaN (a scorer failure) gives a large but finite weight instead of
    inf/NaN; scores above 1 are left alone (the formula is scale-invariant in the scores).

    Computed in log space as ``softmax(-(1 + i/n) * log c)``: raising scores near ``eps`` to a
    power close to -2 would overflow float16 and lose precision in float32 ratios, the softmax
    does not. Stays on the scores' device with no host synchronisation.
    """
    exponent = balance_exponent(step_index, num_steps, strength)
    # NaN would survive clamp_min; map it (and -inf) to the floor, +inf to a huge finite score.
    c = torch.nan_to_num(scores.float(), nan=eps, posinf=torch.finfo(torch.float32).max, neginf=eps)
    log_c = c.clamp_min(eps).log()
    return torch.softmax(-exponent * log_c, dim=-1)


def cap_weights(weights: torch.Tensor, max_weight: float | None) -> torch.Tensor:
    """Weights ``(..., N)`` (summing to 1) mixed with the uniform ``1/N`` just enough that none exceeds
    ``max_weight`` (None: unchanged). The mix keeps the sum 1 and the order of the views; each row gets
    the smallest mixing share ``lam = (max - max_weight) / (max - 1/N)`` that satisfies the cap."""
    if max_weight is None:
        return weights
    n = weights.shape[-1]
    if not 1.0 / n <= max_weight <= 1.0:
        raise ValueError(f"the balancing weight cap must be in [1/N, 1] = [{1.0 / n:.3f}, 1], got {max_weight}")
    top = weights.max(-1, keepdim=True).values
    lam = ((top - max_weight) / (top - 1.0 / n).clamp_min(1e-12)).clamp(0.0, 1.0)
    return (1 - lam) * weights + lam / n
