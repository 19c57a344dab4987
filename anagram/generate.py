"""One generation request, end to end: defaults, seeds, files on disk and the record that reproduces them.

This is what `anagram generate` runs, and it is usable from Python too. Every sample has its own
seed (its own generator), so any single sample can be regenerated from its JSON sidecar alone.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from .io import write_json, write_png
from .loading import ModelSource, load_pipeline, load_upscaler, locate, parse_dtype
from .render import view_strip
from .method import MultiTask
from .prompts import resolve_prompts
from .views import parse_view

RECORD_VERSION = 1
FALLBACK_DEFAULTS = {"AnagramPipeline": (50, 7.5), "StableDiffusionPipeline": (50, 7.5), "IFPipeline": (30, 10.0)}


@dataclass
class Request:
    """Everything that determines a set of anagrams, except the seeds."""

    prompts: list[str]
    views: list[Any] | None = None
    style: str | None = None
    negative_prompt: str | None = None
    model: str = "digits"
    revision: str | None = None
    steps: int | None = None
    guidance_scale: float | None = None
    size: int | None = None
    dtype: str = "fp32"
    method: Any = "baseline"
    share_unconditional: bool = False
    upscaler: str | None = None  # DeepFloyd IF stage II; "none" to skip
    upscaler_steps: int | None = None

    def validate(self) -> None:
        """Fail before any model loads: unknown views, bad specs, prompts that don't match the views."""
        resolve_prompts(self.prompts, [parse_view(c) for c in self.view_configs()], self.style)

    def view_configs(self) -> list[dict]:
        names = self.views or (["identity"] if len(self.prompts) == 1 else ["identity", "rotate_180"])
        return [parse_view(v).config() for v in names]


@dataclass
class Sample:
    seed: int
    image: Any
    views: list[Any]
    prompts: list[str]
    files: dict[str, str] = field(default_factory=dict)


def model_defaults(source: ModelSource) -> tuple[int, float]:
    """Steps and guidance the model's authors recommend (``anagram_defaults.json``), or the usual ones."""
    defaults_file = Path(source.location) / "anagram_defaults.json"
    if source.is_folder and defaults_file.is_file():
        values = json.loads(defaults_file.read_text())
        return int(values["num_inference_steps"]), float(values["guidance_scale"])
    return FALLBACK_DEFAULTS.get(source.class_name, (50, 7.5))


def package_versions() -> dict[str, str]:
    names = ("anagram", "torch", "diffusers", "transformers", "accelerate", "safetensors")
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


