"""Unpaired image-to-image translation: MCDUT, with CUT (and FastCUT) as its control.

Rooms, one concern each (``../shared/spec/translate.md`` in the project is the reference):

* `config` — `TranslationConfig`, the one recipe; presets ``cut``, ``fastcut``, ``mcdut``.
* `networks` — the ResNet generator (a diffusers model, named feature taps, optional DCA), the
  PatchGAN discriminator, projection and domain heads.
* `losses` — PatchNCE, multi-crop negatives and their control, domain consistency, LSGAN.
* `objective` — one iteration's losses from the networks (what the trainer differentiates).
* `data` — unpaired domains (folders or tensors), preprocessing presets, the per-step batches.
* `checkpoint` — the full training state in one safetensors file, written atomically.
* `trainer` — the loop on accelerate (CPU, one GPU, several), resumable exactly.
* `pipeline` — `TranslationPipeline` for inference; `apply` translates files and folders.
* `evaluation` — FID / KID (torchmetrics) in a stated feature space, and the identity guard.
* `keep_views` — translations equivariant to an anagram's views (flips, rotations).
* `digits_task`, `task_evaluation` — the offline task ``digits-to-typeset`` and its measurements.

Nothing here prints: the trainer reports through a callback and returns its result. Imports are
lazy: ``import anagram.translate`` loads neither diffusers nor accelerate.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "TranslationConfig": "anagram.translate.config",
    "preset": "anagram.translate.config",
    "PRESETS": "anagram.translate.config",
    "ResnetGenerator": "anagram.translate.networks",
    "PatchDiscriminator": "anagram.translate.networks",
    "TranslationPipeline": "anagram.translate.pipeline",
    "TranslationPipelineOutput": "anagram.translate.pipeline",
    "train": "anagram.translate.trainer",
    "TrainOptions": "anagram.translate.trainer",
    "evaluate_translation": "anagram.translate.evaluation",
    "translate_keeping_views": "anagram.translate.keep_views",
    "load_task": "anagram.translate.digits_task",
    "evaluate_task": "anagram.translate.task_evaluation",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'anagram.translate' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
