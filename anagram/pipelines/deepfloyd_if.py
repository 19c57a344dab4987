"""DeepFloyd IF anagram pipelines: stage I (64 px) and stage II super-resolution (64 -> 256 px).

Both stages are pixel models with a T5 text encoder whose UNet predicts noise and a learned variance
(6 channels for 3). Both are multi-view: stage II applies the views to its whole model input (the
noisy sample and the upscaled stage-I image), exactly like stage I. Prompt encoding, caption cleaning,
image preprocessing, the safety checker and the watermark are diffusers' own `IFPipeline` /
`IFSuperResolutionPipeline` methods. As in diffusers, ``output_type="pt"`` returns the raw sample in
[-1, 1] (the form stage II takes as its ``image``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, DiffusionPipeline, IFPipeline, IFSuperResolutionPipeline, UNet2DConditionModel
from diffusers.loaders import StableDiffusionLoraLoaderMixin
from diffusers.pipelines.deepfloyd_if.safety_checker import IFSafetyChecker
from diffusers.pipelines.deepfloyd_if.watermark import IFWatermarker
from diffusers.utils.torch_utils import randn_tensor
from transformers import CLIPImageProcessor, T5EncoderModel, T5Tokenizer

from ..views.base import PIXEL
from .common import AnagramCallMixin


class _IFBackend(AnagramCallMixin, DiffusionPipeline, StableDiffusionLoraLoaderMixin):
    """What both IF stages share: T5 prompts, pixel samples, IF post-processing."""

    model_cpu_offload_seq = "text_encoder->unet"
    _optional_components = ["tokenizer", "text_encoder", "safety_checker", "feature_extractor", "watermarker"]
    _exclude_from_cpu_offload = ["watermarker"]
    _callback_tensor_inputs = ["latents", "prompt_embeds", "negative_prompt_embeds"]
    set_scheduler_begin_index = True
    sample_space = PIXEL

    # diffusers' own implementations, shared rather than copied.
    bad_punct_regex = IFPipeline.bad_punct_regex
    encode_prompt = IFPipeline.encode_prompt
    _text_preprocessing = IFPipeline._text_preprocessing
    _clean_caption = IFPipeline._clean_caption
    run_safety_checker = IFPipeline.run_safety_checker
    prepare_extra_step_kwargs = IFPipeline.prepare_extra_step_kwargs

    def default_size(self) -> tuple[int, int]:
        size = self.unet.config.sample_size
        return (size, size) if isinstance(size, int) else tuple(size)

    def size_multiple(self) -> int:
        """The image sides this UNet takes are multiples of this (one halving per level below the top)."""
        return 2 ** (len(self.unet.config.block_out_channels) - 1)

    def check_size(self, height: int, width: int) -> None:
        levels = self.size_multiple()
        if height % levels or width % levels:
            raise ValueError(f"height and width must be multiples of {levels} for this UNet (got {height}x{width})")

    def encode_views(self, prompts, negative, num_images_per_prompt, do_cfg, device, clean_caption=False):
        return self.encode_prompt(
            prompts, do_cfg, num_images_per_prompt=num_images_per_prompt, device=device,
            negative_prompt=negative, clean_caption=clean_caption,
        )

    def prepare_sample(self, call, batch, height, width, dtype, generator, sample):
        channels = self.noise_channels()
        shape = (batch, channels, height, width)
        if sample is None:
            sample = randn_tensor(shape, generator=generator, device=call.device, dtype=dtype)
        elif tuple(sample.shape) != shape:
            raise ValueError(f"latents must have shape {shape}, got {tuple(sample.shape)}")
        return sample.to(call.device) * call.scheduler.init_noise_sigma

    def model_call_kwargs(self, call, batch: int) -> dict:
        """Extra keyword arguments of the UNet call for a batch of `batch` rows (stage II: its noise level)."""
        return {}

    def make_model_call(self, call, embeddings: torch.Tensor, cross_attention_kwargs) -> Callable:
        def model(batch: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return self.unet(
                batch, t, encoder_hidden_states=embeddings, cross_attention_kwargs=cross_attention_kwargs,
                return_dict=False, **self.model_call_kwargs(call, batch.shape[0]),
            )[0]

        return model

    def decode(self, sample: torch.Tensor, generator=None) -> torch.Tensor:
        return sample

    def postprocess(self, image: torch.Tensor, output_type: str, device, dtype) -> tuple[Any, Any]:
        if output_type == "pt":
            return image, None
        array = (image / 2 + 0.5).clamp(0, 1).cpu().permute(0, 2, 3, 1).float().numpy()
        array, nsfw, _ = self.run_safety_checker(array, device, dtype)
        if output_type == "np":
            return array, nsfw
        pil = self.numpy_to_pil(array)
        if self.watermarker is not None:
            pil = self.watermarker.apply_watermark(pil, self.unet.config.sample_size)
        return pil, nsfw

    def postprocess_view(self, image: torch.Tensor, output_type: str) -> Any:
        if output_type == "pt":
            return image
        array = (image / 2 + 0.5).clamp(0, 1).cpu().permute(0, 2, 3, 1).float().numpy()
        return array if output_type == "np" else self.numpy_to_pil(array)


class IFAnagramPipeline(_IFBackend):
    """Visual anagrams with DeepFloyd IF stage I (``DeepFloyd/IF-I-XL-v1.0``, 64x64 pixels)."""

    def __init__(
        self,
        tokenizer: T5Tokenizer,
        text_encoder: T5EncoderModel,
        unet: UNet2DConditionModel,
        scheduler: DDPMScheduler,
        safety_checker: IFSafetyChecker | None = None,
        feature_extractor: CLIPImageProcessor | None = None,
        watermarker: IFWatermarker | None = None,
    ):
        super().__init__()
        self.register_modules(
            tokenizer=tokenizer, text_encoder=text_encoder, unet=unet, scheduler=scheduler,
            safety_checker=safety_checker, feature_extractor=feature_extractor, watermarker=watermarker,
        )

    def noise_channels(self) -> int:
        return self.unet.config.in_channels

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        views: list | None = None,
        style: str | None = None,
        negative_prompt: str | list[str] | None = None,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = 30,
        guidance_scale: float = 10.0,
        num_images_per_prompt: int = 1,
        eta: float = 0.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        reduction: str | None = None,
        method: Any = None,
        share_unconditional: bool = False,
        clean_caption: bool = False,
        cross_attention_kwargs: dict | None = None,
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ("latents",),
    ):
        """Stage-I anagrams; arguments as `anagram.AnagramPipeline.__call__` (``latents`` is the initial pixel noise)."""
        return self.run_anagram(
            prompt=prompt, views=views, style=style, negative_prompt=negative_prompt, height=height, width=width,
            num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
            num_images_per_prompt=num_images_per_prompt, eta=eta, generator=generator, sample=latents,
            output_type=output_type, return_dict=return_dict, reduction=reduction, method=method,
            share_unconditional=share_unconditional,
            cross_attention_kwargs=cross_attention_kwargs, callback_on_step_end=callback_on_step_end,
            callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
            encode_kwargs={"clean_caption": clean_caption},
        )


@dataclass(frozen=True)
class SuperResolutionInputs:
    """Stage II's per-call inputs (carried by the call, never stored on the shared pipeline)."""

    image: Any  # the stage-I images to upscale
    noise_level: int  # the noise added to the upscaled image, also the UNet's class label
    images_per_input: int  # upscalings of each input image


