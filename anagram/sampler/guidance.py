"""Views in, one batched model call, views out: the per-view guided noise estimates (spec §2).

This is the backend-agnostic core shared by the Stable Diffusion and DeepFloyd IF pipelines. The
model input of every view and both guidance branches go through the UNet in a single call; the
outputs are brought back with each view's inverse and classifier-free guidance is applied per view.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from ..views.base import View

# (model_input batch, timestep) -> model output batch
ModelCall = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def apply_views(views: Sequence[View], x: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(N*B, C, H, W)``: every view of every sample, view-major."""
    return torch.cat([view.view(x) for view in views])


def invert_views(views: Sequence[View], outputs: torch.Tensor, noise_channels: int) -> torch.Tensor:
    """``(N*B, C', H, W)`` model outputs in each view's frame -> ``(N, B, C', H, W)`` canonical frame."""
    chunks = outputs.chunk(len(views))
    return torch.stack([view.inverse(chunk, noise_channels=noise_channels) for view, chunk in zip(views, chunks)])


def guide(
    uncond: torch.Tensor | None, cond: torch.Tensor, guidance_scale: float, noise_channels: int
) -> torch.Tensor:
    """Classifier-free guidance on the noise channels; learned variance taken from the conditional branch.

    The expression is written exactly as diffusers writes it so that one identity view reproduces the
    plain pipelines bit for bit.
    """
    if uncond is None:
        return cond
    if cond.shape[-3] == noise_channels:
        return uncond + guidance_scale * (cond - uncond)
    uncond_noise = uncond[..., :noise_channels, :, :]
    cond_noise, variance = cond[..., :noise_channels, :, :], cond[..., noise_channels:, :, :]
    return torch.cat([uncond_noise + guidance_scale * (cond_noise - uncond_noise), variance], dim=-3)


def per_view_noise(
    model: ModelCall,
    model_input: torch.Tensor,
    timestep: torch.Tensor,
    views: Sequence[View],
    guidance_scale: float,
    noise_channels: int,
    do_classifier_free_guidance: bool,
    share_unconditional: bool = False,
) -> torch.Tensor:
    """Guided noise estimates ``(N, B, C', H, W)`` of every view, in the canonical frame.

    ``model_input`` is the (scheduler-scaled) model input ``(B, C_in, H, W)``; for a super-resolution
    stage it already holds the conditioning image channels, which the views move together with the
    sample. The batch sent to the model is ``[uncond views..., cond views...]``, each view-major, which
    is the layout diffusers uses for one view. With ``share_unconditional`` the unconditional branch is
    evaluated once, on the untransformed input (batch ``[uncond, cond views...]``), and shared by every
    view: N - 1 fewer model evaluations per step, exact for a model that is equivariant to the views.
    """
    viewed = apply_views(views, model_input)
    if not do_classifier_free_guidance:
        return invert_views(views, model(viewed, timestep), noise_channels)
    if share_unconditional:
        output = model(torch.cat([model_input, viewed]), timestep)
        batch = model_input.shape[0]
        uncond = output[:batch].unsqueeze(0).expand(len(views), *output[:batch].shape)
        cond = output[batch:]
    else:
        output = model(torch.cat([viewed, viewed]), timestep)
        uncond, cond = output.chunk(2)
        uncond = invert_views(views, uncond, noise_channels)
    return guide(uncond, invert_views(views, cond, noise_channels), guidance_scale, noise_channels)