class Generator:
    """Loads a request's model(s) once and generates samples for any seeds."""

    def __init__(self, request: Request, cpu_offload: bool = False, device: str | None = None):
        self.request = request
        self.source = locate(request.model, request.revision)
        dtype = parse_dtype(request.dtype)
        self.pipe = load_pipeline(self.source, dtype)
        self.upscaler = None
        if type(self.pipe).__name__ == "IFAnagramPipeline" and (request.upscaler or "") != "none":
            self.upscaler_source = locate(request.upscaler or "DeepFloyd/IF-II-L-v1.0")
            self.upscaler = load_upscaler(self.upscaler_source, self.pipe, dtype)
        for pipe in filter(None, (self.pipe, self.upscaler)):
            pipe.set_progress_bar_config(disable=True)
            if cpu_offload:
                pipe.enable_model_cpu_offload()
            elif device:
                pipe.to(device)
        self.steps, self.guidance = model_defaults(self.source)
        self.steps = request.steps or self.steps
        self.guidance = request.guidance_scale if request.guidance_scale is not None else self.guidance

    def total_steps(self, num_calls: int) -> int:
        """Denoising steps of `num_calls` generator calls (each denoises its seeds together)."""
        upscale_steps = (self.request.upscaler_steps or self.steps) if self.upscaler else 0
        return num_calls * (self.steps + upscale_steps)

    def __call__(self, seeds: Sequence[int], on_step: Callable[[], None] | None = None) -> list[Sample]:
        request = self.request
        views = [parse_view(c) for c in request.view_configs()]
        callback = None
        if on_step is not None:
            def callback(pipe, i, t, tensors):
                on_step()
                return {}
        common = dict(views=views, style=request.style, negative_prompt=request.negative_prompt,
                      guidance_scale=self.guidance, callback_on_step_end=callback)
        size = dict(height=request.size, width=request.size) if request.size and not self.upscaler else {}
        generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]
        result = self.pipe(request.prompts, num_inference_steps=self.steps, num_images_per_prompt=len(seeds),
                           generator=generators, method=request.method,
                           share_unconditional=request.share_unconditional,
                           output_type="pt" if self.upscaler else "pil", **size, **common)
        if self.upscaler is not None:
            result = self.upscaler(request.prompts, image=result.images, generator=generators,
                                   num_inference_steps=request.upscaler_steps or self.steps,
                                   method=None, output_type="pil", **common)
        return [Sample(int(seed), result.images[b], result.views[b], result.prompts) for b, seed in enumerate(seeds)]

    def record(self, sample: Sample) -> dict[str, Any]:
        """The JSON sidecar: enough to reproduce `sample` (`anagram generate --from-json`)."""
        request = self.request
        scheduler = self.pipe.scheduler
        record = {
            "record_version": RECORD_VERSION,
            "prompts": list(request.prompts),
            "style": request.style,
            "negative_prompt": request.negative_prompt,
            "full_prompts": sample.prompts,
            "views": request.view_configs(),
            "seed": sample.seed,
            "num_inference_steps": self.steps,
            "guidance_scale": self.guidance,
            "size": request.size,
            "dtype": request.dtype,
            "share_unconditional": request.share_unconditional,
            "method": request.method.to_dict() if isinstance(request.method, MultiTask) else request.method,
            "model": self.source.record(),
            "scheduler": {"class": type(scheduler).__name__, "config": dict(scheduler.config)},
            "upscaler": self.upscaler_source.record() if self.upscaler else None,
            "upscaler_steps": request.upscaler_steps,
            "versions": package_versions(),
            "files": sample.files,
        }
        return json.loads(json.dumps(record, default=str))


def request_from_record(record: dict) -> tuple[Request, int]:
    """The request and seed that a sidecar JSON describes."""
    if record.get("record_version") != RECORD_VERSION:
        raise ValueError(f"unsupported record version {record.get('record_version')!r} (expected {RECORD_VERSION})")
    model = record["model"]
    request = Request(
        prompts=record["prompts"], views=record["views"], style=record["style"],
        negative_prompt=record["negative_prompt"], model=model["location"], revision=model["revision"],
        steps=record["num_inference_steps"], guidance_scale=record["guidance_scale"], size=record["size"],
        dtype=record["dtype"], method=record["method"], share_unconditional=record["share_unconditional"],
        upscaler=record["upscaler"]["location"] if record["upscaler"] else "none",
        upscaler_steps=record.get("upscaler_steps"),
    )
    return request, int(record["seed"])


def sample_stem(request: Request, seed: int) -> str:
    subjects = "_".join(request.prompts)
    slug = re.sub(r"[^a-z0-9]+", "-", subjects.lower()).strip("-")[:60] or "anagram"
    names = "-".join(c["name"] for c in request.view_configs())
    return f"{slug}__{names}__seed{seed}"


def sample_files(stem: str) -> dict[str, str]:
    return {"image": f"{stem}.png", "views": f"{stem}.views.png", "record": f"{stem}.json"}


def save_sample(out_dir: str | Path, generator: Generator, sample: Sample, stem: str | None = None) -> dict[str, str]:
    """Write image (metadata in a PNG text chunk), views strip and JSON sidecar, each atomically.

    The sidecar is written last: its presence marks the sample complete (resumable batches rely on it).
    """
    out_dir = Path(out_dir)
    sample.files = sample_files(stem or sample_stem(generator.request, sample.seed))
    record = generator.record(sample)
    captions = [f"{config['name']}: {prompt}" for config, prompt in zip(record["views"], sample.prompts)]
    write_png(out_dir / sample.files["views"], view_strip(sample.views, captions))
    write_png(out_dir / sample.files["image"], sample.image, record)
    write_json(out_dir / sample.files["record"], record)
    return sample.files
