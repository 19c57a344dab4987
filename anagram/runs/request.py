"""A generation request: everything that determines a set of anagrams except the seeds.

A `Request` is parsed once, at the boundary (the CLI, a job file, the web app, a record read back):
its views are `View` objects and its method a `MultiTask` (or None for plain averaging) from then on,
so nothing further in parses them again. `request_from_record` reads one back from a sample record.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Sequence

from ..method import MultiTask, resolve_method
from ..outputs.records import SampleRecord
from ..pipelines.inputs import parse_views, resolve_prompts, resolve_reduction
from ..pipelines.loading import builtin_models
from ..views import View

MAX_STEM_SUBJECT = 60
MIN_SIZE, SIZE_MULTIPLE = 8, 8


def check_size(size: int | None) -> None:
    """The one size rule of every request (`anagram generate`, job files, the web app): a whole
    number of pixels, at least 8 and a multiple of 8 (a latent model's VAE divides the side by 8)."""
    if size is None:
        return
    if isinstance(size, bool) or not isinstance(size, int) or size < MIN_SIZE or size % SIZE_MULTIPLE:
        raise ValueError(f"size must be a multiple of {SIZE_MULTIPLE} of at least {MIN_SIZE} pixels, got {size!r}")


@dataclass(frozen=True)
class Request:
    """A parsed, checked request. Build it with `Request.build`, which parses and validates.

    ``steps``/``guidance_scale``/``size`` left None take the model's declared defaults when the
    request runs on a loaded model (`anagram.runs.model.LoadedModel.settings`).
    """

    prompts: tuple[str, ...]
    views: tuple[View, ...]
    method: MultiTask | None = None
    style: str | None = None
    negative_prompt: str | None = None
    model: str = "digits"
    revision: str | None = None
    steps: int | None = None
    guidance_scale: float | None = None
    size: int | None = None
    dtype: str = "fp32"
    share_unconditional: bool = False
    upscaler: str | None = None  # DeepFloyd IF stage II; "none" to skip
    upscaler_steps: int | None = None

    @classmethod
    def build(cls, prompts: Sequence[str], views: Sequence[Any] | None = None, *, method: Any = "baseline",
              **settings: Any) -> Request:
        """Parse views (names, specs, configs or `View` objects; default ``identity`` for one prompt,
        ``identity, rotate_180`` for two) and the method (``"baseline"``, ``"mtl"``, a dict or a
        `MultiTask`), and check that the prompts match the views. Raises ValueError (`ViewError`,
        `ConceptError`...) with a message that says what to do, before any model loads."""
        if isinstance(prompts, str):
            prompts = [prompts]
        prompts = tuple(prompts)
        parsed = tuple(parse_views(list(views) if views else None, len(prompts)))
        resolve_prompts(list(prompts), parsed, settings.get("style"))
        resolve_reduction(parsed, None)  # factorized and spatial views do not mix
        check_size(settings.get("size"))
        return cls(prompts=prompts, views=parsed, method=resolve_method(method), **settings)

    def view_configs(self) -> list[dict]:
        return [view.config() for view in self.views]

    def method_record(self) -> str | dict:
        """The method as records keep it: ``"baseline"``, ``"mtl"`` (the full method as published) or
        the dict of settings."""
        if self.method is None:
            return "baseline"
        return "mtl" if self.method == MultiTask() else self.method.to_dict()

    def method_settings(self) -> str | dict:
        """Every setting of the method (``"baseline"`` or the full dict): what the key hashes, so that
        a change of what ``"mtl"`` means (its anti-segregation maps moved from down+up to down blocks
        in record version 2) gives new keys and never mixes old and new samples in one folder."""
        return "baseline" if self.method is None else self.method.to_dict()

    def key(self) -> str:
        """A short stable hash of everything that changes the images (the seeds aside): prompts as
        typed (case included), views with their parameters, method, style, negative prompt, model,
        revision, steps, guidance, size, dtype, upscaler. Two requests share a key only when they
        make the same images."""
        payload = {
            "prompts": list(self.prompts), "views": self.view_configs(), "style": self.style,
            "negative_prompt": self.negative_prompt, "model": self.model, "revision": self.revision,
            "steps": self.steps, "guidance_scale": self.guidance_scale, "size": self.size,
            "dtype": self.dtype, "method": self.method_settings(), "upscaler": self.upscaler,
            "upscaler_steps": self.upscaler_steps,
        }
        if self.share_unconditional:  # only when on, so the keys of earlier batch folders stay valid
            payload["share_unconditional"] = True
        text = json.dumps(payload, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:10]


def sample_stem(request: Request, seed: int) -> str:
    """The readable part of a sample's file names: its subjects, views and seed."""
    subjects = "_".join(request.prompts)
    slug = re.sub(r"[^a-z0-9]+", "-", subjects.lower()).strip("-")[:MAX_STEM_SUBJECT] or "anagram"
    names = "-".join(view.name for view in request.views)
    return f"{slug}__{names}__seed{seed}"


def sample_name(request: Request, seed: int) -> str:
    """A sample's file stem: the readable part and the request's key, e.g.
    ``a-digit-six-a-digit-nine__identity-rotate_180__seed0__1f0c9a2b7e``. Samples that differ in any
    parameter get different names, so one never replaces another (`anagram batch` names its units so)."""
    return f"{sample_stem(request, seed)}__{request.key()}"


def request_from_record(record: SampleRecord) -> tuple[Request, int]:
    """The request and seed that a sample record describes."""
    model = record.model
    # a built-in model by its name: the folder it was read from moves with every install of the package
    location = model["model"] if model.get("model") in builtin_models() else model["location"]
    request = Request.build(
        record.prompts, record.views, method=record.method, style=record.style,
        negative_prompt=record.negative_prompt, model=location, revision=model.get("revision"),
        steps=record.num_inference_steps, guidance_scale=record.guidance_scale, size=record.size,
        dtype=record.dtype, share_unconditional=record.share_unconditional,
        upscaler=record.upscaler["location"] if record.upscaler else "none", upscaler_steps=record.upscaler_steps,
    )
    return request, int(record.seed)


__all__ = ["Request", "check_size", "request_from_record", "sample_name", "sample_stem"]
