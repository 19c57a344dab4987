"""Anti-segregation (method spec §5): pull the views' concept attention maps together.

Concept segregation is each prompt's object being drawn in its own region of the image instead
of one shape that reads both ways. The views' cross-attention maps of their concept tokens, brought
back to the canonical frame, show it: segregated concepts have disjoint maps. The loss pulls the
pairwise overlap of those maps towards a target, and one plain gradient step on the sample (after
the scheduler step, with the maps taken from a UNet pass at the next timestep) applies it.

The functions here are backend-agnostic: the pipeline supplies a closure that runs the UNet on
the conditional branch of the views of a sample inside a `CrossAttentionCapture`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from .attention import CaptureComplete, CrossAttentionCapture

__all__ = [
    "anti_segregation_loss",
    "anti_segregation_step",
    "concept_maps",
    "default_target",
    "evaluate_anti_segregation",
    "overlap",
    "sum_tokens",
]


def default_target(num_views: int) -> float:
    """The reference target overlap ``0.5 - 0.05 (N - 1)``: a little below full coincidence (1/2),
    lower for more views, so the loss pulls maps together without collapsing them."""
    return 0.5 - 0.05 * (num_views - 1)


def overlap(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """``r = sum_p min(a, b) / sum_p (a + b)`` over the last two (spatial) dims: ``(B, h, w)`` -> ``(B,)``.

    1/2 when the maps coincide, 0 when they are disjoint; ``eps`` keeps two empty maps at 0.
    """
    return torch.minimum(a, b).sum((-2, -1)) / (a + b).sum((-2, -1)).clamp_min(eps)


def anti_segregation_loss(maps: torch.Tensor, target: float | None = None, eps: float = 1e-12) -> torch.Tensor:
    """``(B,)`` loss ``mean_{i<j} |target - r_ij|`` of concept maps ``(N, B, h, w)`` in the canonical frame.

    ``target`` defaults to `default_target` (N). All pairs at once by broadcasting (N is small),
    no Python loop; a single view has no pair and a loss of 0.
    """
    n = maps.shape[0]
    if target is None:
        target = default_target(n)
    if n < 2:
        return maps.new_zeros(maps.shape[1])
    r = overlap(maps[:, None], maps[None], eps)  # (N, N, B), symmetric, 1/2 on the diagonal
    upper = torch.ones(n, n, dtype=torch.bool, device=maps.device).triu(1)
    pairs = n * (n - 1) // 2
    return ((target - r).abs() * upper[..., None]).sum((0, 1)) / pairs


def sum_tokens(maps: torch.Tensor, tokens: Sequence[int]) -> torch.Tensor:
    """``maps[..., tokens].sum(-1)``. Consecutive tokens (the usual concept: one word or phrase)
    are a slice, which needs no index tensor copied to the device."""
    tokens = [int(t) for t in tokens]
    if not tokens:
        raise ValueError("a concept needs at least one token index")
    start = tokens[0]
    if tokens == list(range(start, start + len(tokens))):
        return maps[..., start : start + len(tokens)].sum(-1)
    return maps.index_select(-1, torch.tensor(tokens, device=maps.device)).sum(-1)


def concept_maps(
    attn_maps: torch.Tensor,
    token_indices: Sequence[Sequence[int]],
    views: Sequence,
    num_views: int | None = None,
) -> torch.Tensor:
    """Canonical-frame concept maps ``(N, B, h, w)`` from captured maps ``(N*B, h, w, T)``.

    The rows of ``attn_maps`` are view-major (rows ``k*B:(k+1)*B`` are view k, the order of
    ``cat([v.view(x) for v in views])``). Each view's map is the sum over its concept tokens
    ``token_indices[k]``, brought back with ``views[k].inverse_map`` at the map's resolution.
    """
    n = len(views) if num_views is None else num_views
    if len(views) != n or len(token_indices) != n:
        raise ValueError(f"need one view and one token list per view: {n} views, got {len(views)} views and "
                         f"{len(token_indices)} token lists")
    if attn_maps.shape[0] % n:
        raise ValueError(f"{attn_maps.shape[0]} map rows cannot be split into {n} views")
    per_view = attn_maps.unflatten(0, (n, -1))  # (N, B, h, w, T)
    out = []
    for k, (view, tokens) in enumerate(zip(views, token_indices)):
        if not len(tokens):
            raise ValueError(f"view {k} has no concept tokens")
        summed = sum_tokens(per_view[k], tokens)  # (B, h, w)
        out.append(view.inverse_map(summed[:, None])[:, 0])
    return torch.stack(out)


def _loss_at(sample, predict_cond, views, token_indices, capture, target) -> torch.Tensor:
    """Run the closure inside the capture and turn its maps into the ``(B,)`` loss."""
    try:
        if capture.active:
            predict_cond(sample)
        else:
            with capture:
                predict_cond(sample)
    except CaptureComplete:
        pass  # the capture stopped the forward after its last layer: the maps are all there
    maps = concept_maps(capture.maps(), token_indices, views)
    return anti_segregation_loss(maps, target)


def anti_segregation_step(
    sample: torch.Tensor,
    predict_cond: Callable[[torch.Tensor], object],
    views: Sequence,
    token_indices: Sequence[Sequence[int]],
    capture: CrossAttentionCapture,
    step_size: float = 5.0,
    target: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One gradient step ``x <- x - step_size * dL/dx`` on the sample; returns ``(new_sample, loss)``.

    ``predict_cond(x)`` must run the UNet on the conditional branch of the views of ``x``,
    ``cat([v.view(x) for v in views])`` with the views' conditional embeddings (at the timestep
    the maps should come from); its output is ignored, the maps come from ``capture``, which is
    entered here if it is not active already (use ``batch_slice=None`` for it, or the slice of the
    conditional rows if the closure runs a CFG batch). ``loss`` is the ``(B,)`` loss before the
    step, detached. The graph is freed before returning, nothing is synchronised with the host,
    and the new sample has the input's dtype and no gradient history.
    """
    with torch.enable_grad():
        x = sample.detach().requires_grad_(True)
        try:
            loss = _loss_at(x, predict_cond, views, token_indices, capture, target)
            (grad,) = torch.autograd.grad(loss.sum(), x)
        finally:
            capture.reset()  # the maps hold the graph: drop them, also on failure
    new_sample = (sample.detach() - step_size * grad).to(sample.dtype)
    return new_sample, loss.detach()


@torch.no_grad()
def evaluate_anti_segregation(
    sample: torch.Tensor,
    predict_cond: Callable[[torch.Tensor], object],
    views: Sequence,
    token_indices: Sequence[Sequence[int]],
    capture: CrossAttentionCapture,
    target: float | None = None,
) -> torch.Tensor:
    """The ``(B,)`` anti-segregation loss of ``sample`` (no gradient), for tests and metrics."""
    try:
        return _loss_at(sample, predict_cond, views, token_indices, capture, target)
    finally:
        capture.reset()
