"""Noise vector balancing (method spec §3): give lagging views more weight.

Each view is a task with a completion score ``c_k`` in (0, 1] (how well view k of the current
sample matches its prompt). The views' guided noise estimates are combined with

    alpha_k = c_k^-(1 + i/n) / sum_j c_j^-(1 + i/n)

where ``i`` is the step index and ``n`` the number of steps, so the exponent grows from 1 to
almost 2 and the re-weighting sharpens along the trajectory. The weights multiply the whole
guided noise ``e_k`` (and the learned-variance channels), at every step.
"""

from __future__ import annotations

import torch

__all__ = ["balance_exponent", "balance_weights"]


def balance_exponent(step_index: int, num_steps: int) -> float:
    """The exponent ``1 + i/n`` of step ``i`` out of ``n``."""
    if num_steps <= 0:
        raise ValueError(f"num_steps must be positive, got {num_steps}")
    if not 0 <= step_index <= num_steps:
        raise ValueError(f"step_index must be in [0, {num_steps}], got {step_index}")
    return 1.0 + step_index / num_steps


def balance_weights(scores: torch.Tensor, step_index: int, num_steps: int, eps: float = 1e-4) -> torch.Tensor:
    """Balancing weights ``alpha`` for completion ``scores`` of shape ``(..., N)`` (we use ``(B, N)``).

    Returns float32 weights of the same shape that sum to 1 over the last dimension; a lower score
    (a lagging view) gets a larger weight. Scores are clamped below at ``eps`` so that a score of
    0, a negative score or NaN (a scorer failure) gives a large but finite weight instead of
    inf/NaN; scores above 1 are left alone (the formula is scale-invariant in the scores).

    Computed in log space as ``softmax(-(1 + i/n) * log c)``: raising scores near ``eps`` to a
    power close to -2 would overflow float16 and lose precision in float32 ratios, the softmax
    does not. Stays on the scores' device with no host synchronisation.
    """
    exponent = balance_exponent(step_index, num_steps)
    # NaN would survive clamp_min; map it (and -inf) to the floor, +inf to a huge finite score.
    c = torch.nan_to_num(scores.float(), nan=eps, posinf=torch.finfo(torch.float32).max, neginf=eps)
    log_c = c.clamp_min(eps).log()
    return torch.softmax(-exponent * log_c, dim=-1)
