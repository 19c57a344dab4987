"""The output dataclass of the anagram pipelines."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from diffusers.utils import BaseOutput


@dataclass
class AnagramPipelineOutput(BaseOutput):
    """Images and, for each image, its rendering under every view.

    Args:
        images: the anagrams, as PIL images, a numpy array ``(B, H, W, C)`` or a tensor, by ``output_type``.
        views: ``views[b][k]`` is image ``b`` as seen through view ``k`` (same type as one image).
        prompts: the prompt of each view, after the style prefix was applied.
        nsfw_content_detected: per image, when a safety checker ran.
    """

    images: Any
    views: list[list[Any]]
    prompts: list[str]
    nsfw_content_detected: list[bool] | None = None
