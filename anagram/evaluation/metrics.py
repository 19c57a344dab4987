"""Visual Anagrams metrics (spec §6): alignment, concealment, their quantiles, success rate.

A sample with N views is judged by a score matrix ``S`` ``(N, N)``: ``S[i, j]`` is how well view i
of the image matches prompt j (CLIP cosine similarity, or a classifier's probability of prompt j's
class on view i). Concealment needs logits: CLIP's ``S / tau`` with its learned temperature, or the
classifier's log-probabilities, so that its softmax is the class distribution restricted to the
prompts.
"""

from __future__ import annotations

import torch

QUANTILES = (0.9, 0.95)


def alignment(scores: torch.Tensor) -> torch.Tensor:
    """``A = min_i S_ii``, the worst view's match with its own prompt: ``(..., N, N) -> (...)``."""
    return scores.diagonal(dim1=-2, dim2=-1).min(-1).values


def concealment(logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """``C = trace(softmax(logits)) / N``, row-wise (each view picks its prompt among the prompts),
    column-wise (each prompt picks its view among the views) and the average of the two."""
    n = logits.shape[-1]
    row = logits.softmax(-1).diagonal(dim1=-2, dim2=-1).sum(-1) / n
    column = logits.softmax(-2).diagonal(dim1=-2, dim2=-1).sum(-1) / n
    return {"row": row, "column": column, "mean": (row + column) / 2}


def success(predicted: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Whether every view is classified as its prompt's class: ``(..., N)`` labels -> ``(...)`` bool."""
    return (predicted == targets).all(-1)


def summarize(values: torch.Tensor) -> dict[str, float]:
    """Mean and the 0.9 / 0.95 quantiles of per-sample values."""
    values = values.double().flatten()
    summary = {"mean": values.mean().item()}
    for q in QUANTILES:
        summary[f"q{int(q * 100)}"] = torch.quantile(values, q).item()
    return summary
