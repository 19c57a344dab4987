"""The anagram pipelines: diffusers `DiffusionPipeline` subclasses over one shared call sequence.

`common` (the call sequence and its backend contract), `stable_diffusion` (`AnagramPipeline`: Stable
Diffusion 1.x/2.x and pixel CLIP-conditioned UNets), `deepfloyd_if` (both IF stages), `output`,
`inputs` (views, prompts and negative prompts resolved before any model runs) and `loading`
(built-in names, folders and hub ids, with one clear message when a model cannot be loaded).

The pipeline classes load on first use (PEP 562), so `inputs` and `loading` can be imported without
diffusers' pipelines and transformers.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "AnagramPipeline": ".stable_diffusion",
    "AnagramPipelineOutput": ".output",
    "IFAnagramPipeline": ".deepfloyd_if",
    "IFSuperResolutionAnagramPipeline": ".deepfloyd_if",
}

__all__ = list(_LAZY)


def _import_quietly(module: str):
    """Import a pipeline module with transformers' import-time warnings silenced: importing diffusers'
    pipelines makes transformers warn that CLIP's image processor falls back to its PIL backend when
    torchvision is absent; anagram never needs torchvision, so that warning is noise here."""
    from transformers.utils import logging as transformers_logging

    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        return importlib.import_module(module, __name__)
    finally:
        transformers_logging.set_verbosity(verbosity)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(_import_quietly(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