class IFSuperResolutionAnagramPipeline(_IFBackend):
    """Stage II (``DeepFloyd/IF-II-L-v1.0``): upscales a stage-I anagram, multi-view as well."""

    preprocess_image = IFSuperResolutionPipeline.preprocess_image

    def __init__(
        self,
        tokenizer: T5Tokenizer,
        text_encoder: T5EncoderModel,
        unet: UNet2DConditionModel,
        scheduler: DDPMScheduler,
        image_noising_scheduler: DDPMScheduler,
        safety_checker: IFSafetyChecker | None = None,
        feature_extractor: CLIPImageProcessor | None = None,
        watermarker: IFWatermarker | None = None,
    ):
        super().__init__()
        self.register_modules(
            tokenizer=tokenizer, text_encoder=text_encoder, unet=unet, scheduler=scheduler,
            image_noising_scheduler=image_noising_scheduler, safety_checker=safety_checker,
            feature_extractor=feature_extractor, watermarker=watermarker,
        )

    def noise_channels(self) -> int:
        return self.unet.config.in_channels // 2

    def model_call_kwargs(self, call, batch: int) -> dict:
        return {"class_labels": torch.full((batch,), call.stage_inputs.noise_level, device=call.device)}

    def prepare_conditioning(self, call, batch, height, width, dtype, generator) -> Callable:
        inputs: SuperResolutionInputs = call.stage_inputs
        image = self.preprocess_image(inputs.image, inputs.images_per_input, call.device)
        upscaled = F.interpolate(image, (height, width), mode="bilinear", align_corners=True)
        level = torch.tensor([inputs.noise_level] * upscaled.shape[0], device=upscaled.device)
        noise = randn_tensor(upscaled.shape, generator=generator, device=upscaled.device, dtype=upscaled.dtype)
        upscaled = self.image_noising_scheduler.add_noise(upscaled, noise, timesteps=level)
        # The views move the conditioning image together with the sample: both are pixels of one frame.
        return lambda sample: torch.cat([sample, upscaled], dim=1)

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        image: Any = None,
        views: list | None = None,
        style: str | None = None,
        negative_prompt: str | list[str] | None = None,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = 30,
        guidance_scale: float = 10.0,
        noise_level: int = 250,
        num_images_per_prompt: int = 1,
        eta: float = 0.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        reduction: str | None = None,
        method: Any = None,
        share_unconditional: bool = False,
        clean_caption: bool = False,
        cross_attention_kwargs: dict | None = None,
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ("latents",),
    ):
        """Upscale ``image`` (stage-I output: ``output_type="pt"`` tensor in [-1, 1], PIL or numpy) with
        the same prompts and views that made it; other arguments as `IFAnagramPipeline.__call__`."""
        if image is None:
            raise ValueError("stage II needs the stage-I `image` to upscale")
        # Every input image gets `num_images_per_prompt` upscalings, each guided by every view's prompt.
        inputs = SuperResolutionInputs(image=image, noise_level=noise_level, images_per_input=num_images_per_prompt)
        num_inputs = image.shape[0] if isinstance(image, torch.Tensor) and image.dim() == 4 else (
            len(image) if isinstance(image, list) else 1)
        return self.run_anagram(
            prompt=prompt, views=views, style=style, negative_prompt=negative_prompt, height=height,
            width=width, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
            num_images_per_prompt=num_inputs * num_images_per_prompt, eta=eta, generator=generator,
            sample=latents, output_type=output_type, return_dict=return_dict, reduction=reduction,
            method=method, share_unconditional=share_unconditional,
            cross_attention_kwargs=cross_attention_kwargs,
            callback_on_step_end=callback_on_step_end,
            callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
            encode_kwargs={"clean_caption": clean_caption}, stage_inputs=inputs,
        )
