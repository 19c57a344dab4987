"""The multi-view denoising loop shared by every backend (spec §2, with the hooks of §3-§5).

A pipeline prepares the text embeddings, the initial sample and a closure that calls its UNet; this
loop does the rest: views, one batched model call, inverse views, guidance, combination, one
scheduler step, and the optional multi-task additions. It never synchronises with the device: a
non-finite sample is recorded on-device and reported once, after the loop, with the step it
first appeared at.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from .combine import combine_estimates
from .guidance import ModelCall, per_view_noise
from ..views.base import View


class NonFiniteSampleError(FloatingPointError):
    """The sample became NaN or infinite during denoising."""


@dataclass
class LoopSpec:
    """What the loop needs from a pipeline, for one call."""

    scheduler: Any
    timesteps: torch.Tensor
    views: Sequence[View]
    model: ModelCall
    guidance_scale: float
    do_classifier_free_guidance: bool
    noise_channels: int
    reduction: str = "mean"
    share_unconditional: bool = False
    learned_variance: bool = False
    extra_step_kwargs: dict = field(default_factory=dict)
    # (sample) -> model input; a super-resolution stage concatenates its conditioning image here.
    model_input: Callable[[torch.Tensor], torch.Tensor] = lambda sample: sample
    # Optional multi-task additions (`anagram.method.MethodHooks`); None is the baseline sampler.
    hooks: Any = None


def denoise(
    spec: LoopSpec,
    sample: torch.Tensor,
    on_step_end: Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Run the whole multi-view denoising loop and return the final sample.

    ``on_step_end(i, t, sample) -> sample`` runs after every step (callbacks, progress bars).
    """
    scheduler, hooks = spec.scheduler, spec.hooks
    first_bad_step = torch.full((), -1, dtype=torch.long, device=sample.device)
    num_steps = len(spec.timesteps)
    for i, t in enumerate(spec.timesteps):
        model_input = scheduler.scale_model_input(spec.model_input(sample), t)
        model = spec.model if hooks is None else hooks.wrap_model(spec.model, i)
        estimates = per_view_noise(
            model, model_input, t, spec.views, spec.guidance_scale, spec.noise_channels,
            spec.do_classifier_free_guidance, spec.share_unconditional,
        )
        weights = noise_scale = None
        if hooks is not None:
            weights, noise_scale = hooks.weights_and_scale(i, num_steps, t, sample, estimates)
        noise = combine_estimates(estimates, weights, spec.reduction, noise_scale, spec.noise_channels)
        if not spec.learned_variance and noise.shape[1] > spec.noise_channels:
            noise = noise[:, : spec.noise_channels]
        sample = scheduler.step(noise, t, sample, **spec.extra_step_kwargs, return_dict=False)[0]
        if hooks is not None:
            next_t = spec.timesteps[i + 1] if i + 1 < num_steps else None
            sample = hooks.after_step(i, num_steps, next_t, sample)
        first_bad_step = record_non_finite(first_bad_step, sample, i)
        if on_step_end is not None:
            sample = on_step_end(i, t, sample)
    raise_if_non_finite(first_bad_step, num_steps)
    return sample


def record_non_finite(first_bad_step: torch.Tensor, sample: torch.Tensor, step: int) -> torch.Tensor:
    """Remember (on-device, without a sync) the first step whose sample is not finite."""
    bad_now = ~torch.isfinite(sample).all()
    return torch.where((first_bad_step < 0) & bad_now, torch.full_like(first_bad_step, step), first_bad_step)


def raise_if_non_finite(first_bad_step: torch.Tensor, num_steps: int) -> None:
    step = int(first_bad_step)  # the one host sync of the loop, after it
    if step >= 0:
        raise NonFiniteSampleError(
            f"the sample became NaN/inf at denoising step {step + 1} of {num_steps}. In float16 this is "
            "usually an overflow: use torch_dtype=torch.bfloat16 or float32 (CLI: --dtype bf16/fp32); "
            "with a custom view, check that view/inverse keep values finite."
        )
