"""The call sequence shared by every anagram pipeline (Stable Diffusion, pixel CLIP models, DeepFloyd IF).

Each backend supplies a handful of small methods (how to encode prompts, draw the initial sample, call
its UNet, decode and post-process); `AnagramCallMixin.run_anagram` checks the inputs, runs the shared
multi-view loop of `anagram.sampling` and renders every view of every result.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from .method import resolve_method, strip_concept_marks
from .pipeline_output import AnagramPipelineOutput
from .prompts import resolve_negative, resolve_prompts, resolve_reduction, resolve_views
from .sampling import LoopSpec, denoise
from .views.base import ViewError

OUTPUT_TYPES = ("pil", "np", "pt", "latent")


class AnagramCallMixin:
    """`run_anagram`, parameterised by the backend methods listed in the module docstring."""

    # Backends whose diffusers counterpart fixes the scheduler's begin index (DeepFloyd IF) set this.
    set_scheduler_begin_index = False

    def model_call_kwargs(self) -> dict:
        """Extra keyword arguments of the UNet call (a super-resolution stage adds its noise level)."""
        return {}

    def prepare_conditioning(self, batch, height, width, device, dtype, generator) -> Callable | None:
        """A (sample -> model input) function for stages that condition on an image; None otherwise."""
        return None

    def run_anagram(
        self, *, prompt, views, style, negative_prompt, height, width, num_inference_steps, guidance_scale,
        num_images_per_prompt, eta, generator, sample, output_type, return_dict, reduction, method,
        cross_attention_kwargs, callback_on_step_end, callback_on_step_end_tensor_inputs, encode_kwargs=None,
        share_unconditional=False,
    ):
        # 1. Check every input before any model runs.
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
        if num_inference_steps < 1 or num_images_per_prompt < 1:
            raise ValueError("num_inference_steps and num_images_per_prompt must be at least 1")
        default_height, default_width = self.default_size()
        height, width = height or default_height, width or default_width
        self.check_size(height, width)
        factor = getattr(self, "vae_scale_factor", 1)
        sample_height, sample_width = height // factor, width // factor
        num_prompts = 1 if isinstance(prompt, str) else len(prompt or [])
        views = resolve_views(views, num_prompts, sample_height, sample_width, self.sample_space)
        if factor != 1:  # the views are also rendered on the decoded image
            for view in views:
                problem = view.size_problem(height, width)
                if problem is not None:
                    raise ViewError(f"view {view!r} cannot render the {height}x{width} image: {problem}")
        prompts = resolve_prompts(prompt, views, style)
        negative = resolve_negative(negative_prompt, len(views))
        reduction = resolve_reduction(views, reduction)
        bad_inputs = set(callback_on_step_end_tensor_inputs or ()) - set(self._callback_tensor_inputs)
        if bad_inputs:
            raise ValueError(f"callback_on_step_end_tensor_inputs must be in {self._callback_tensor_inputs}")
        if isinstance(generator, list) and len(generator) != num_images_per_prompt:
            raise ValueError(f"got {len(generator)} generators for {num_images_per_prompt} images: give one per image "
                             "(num_images_per_prompt) or a single generator")
        multitask = resolve_method(method)
        do_cfg = guidance_scale > 1.0
        device = self._execution_device

        # 2. Text, timesteps, initial sample: in the order diffusers draws random numbers.
        # Concept marks (``a [red fox]``) guide anti-segregation; the text encoder sees the plain prompt.
        marked_prompts, prompts = prompts, [strip_concept_marks(p) for p in prompts]
        prompt_embeds, negative_embeds = self.encode_views(
            prompts, negative, num_images_per_prompt, do_cfg, device, **(encode_kwargs or {})
        )
        if do_cfg and share_unconditional:
            if negative is not None and len(set(negative)) > 1:
                raise ValueError("share_unconditional evaluates one unconditional branch for all views: "
                                 "give one negative prompt, not one per view")
            negative_embeds = negative_embeds[:num_images_per_prompt]  # view 0's copy serves every view
        embeddings = torch.cat([negative_embeds, prompt_embeds]) if do_cfg else prompt_embeds
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        if self.set_scheduler_begin_index and hasattr(self.scheduler, "set_begin_index"):
            self.scheduler.set_begin_index(0)
        sample = self.prepare_sample(
            num_images_per_prompt, height, width, embeddings.dtype, device, generator, sample
        )
        model_input = self.prepare_conditioning(
            num_images_per_prompt, height, width, device, embeddings.dtype, generator
        )
        noise_channels = sample.shape[1]
        model = self.make_model_call(embeddings, cross_attention_kwargs)
        spec = LoopSpec(
            scheduler=self.scheduler, timesteps=timesteps, views=views, model=model,
            guidance_scale=guidance_scale, do_classifier_free_guidance=do_cfg, noise_channels=noise_channels,
            reduction=reduction, share_unconditional=share_unconditional,
            learned_variance=self.scheduler.config.get("variance_type") in ("learned", "learned_range"),
            extra_step_kwargs=self.prepare_extra_step_kwargs(generator, eta),
        )
        if model_input is not None:
            spec.model_input = model_input
        if multitask is not None:
            spec.hooks = multitask.hooks(
                pipeline=self, views=views, prompts=marked_prompts, embeddings=embeddings, do_cfg=do_cfg,
                model=model, model_input=spec.model_input, sample_shape=tuple(sample.shape), device=device,
            )

        # 3. The loop.
        with self.progress_bar(total=len(timesteps)) as progress_bar:

            def on_step_end(i: int, t: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
                if callback_on_step_end is not None:
                    available = {"latents": current, "prompt_embeds": prompt_embeds,
                                 "negative_prompt_embeds": negative_embeds}
                    requested = {k: available[k] for k in callback_on_step_end_tensor_inputs}
                    outputs = callback_on_step_end(self, i, t, requested) or {}
                    current = outputs.pop("latents", current)
                progress_bar.update()
                return current

            sample = denoise(spec, sample, on_step_end)

        # 4. Decode, check, render every view.
        if output_type == "latent":
            images, nsfw = sample, None
            rendered = [[view.render(sample[b : b + 1])[0] for view in views] for b in range(sample.shape[0])]
        else:
            decoded = self.decode(sample, generator)
            rendered_tensors = [view.render(decoded) for view in views]
            images, nsfw = self.postprocess(decoded, output_type, device, embeddings.dtype)
            per_view = [self.postprocess_view(t, output_type) for t in rendered_tensors]
            rendered = [[per_view[k][b] for k in range(len(views))] for b in range(sample.shape[0])]
        self.maybe_free_model_hooks()
        if not return_dict:
            return images, rendered, nsfw
        return AnagramPipelineOutput(images=images, views=rendered, prompts=prompts, nsfw_content_detected=nsfw)
