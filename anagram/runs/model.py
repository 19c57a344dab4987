"""A loaded model: its pipeline (and DeepFloyd IF's upscaler), loaded once, run for any request on it.

`LoadedModel.load` resolves a built-in name, folder or hub id and loads the weights; `generate` runs a
`Request` for some seeds (every sample has its own seed, so any single sample can be regenerated from
its record alone); `record` and `save_sample` turn a result into the sample-folder format of
`anagram.outputs.records`. This is what `anagram generate`, `anagram batch` and the web app run.
"""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ..outputs.records import SampleRecord, write_sample
from ..method.scorers import check_scorer_available, resolve_scorer, scorer_label
from ..pipelines.loading import (
    DEFAULT_UPSCALER, ModelSource, hub_reachable, load_pipeline, load_upscaler, locate, parse_dtype,
    read_call_defaults,
)
from ..pipelines.vocabulary import UnknownWordWarning, known_words, prompt_warnings
from ..views import PIXEL
from .request import Request, sample_name

FALLBACK_DEFAULTS = {"AnagramPipeline": (50, 7.5), "StableDiffusionPipeline": (50, 7.5), "IFPipeline": (30, 10.0)}
VERSIONED_PACKAGES = ("anagram", "torch", "diffusers", "transformers", "accelerate", "safetensors")


@dataclass
class Sample:
    """One generated anagram: its seed, image, rendering under every view, and the prompts as encoded."""

    seed: int
    image: Any
    views: list[Any]
    prompts: list[str]


COLOUR_VIEWS = ("grayscale", "color")


def model_defaults(source: ModelSource) -> tuple[int, float]:
    """Steps and guidance the model's authors recommend (``anagram_defaults.json``), or the usual ones."""
    declared = read_call_defaults(source.location) if source.is_folder else None
    return declared or FALLBACK_DEFAULTS.get(source.class_name, (50, 7.5))


def check_device(device: str | None) -> str:
    """The device to run on (default: cuda if available, else cpu); ValueError saying what to do when
    the device named is not there (before any model loads)."""
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(f"unknown device {device!r}: use cpu, cuda, cuda:1 or mps") from None
    if parsed.type == "cuda":
        if torch.version.cuda is None and not torch.cuda.is_available():
            raise ValueError(f"--device {device}: this PyTorch ({torch.__version__}) is a CPU-only build. Install a "
                             "CUDA build of torch (see https://pytorch.org/get-started/locally/) or use --device cpu")
        if not torch.cuda.is_available():
            raise ValueError(f"--device {device}: PyTorch sees no CUDA GPU on this machine (driver missing, or "
                             "CUDA_VISIBLE_DEVICES hides it); use --device cpu")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ValueError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA GPU(s) "
                             f"(cuda:0..cuda:{torch.cuda.device_count() - 1})")
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {device}: Apple's MPS is not available here; use --device cpu")
    return device


def dtype_warning(dtype: str, device: str | torch.device | None) -> str | None:
    """One sentence on what fp16 on a CPU does (it runs, far slower than fp32), else None."""
    if parse_dtype(dtype) != torch.float16 or torch.device(device or "cpu").type != "cpu":
        return None
    return ("fp16 on a CPU runs, but PyTorch has no fast half-precision CPU kernels: it is many times slower "
            "than fp32 (the digits model: about 16 s instead of 1 s per batch) and rounds more; use fp32 or bf16 "
            "on a CPU, fp16 on a GPU")


def package_versions() -> dict[str, str]:
    versions = {}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


