"""`AnagramPipeline`: multi-view sampling for Stable Diffusion 1.x/2.x and pixel-space CLIP-conditioned UNets.

With a VAE the pipeline samples latents (Stable Diffusion); without one (``vae=None``) it samples pixels
directly, which is how the shipped digits model runs. Prompt encoding, the safety checker and the
scheduler step arguments are diffusers' own (`StableDiffusionPipeline`'s methods), so LoRA, textual
inversion and clip-skip behave exactly as users know them.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from diffusers import AutoencoderKL, DiffusionPipeline, StableDiffusionPipeline, UNet2DConditionModel
from diffusers.configuration_utils import FrozenDict
from diffusers.image_processor import VaeImageProcessor
from diffusers.loaders import StableDiffusionLoraLoaderMixin, TextualInversionLoaderMixin
from diffusers.pipelines.pipeline_utils import StableDiffusionMixin
from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
from diffusers.schedulers import KarrasDiffusionSchedulers
from diffusers.utils.torch_utils import randn_tensor
from transformers import CLIPImageProcessor, CLIPTextModel, CLIPTokenizer

from ..views.base import LATENT, PIXEL
from .common import AnagramCallMixin


def normalise_legacy_scheduler(scheduler) -> None:
    """Fix old Stable Diffusion scheduler configs the way `StableDiffusionPipeline` does, so both sample alike.

    ``steps_offset`` must be 1 and ``clip_sample`` False for Stable Diffusion; clipping the predicted
    sample breaks classifier-free guidance.
    """
    config = dict(scheduler.config)
    fixes = {"steps_offset": 1} if config.get("steps_offset", 1) != 1 else {}
    if config.get("clip_sample", False) is True:
        fixes["clip_sample"] = False
    if fixes:
        scheduler._internal_dict = FrozenDict({**config, **fixes})


class AnagramPipeline(
    AnagramCallMixin, DiffusionPipeline, StableDiffusionMixin, TextualInversionLoaderMixin,
    StableDiffusionLoraLoaderMixin,
):
    """Visual anagrams with Stable Diffusion (latent) or a pixel-space CLIP-conditioned UNet (``vae=None``).

    Load with ``AnagramPipeline.from_pretrained("stable-diffusion-v1-5/stable-diffusion-v1-5")``, a local
    folder, or ``AnagramPipeline.from_pipe(existing_stable_diffusion_pipeline)`` (modules are shared).
    """

    model_cpu_offload_seq = "text_encoder->unet->vae"
    _optional_components = ["vae", "safety_checker", "feature_extractor"]
    _exclude_from_cpu_offload = ["safety_checker"]
    _callback_tensor_inputs = ["latents", "prompt_embeds", "negative_prompt_embeds"]

    # diffusers' own implementations, shared rather than copied.
    encode_prompt = StableDiffusionPipeline.encode_prompt
    run_safety_checker = StableDiffusionPipeline.run_safety_checker
    prepare_extra_step_kwargs = StableDiffusionPipeline.prepare_extra_step_kwargs

    def __init__(
        self,
        unet: UNet2DConditionModel,
        scheduler: KarrasDiffusionSchedulers,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        vae: AutoencoderKL | None = None,
        safety_checker: StableDiffusionSafetyChecker | None = None,
        feature_extractor: CLIPImageProcessor | None = None,
    ):
        super().__init__()
        if vae is not None and scheduler is not None:
            normalise_legacy_scheduler(scheduler)
        if safety_checker is not None and feature_extractor is None:
            raise ValueError("a safety checker needs its feature_extractor; pass both, or safety_checker=None")
        self.register_modules(
            vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
            safety_checker=safety_checker, feature_extractor=feature_extractor,
        )
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1) if vae is not None else 1
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor)

    # -- what the shared call machinery needs to know ------------------------------------------------

    @property
    def sample_space(self) -> str:
        return LATENT if self.vae is not None else PIXEL

    def default_size(self) -> tuple[int, int]:
        size = self.unet.config.sample_size
        height, width = (size, size) if isinstance(size, int) else size
        return height * self.vae_scale_factor, width * self.vae_scale_factor

    def size_multiple(self) -> int:
        """The image sides this model takes are multiples of this (the VAE's factor)."""
        return self.vae_scale_factor

    def check_size(self, height: int, width: int) -> None:
        if height % self.size_multiple() or width % self.size_multiple():
            raise ValueError(
                f"height and width must be multiples of {self.vae_scale_factor} for this model "
                f"(got {height}x{width})"
            )

    def encode_views(self, prompts, negative, num_images_per_prompt, do_cfg, device):
        prompt_embeds, negative_embeds = self.encode_prompt(
            prompts, device, num_images_per_prompt, do_cfg, negative_prompt=negative,
        )
        return prompt_embeds, negative_embeds

    def prepare_sample(self, call, batch, height, width, dtype, generator, latents):
        shape = (batch, self.unet.config.in_channels, height // self.vae_scale_factor, width // self.vae_scale_factor)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=call.device, dtype=dtype)
        else:
            if tuple(latents.shape) != shape:
                raise ValueError(f"latents must have shape {shape}, got {tuple(latents.shape)}")
            latents = latents.to(call.device)
        return latents * call.scheduler.init_noise_sigma

    def make_model_call(self, call, embeddings: torch.Tensor, cross_attention_kwargs) -> Callable:
        def model(batch: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return self.unet(
                batch, t, encoder_hidden_states=embeddings, cross_attention_kwargs=cross_attention_kwargs,
                return_dict=False,
            )[0]

        return model

    def decode(self, sample: torch.Tensor, generator=None) -> torch.Tensor:
        """Sample -> image tensor in [-1, 1]."""
        if self.vae is None:
            return sample
        return self.vae.decode(sample / self.vae.config.scaling_factor, return_dict=False, generator=generator)[0]

    def postprocess(self, image: torch.Tensor, output_type: str, device, dtype) -> tuple[Any, Any]:
        image, nsfw = self.run_safety_checker(image, device, dtype)
        denormalize = [True] * image.shape[0] if nsfw is None else [not flagged for flagged in nsfw]
        return self.image_processor.postprocess(image, output_type=output_type, do_denormalize=denormalize), nsfw

    def postprocess_view(self, image: torch.Tensor, output_type: str) -> Any:
        return self.image_processor.postprocess(image, output_type=output_type)

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        views: list | None = None,
        style: str | None = None,
        negative_prompt: str | list[str] | None = None,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        num_images_per_prompt: int = 1,
        eta: float = 0.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        reduction: str | None = None,
        method: Any = None,
        share_unconditional: bool = False,
        cross_attention_kwargs: dict | None = None,
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ("latents",),
    ):
        """Generate visual anagrams: one prompt per view.

        Args:
            prompt: one prompt per view (the subject of each view when ``style`` is given).
            views: `View` objects, registry names or specs (``"patch_permute:8"``); defaults to
                ``identity`` for one prompt and ``identity, rotate_180`` for two.
            style: a prefix shared by every prompt, e.g. ``"an oil painting of"``.
            negative_prompt: replaces the empty prompt of the unconditional branch (one, or one per view).
            height, width: image size in pixels (default: the model's).
            num_inference_steps, guidance_scale: default: the model's declared defaults (its folder's
                ``anagram_defaults.json``: 30 and 3.0 for the built-in ``digits``), else 50 and 7.5 as
                in `StableDiffusionPipeline`; the same defaults as the ``anagram`` command.
            eta, generator, latents, output_type, return_dict,
            cross_attention_kwargs, callback_on_step_end, callback_on_step_end_tensor_inputs: as in
                `StableDiffusionPipeline`.
            num_images_per_prompt: number of anagrams (each uses every prompt).
            reduction: ``"mean"`` (default) or ``"sum"`` (default for factorized views).
            method: ``None``/``"baseline"`` for plain averaging, ``"mtl"`` for the full multi-task method, or
                an `anagram.method.MultiTask` to switch its components one by one.
            share_unconditional: evaluate the unconditional branch once on the untransformed sample and
                share it between views (N - 1 fewer UNet evaluations per step; approximate).

        Returns:
            `AnagramPipelineOutput` (or a tuple ``(images, views, nsfw)`` when ``return_dict=False``).
        """
        return self.run_anagram(
            prompt=prompt, views=views, style=style, negative_prompt=negative_prompt, height=height,
            width=width, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
            num_images_per_prompt=num_images_per_prompt, eta=eta, generator=generator, sample=latents,
            output_type=output_type, return_dict=return_dict, reduction=reduction, method=method,
            share_unconditional=share_unconditional,
            cross_attention_kwargs=cross_attention_kwargs, callback_on_step_end=callback_on_step_end,
            callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
        )
