"""What the Generate tab does, apart from the page: the form's values -> a `Request` -> samples on disk.

`GenerateForm` holds the values of the form as the page sends them; `build_request` checks them
and parses them once into a `Request` (the same `Request.build` as `anagram generate`, the method
from the same switches, `method_from_switches`), with one sentence for a mistake. `run` draws the
samples on the pool's model, taking its turn on the pipeline, and writes each one into the output
folder (`results.save`). Progress goes to a callback ``(done, total)``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ..method import method_from_switches
from ..outputs.records import StoredSample
from ..runs.request import Request
from ..views import split_views
from .checks import check_prompts, check_readable
from .models import ModelPool
from .results import save

MAX_SAMPLES = 16
BATCH_SIZE = 4  # samples denoised together, as `anagram generate --batch-size`
MAX_SEED = 2**31 - 1


@dataclass
class GenerateForm:
    """The Generate tab's values. ``views`` are specs (``"jigsaw:4,seed=3"``), one per prompt."""

    prompts: list[str]
    views: list[str]
    style: str = ""
    seed: int = 0
    num_samples: int = 1
    model: str = ""
    steps: int | None = None
    guidance: float | None = None
    negative: str = ""
    method: str = "baseline"
    balance: bool = False
    scorer: str = "auto"  # the model's declared scorer, as `anagram generate --method mtl`
    rectify: str = "none"
    anti_seg: bool = False
    anti_seg_step_size: float | None = None
    anti_seg_fraction: float | None = None
    anti_seg_layers: str = ""
    anti_seg_interval: int | None = None
    share_uncond: bool = False


def random_seed() -> int:
    return random.randint(0, MAX_SEED)


def view_specs(views: Sequence[str] | str | None) -> list[str]:
    """The view specs a picker sends (a list, or one comma-separated text as on the command line)."""
    if isinstance(views, str):
        return split_views(views) or []
    specs: list[str] = []
    for item in views or []:
        specs.extend(split_views(item) or [])
    return specs


def method_of(form: GenerateForm) -> str | dict:
    """The method the switches describe, as `anagram generate` builds it from its options."""
    tuning = {}
    if form.anti_seg:
        tuning = dict(step_size=form.anti_seg_step_size, fraction=form.anti_seg_fraction,
                      layers=form.anti_seg_layers or None, interval=form.anti_seg_interval)
    return method_from_switches(form.method, balance=form.balance, scorer=(form.scorer or None) if form.balance else None,
                                rectify=form.rectify or "none", anti_seg=form.anti_seg, **tuning)


def build_request(form: GenerateForm, pool: ModelPool) -> Request:
    """The request the form describes; ValueError with what to change."""
    views = view_specs(form.views)
    prompts = check_prompts(form.prompts, views)
    model = pool.check(form.model)
    if not 1 <= int(form.num_samples) <= MAX_SAMPLES:
        raise ValueError(f"number of samples must be between 1 and {MAX_SAMPLES}, got {form.num_samples}")
    if form.steps is not None and int(form.steps) < 1:
        raise ValueError(f"steps must be at least 1, got {form.steps}")
    if not 0 <= int(form.seed) <= MAX_SEED:
        raise ValueError(f"the seed must be between 0 and {MAX_SEED}, got {form.seed}")
    return Request.build(prompts, views, method=method_of(form), style=(form.style or "").strip() or None,
                         negative_prompt=(form.negative or "").strip() or None, model=model,
                         steps=int(form.steps) if form.steps else None,
                         guidance_scale=float(form.guidance) if form.guidance is not None else None,
                         dtype=pool.dtype, share_unconditional=bool(form.share_uncond))


def run(request: Request, seeds: Sequence[int], pool: ModelPool, out_dir: Path,
        on_progress: Callable[[int, int], None] | None = None) -> list[StoredSample]:
    """Draw the anagrams of ``request`` for ``seeds`` on the pool's model and write them to ``out_dir``."""
    with pool.using(request.model) as loaded:
        check_readable(loaded.pipe, loaded.pipe_prompts(request), loaded.source.name)
        seeds = [int(seed) for seed in seeds]
        batches = [seeds[start : start + BATCH_SIZE] for start in range(0, len(seeds), BATCH_SIZE)]
        total = loaded.total_steps(request, len(batches))
        done = 0

        def step() -> None:
            nonlocal done
            done += 1
            if on_progress is not None:
                on_progress(done, total)

        stored = []
        for batch in batches:
            for sample in loaded.generate(request, batch, on_step=step):
                stored.append(save(Path(out_dir), loaded, request, sample))
        return stored


__all__ = ["GenerateForm", "MAX_SAMPLES", "build_request", "method_of", "random_seed", "run", "view_specs"]
