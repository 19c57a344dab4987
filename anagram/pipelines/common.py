"""The call sequence shared by every anagram pipeline (Stable Diffusion, pixel CLIP models, DeepFloyd IF).

Each backend supplies the small methods of `AnagramBackend` (how to encode prompts, draw the initial
sample, call its UNet, decode and post-process); `AnagramCallMixin.run_anagram` checks the inputs
(`check_inputs`), runs the shared multi-view loop of `anagram.sampler` and renders every view of
every result.

Nothing a call needs is stored on the pipeline: the call's scheduler (a copy of the pipeline's, set to
this call's timesteps) and its backend-specific inputs (stage II's low-resolution image) travel in an
`AnagramCall`, so one pipeline object can serve several calls at once (a web server's requests) without
mixing them up. Tokenizing takes `TOKENIZER_LOCK` (transformers' tokenizers change their settings per
call). The UNet's attention processors are the one shared, mutable thing left: the multi-task
method installs capture processors for the length of a call, so calls with a method that captures
attention must not overlap on one pipeline (the web app queues them).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import torch

from ..method import MultiTask, resolve_method, strip_concept_marks
from ..method.concepts import TOKENIZER_LOCK
from ..sampler import LoopSpec, ModelCall, denoise
from ..views.base import View, ViewError
from .inputs import resolve_negative, resolve_prompts, resolve_reduction, resolve_views
from .output import AnagramPipelineOutput
from .vocabulary import warn_unreadable_prompts

OUTPUT_TYPES = ("pil", "np", "pt", "latent")


@dataclass
class AnagramCall:
    """What one pipeline call owns.

    Attributes:
        scheduler: this call's scheduler: a copy of the pipeline's, so that concurrent calls with
            different step counts never share timesteps or multistep state.
        device: where the call runs.
        stage_inputs: backend-specific per-call inputs (the super-resolution stage's low-resolution
            image and noise level), or None.
    """

    scheduler: Any
    device: torch.device
    stage_inputs: Any = None


@dataclass
class CheckedInputs:
    """The inputs of a call after `check_inputs`: sizes filled in, views and method parsed."""

    height: int
    width: int
    views: list[View]
    prompts: list[str]  # with the style prefix and any concept marks
    negative: list[str] | None
    reduction: str
    method: MultiTask | None


class AnagramBackend(Protocol):
    """What a backend pipeline provides to `AnagramCallMixin.run_anagram`."""

    sample_space: str  # anagram.views.PIXEL or LATENT
    set_scheduler_begin_index: bool  # DeepFloyd IF fixes the scheduler's begin index, as diffusers does

    def default_size(self) -> tuple[int, int]: ...
    def check_size(self, height: int, width: int) -> None: ...
    def size_multiple(self) -> int: ...
    def encode_views(self, prompts, negative, num_images_per_prompt, do_cfg, device, **kwargs): ...
    def prepare_sample(self, call: AnagramCall, batch, height, width, dtype, generator, sample) -> torch.Tensor: ...
    def prepare_conditioning(self, call: AnagramCall, batch, height, width, dtype, generator) -> Callable | None: ...
    def make_model_call(self, call: AnagramCall, embeddings: torch.Tensor, cross_attention_kwargs) -> ModelCall: ...
    def decode(self, sample: torch.Tensor, generator=None) -> torch.Tensor: ...
    def postprocess(self, image: torch.Tensor, output_type: str, device, dtype) -> tuple[Any, Any]: ...
    def postprocess_view(self, image: torch.Tensor, output_type: str) -> Any: ...


class AnagramCallMixin:
    """`run_anagram` for a diffusers pipeline that implements `AnagramBackend`."""

    set_scheduler_begin_index = False
    # steps and guidance of a call that gives none, unless the model's folder declares its own
    # (``anagram_defaults.json``, read by `from_pretrained`)
    fallback_call_defaults = (50, 7.5)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """diffusers' `from_pretrained`, which also takes the built-in names (``"digits"``) and reads the
        model's declared sampling defaults (``anagram_defaults.json``) for calls that give none, and its
        declared balancing scorer (``declared_scorer``: what ``method="mtl"``'s scorer ``"auto"`` runs;
        None, a CLIP by hub id, when the folder declares none).
        ``torch_dtype`` is passed on under the name the installed diffusers expects."""
        from .loading import builtin_models, dtype_keyword, read_call_defaults, read_declared_scorer

        location = builtin_models().get(str(pretrained_model_name_or_path), pretrained_model_name_or_path)
        if "torch_dtype" in kwargs:
            kwargs[dtype_keyword()] = kwargs.pop("torch_dtype")
        pipe = super().from_pretrained(location, **kwargs)
        pipe.declared_call_defaults = read_call_defaults(location)
        pipe.declared_scorer = read_declared_scorer(location)  # what method="mtl" balances with (scorer "auto")
        return pipe

    def call_defaults(self) -> tuple[int, float]:
        """(steps, guidance) a call without them runs with: the model's declared ones, else the fallback."""
        return getattr(self, "declared_call_defaults", None) or self.fallback_call_defaults

    def prepare_conditioning(self, call, batch, height, width, dtype, generator) -> Callable | None:
        """A (sample -> model input) function for stages that condition on an image; None otherwise."""
        return None

    def new_call(self, stage_inputs: Any = None) -> AnagramCall:
        """A fresh per-call context: its own copy of the scheduler."""
        return AnagramCall(scheduler=copy.deepcopy(self.scheduler), device=self._execution_device,
                           stage_inputs=stage_inputs)

    def check_inputs(self, *, prompt, views, style, negative_prompt, height, width, num_inference_steps,
                     num_images_per_prompt, generator, output_type, reduction, method,
                     callback_on_step_end_tensor_inputs) -> CheckedInputs:
        """Every input checked, and parsed once, before any model runs; a clear error otherwise."""
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
        if num_inference_steps < 1 or num_images_per_prompt < 1:
            raise ValueError("num_inference_steps and num_images_per_prompt must be at least 1")
        default_height, default_width = self.default_size()
        height, width = height or default_height, width or default_width
        self.check_size(height, width)
        factor = getattr(self, "vae_scale_factor", 1)
        num_prompts = 1 if isinstance(prompt, str) else len(prompt or [])
        views = resolve_views(views, num_prompts, height // factor, width // factor, self.sample_space, scale=factor,
                              multiple=max(1, self.size_multiple() // factor))
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
        return CheckedInputs(height, width, views, prompts, negative, reduction, resolve_method(method))

    def run_anagram(
        self, *, prompt, views, style, negative_prompt, height, width, num_inference_steps, guidance_scale,
        num_images_per_prompt, eta, generator, sample, output_type, return_dict, reduction, method,
        cross_attention_kwargs, callback_on_step_end, callback_on_step_end_tensor_inputs, encode_kwargs=None,
        share_unconditional=False, stage_inputs=None,
    ):
        default_steps, default_guidance = self.call_defaults()
        num_inference_steps = default_steps if num_inference_steps is None else num_inference_steps
        guidance_scale = default_guidance if guidance_scale is None else guidance_scale
        checked = self.check_inputs(
            prompt=prompt, views=views, style=style, negative_prompt=negative_prompt, height=height, width=width,
            num_inference_steps=num_inference_steps, num_images_per_prompt=num_images_per_prompt,
            generator=generator, output_type=output_type, reduction=reduction, method=method,
            callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
        )
        warn_unreadable_prompts(self, checked.prompts)  # words a closed vocabulary lacks: said before any step
        call = self.new_call(stage_inputs)
        prompt_embeds, negative_embeds, embeddings = self._embeddings(
            checked, num_images_per_prompt, guidance_scale > 1.0, share_unconditional, call.device, encode_kwargs)
        spec, sample = self._prepare_loop(
            call, checked, embeddings, num_inference_steps, num_images_per_prompt, guidance_scale,
            share_unconditional, generator, eta, sample, cross_attention_kwargs,
        )

        with self.progress_bar(total=len(spec.timesteps)) as progress_bar:

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

        images, rendered, nsfw = self._render(sample, checked.views, output_type, generator, call.device,
                                              embeddings.dtype)
        self.maybe_free_model_hooks()
        if not return_dict:
            return images, rendered, nsfw
        plain_prompts = [strip_concept_marks(p) for p in checked.prompts]
        return AnagramPipelineOutput(images=images, views=rendered, prompts=plain_prompts, nsfw_content_detected=nsfw)

    def _embeddings(self, checked, num_images_per_prompt, do_cfg, share_unconditional, device, encode_kwargs):
        """Prompt embeddings of every view, then the batch the UNet sees: ``[negative..., prompts...]``.

        Concept marks (``a [red fox]``) guide anti-segregation; the text encoder sees the plain prompt.
        """
        prompts = [strip_concept_marks(p) for p in checked.prompts]
        with TOKENIZER_LOCK:
            prompt_embeds, negative_embeds = self.encode_views(
                prompts, checked.negative, num_images_per_prompt, do_cfg, device, **(encode_kwargs or {})
            )
        if do_cfg and share_unconditional:
            if checked.negative is not None and len(set(checked.negative)) > 1:
                raise ValueError("share_unconditional evaluates one unconditional branch for all views: "
                                 "give one negative prompt, not one per view")
            negative_embeds = negative_embeds[:num_images_per_prompt]  # view 0's copy serves every view
        embeddings = torch.cat([negative_embeds, prompt_embeds]) if do_cfg else prompt_embeds
        return prompt_embeds, negative_embeds, embeddings

    def _prepare_loop(self, call, checked, embeddings, num_inference_steps, num_images_per_prompt, guidance_scale,
                      share_unconditional, generator, eta, sample, cross_attention_kwargs):
        """The loop's spec and initial sample: timesteps, noise and conditioning, in the order diffusers
        draws random numbers, and the method's hooks."""
        do_cfg = guidance_scale > 1.0
        scheduler = call.scheduler
        scheduler.set_timesteps(num_inference_steps, device=call.device)
        if self.set_scheduler_begin_index and hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(0)
        dtype = embeddings.dtype
        sample = self.prepare_sample(call, num_images_per_prompt, checked.height, checked.width, dtype, generator,
                                     sample)
        model_input = self.prepare_conditioning(call, num_images_per_prompt, checked.height, checked.width, dtype,
                                                generator)
        model = self.make_model_call(call, embeddings, cross_attention_kwargs)
        spec = LoopSpec(
            scheduler=scheduler, timesteps=scheduler.timesteps, views=checked.views, model=model,
            guidance_scale=guidance_scale, do_classifier_free_guidance=do_cfg, noise_channels=sample.shape[1],
            reduction=checked.reduction, share_unconditional=share_unconditional,
            learned_variance=scheduler.config.get("variance_type") in ("learned", "learned_range"),
            extra_step_kwargs=self.prepare_extra_step_kwargs(generator, eta),
        )
        if model_input is not None:
            spec.model_input = model_input
        if checked.method is not None:
            spec.hooks = checked.method.hooks(
                pipeline=self, call=call, views=checked.views, prompts=checked.prompts, embeddings=embeddings,
                do_cfg=do_cfg, model=model, model_input=spec.model_input, sample_shape=tuple(sample.shape),
            )
        return spec, sample

    def _render(self, sample, views, output_type, generator, device, dtype):
        """Decode, run the safety checker, and render every view of every result."""
        if output_type == "latent":
            rendered = [[view.render(sample[b : b + 1])[0] for view in views] for b in range(sample.shape[0])]
            return sample, rendered, None
        decoded = self.decode(sample, generator)
        rendered_tensors = [view.render(decoded) for view in views]
        images, nsfw = self.postprocess(decoded, output_type, device, dtype)
        per_view = [self.postprocess_view(t, output_type) for t in rendered_tensors]
        rendered = [[per_view[k][b] for k in range(len(views))] for b in range(sample.shape[0])]
        return images, rendered, nsfw