class LoadedModel:
    """A model's pipeline(s) in memory; reused for every request that names the same model."""

    def __init__(self, pipe, source: ModelSource, upscaler=None, upscaler_source: ModelSource | None = None):
        self.pipe, self.source = pipe, source
        self.upscaler, self.upscaler_source = upscaler, upscaler_source
        self.default_steps, self.default_guidance = model_defaults(source)

    @classmethod
    def load(cls, model: str = "digits", *, revision: str | None = None, dtype: str = "fp32",
             upscaler: str | None = None, device: str | torch.device | None = None,
             cpu_offload: bool = False) -> LoadedModel:
        """Load a model (and, for DeepFloyd IF, its stage II unless ``upscaler="none"``).

        ``cpu_offload`` uses accelerate's model CPU offload onto ``device`` (a GPU); otherwise the
        pipelines move to ``device``. `anagram.pipelines.loading.ModelLoadError` says what to do when
        the model cannot be loaded.
        """
        source = locate(model, revision)
        torch_dtype = parse_dtype(dtype)
        with _quiet_diffusers_device_warnings():  # fp16 on CPU: `dtype_warning` says it once, plainly
            pipe = load_pipeline(source, torch_dtype)
            stage_two = stage_two_source = None
            if type(pipe).__name__ == "IFAnagramPipeline" and (upscaler or "") != "none":
                stage_two_source = locate(upscaler or DEFAULT_UPSCALER)
                stage_two = load_upscaler(stage_two_source, pipe, torch_dtype)
            for loaded in filter(None, (pipe, stage_two)):
                loaded.set_progress_bar_config(disable=True)
                if cpu_offload:
                    loaded.enable_model_cpu_offload(**({"device": device} if device is not None else {}))
                elif device is not None:
                    loaded.to(device)
        return cls(pipe, source, stage_two, stage_two_source)

    @classmethod
    def for_request(cls, request: Request, **options) -> LoadedModel:
        """The model a request names, loaded with the request's revision, dtype and upscaler."""
        return cls.load(request.model, revision=request.revision, dtype=request.dtype, upscaler=request.upscaler,
                        **options)

    # -- checking -------------------------------------------------------------------------------------

    def trained_size(self) -> int:
        """The side the model was trained at (its default sample size, in pixels)."""
        return int(min(self.pipe.default_size()))

    def warnings(self, request: Request) -> list[str]:
        """What is likely to go wrong with `request` on this model, said before sampling: words the
        model cannot read, a size it was not trained at, colour views on a one-channel model."""
        found = []
        tokenizer = getattr(self.pipe, "tokenizer", None)
        if tokenizer is not None:
            found += prompt_warnings(tokenizer, self.pipe_prompts(request), self.source.name,
                                     getattr(self.pipe, "text_encoder", None))
        trained = self.trained_size()
        if request.size is not None and self.upscaler is not None:
            found.append(f"--size is not used with an upscaler: stage I makes {trained} px images and stage II "
                         "upscales them")
        elif request.size is not None and request.size != trained:
            found.append(f"the model '{self.source.name}' was trained at {trained} px; at {request.size} px it "
                         "usually draws scribbles or repeats (leave --size out for its own size)")
        channels = self.pipe.unet.config.in_channels
        if self.pipe.sample_space == PIXEL and channels == 1:
            colour = [v.name for v in request.views if v.name in COLOUR_VIEWS]
            if colour:
                found.append(f"view(s) {', '.join(colour)} on the one-channel (grey) model '{self.source.name}': "
                             "a grey image has no colour, so 'color' shows a flat grey and 'grayscale' the whole "
                             "image; use colour views with an RGB model")
        return found

    def scorer(self, request: Request):
        """The balancing scorer `request` runs with on this model (`anagram.method.scorers.resolve_scorer`:
        an explicit one, else the model's declared one, else CLIP by hub id), or None without balancing."""
        if request.method is None or not request.method.balance:
            return None
        return resolve_scorer(request.method.scorer, getattr(self.pipe, "declared_scorer", None))

    def check_scorer(self, request: Request) -> str | None:
        """Before sampling: `anagram.method.scorers.ScorerError` when the scorer is a hub CLIP that cannot
        be had (offline and not cached), saying what to pass instead; a note when it will be downloaded."""
        return check_scorer_available(self.scorer(request), hub_reachable=hub_reachable)

    def pipe_prompts(self, request: Request) -> list[str]:
        """The prompts as the text encoder reads them (style prefix included)."""
        from ..pipelines.inputs import resolve_prompts

        return resolve_prompts(list(request.prompts), request.views, request.style)

    # -- running --------------------------------------------------------------------------------------

    def settings(self, request: Request) -> tuple[int, float]:
        """The steps and guidance a request runs with: its own, else the model's declared defaults."""
        steps = request.steps or self.default_steps
        guidance = request.guidance_scale if request.guidance_scale is not None else self.default_guidance
        return steps, guidance

    def total_steps(self, request: Request, num_calls: int) -> int:
        """Denoising steps of `num_calls` `generate` calls (each denoises its seeds together)."""
        steps, _ = self.settings(request)
        upscale_steps = (request.upscaler_steps or steps) if self.upscaler else 0
        return num_calls * (steps + upscale_steps)

    def generate(self, request: Request, seeds: Sequence[int], on_step: Callable[[], None] | None = None) -> list[Sample]:
        """The anagrams of `request` for `seeds`, denoised together; ``on_step()`` after every step."""
        steps, guidance = self.settings(request)
        callback = None
        if on_step is not None:
            def callback(pipe, i, t, tensors):
                on_step()
                return {}
        common = dict(views=list(request.views), style=request.style, negative_prompt=request.negative_prompt,
                      guidance_scale=guidance, callback_on_step_end=callback)
        size = dict(height=request.size, width=request.size) if request.size and not self.upscaler else {}
        generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]
        with warnings.catch_warnings():  # the callers said these already (`warnings`), in their own words
            warnings.simplefilter("ignore", UnknownWordWarning)
            result = self.pipe(list(request.prompts), num_inference_steps=steps, num_images_per_prompt=len(seeds),
                               generator=generators, method=request.method,
                               share_unconditional=request.share_unconditional,
                               output_type="pt" if self.upscaler else "pil", **size, **common)
        if self.upscaler is not None:
            result = self.upscaler(list(request.prompts), image=result.images, generator=generators,
                                   num_inference_steps=request.upscaler_steps or steps,
                                   method=None, output_type="pil", **common)
        return [Sample(int(seed), result.images[b], result.views[b], result.prompts) for b, seed in enumerate(seeds)]

    # -- recording ------------------------------------------------------------------------------------

    def record(self, request: Request, sample: Sample) -> SampleRecord:
        """The record that reproduces `sample` (`anagram generate --from-json`)."""
        steps, guidance = self.settings(request)
        scheduler = self.pipe.scheduler
        return SampleRecord(
            prompts=list(request.prompts), style=request.style, negative_prompt=request.negative_prompt,
            full_prompts=list(sample.prompts), views=request.view_configs(), seed=sample.seed,
            num_inference_steps=steps, guidance_scale=guidance, size=request.size, dtype=request.dtype,
            share_unconditional=request.share_unconditional, method=request.method_record(),
            scorer=None if self.scorer(request) is None else scorer_label(self.scorer(request)),
            model=self.source.record(),
            scheduler={"class": type(scheduler).__name__, "config": dict(scheduler.config)},
            upscaler=self.upscaler_source.record() if self.upscaler else None,
            upscaler_steps=request.upscaler_steps, versions=package_versions(),
        )

    def save_sample(self, out_dir: str | Path, request: Request, sample: Sample, stem: str | None = None) -> dict:
        """Write `sample` into `out_dir` in the sample-folder format (the JSON record last); its files."""
        record = self.record(request, sample)
        return write_sample(out_dir, stem or sample_name(request, sample.seed), sample.image, sample.views, record)


@contextmanager
def _quiet_diffusers_device_warnings():
    """diffusers warns (twice) that an fp16 pipeline "cannot run" on a CPU, then runs it; the faces say
    what really happens once (`dtype_warning`). Other diffusers errors still show."""
    logger = logging.getLogger("diffusers.pipelines.pipeline_utils")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


__all__ = ["FALLBACK_DEFAULTS", "LoadedModel", "Sample", "check_device", "dtype_warning", "known_words",
           "model_defaults", "package_versions", "prompt_warnings"]
