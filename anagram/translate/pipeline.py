"""`TranslationPipeline`: a trained generator as a diffusers pipeline (inference only).

    pipe = TranslationPipeline.from_pretrained("runs/h2z/model")    # safetensors only
    out = pipe(images)                                             # PIL in, PIL out
    out = pipe(batch, output_type="pt")                            # (B, C, H, W) in [0, 1]

Conventions are diffusers': PIL images, NumPy arrays ``(H, W, C)`` / ``(B, H, W, C)`` in [0, 1]
(uint8 in [0, 255] too), tensors ``(C, H, W)`` / ``(B, C, H, W)`` in [0, 1]. Images are converted
to the generator's channel count (1: grayscale, 3: RGB). Any size works: the generator takes
sides that are multiples of 4 and at least 8, so other sizes are reflection-padded up to the next
such size and the result is cropped back (``size_rule="pad"``), or refused with a message
(``size_rule="refuse"``). Images of one size are batched together.

``save_pretrained`` writes ``model_index.json``, ``generator/`` (config + safetensors) and
``translation.json`` (the training config and the record of the run, `record`) into a temporary
folder renamed into place, so a reader never sees half a model.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput
from diffusers.utils import logging as diffusers_logging
from PIL import Image

from .data import image_to_tensor
from .networks import MIN_SIZE, SIZE_MULTIPLE, ResnetGenerator

RECORD_FILE = "translation.json"

__all__ = ["RECORD_FILE", "SizeError", "TranslationPipeline", "TranslationPipelineOutput", "padded_size"]


class SizeError(ValueError):
    """An image size the generator cannot take, with ``size_rule="refuse"``."""


@dataclass
class TranslationPipelineOutput(BaseOutput):
    """``images``: PIL images, a NumPy array ``(B, H, W, C)`` or a tensor ``(B, C, H, W)`` in [0, 1]."""

    images: Any


def padded_size(side: int) -> int:
    """The smallest side >= ``side`` the generator takes."""
    return max(MIN_SIZE, -(-side // SIZE_MULTIPLE) * SIZE_MULTIPLE)


def _as_tensors(images: Any, channels: int) -> list[torch.Tensor]:
    """Inputs as a list of ``(C, H, W)`` tensors in [-1, 1]."""
    if isinstance(images, (Image.Image, np.ndarray, torch.Tensor)) and not (
            isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim == 4):
        images = [images]
    out = []
    for image in images:
        if isinstance(image, Image.Image):
            out.append(image_to_tensor(image, channels))
            continue
        if isinstance(image, np.ndarray):
            array = image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32)
            array = array[..., None] if array.ndim == 2 else array
            tensor = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)
        elif isinstance(image, torch.Tensor):
            tensor = image.detach().float().cpu()
            tensor = tensor[None] if tensor.dim() == 2 else tensor
        else:
            raise TypeError(f"cannot translate a {type(image).__name__}: give PIL images, arrays or tensors")
        if tensor.dim() != 3 or tensor.shape[0] not in (1, 3, 4):
            raise ValueError(f"an image must be (C, H, W) / (H, W, C) with 1, 3 or 4 channels, got {tuple(tensor.shape)}")
        tensor = tensor[:3]
        if tensor.shape[0] != channels:
            tensor = (tensor.expand(3, -1, -1) if channels == 3 else
                      (tensor * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(0, keepdim=True))
        out.append(tensor.clamp(0, 1) * 2 - 1)
    return out


class TranslationPipeline(DiffusionPipeline):
    """Holds a `ResnetGenerator`; ``__call__(images)`` translates them from domain A to domain B."""

    model_cpu_offload_seq = "generator"

    def __init__(self, generator: ResnetGenerator):
        super().__init__()
        self.register_modules(generator=generator)
        self.record: dict[str, Any] = {}

    # ------------------------------------------------------------------ saving and loading
    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs) -> None:
        target = Path(save_directory)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        try:
            super().save_pretrained(staging, safe_serialization=True, **kwargs)
            (staging / RECORD_FILE).write_text(json.dumps(self.record, indent=2) + "\n")
            old = None
            if target.exists():
                old = target.with_name(f".{target.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(target, old)
            os.replace(staging, target)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs) -> "TranslationPipeline":
        path = Path(pretrained_model_name_or_path)
        if path.is_dir() and not (path / "model_index.json").is_file():
            raise FileNotFoundError(f"{path} is not a translation model folder (no model_index.json); give the "
                                    "model/ folder of a training run, or the run folder itself")
        kwargs.setdefault("use_safetensors", True)  # never unpickle weights
        was_enabled = diffusers_logging.is_progress_bar_enabled()
        diffusers_logging.disable_progress_bar()  # an engine draws nothing; one component loads in no time
        try:
            pipe = super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        finally:
            if was_enabled:
                diffusers_logging.enable_progress_bar()
        if not isinstance(pipe, TranslationPipeline):
            raise TypeError(f"{pretrained_model_name_or_path} holds a {type(pipe).__name__}, not a TranslationPipeline")
        record = path / RECORD_FILE
        pipe.record = json.loads(record.read_text()) if record.is_file() else {}
        return pipe

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def __call__(self, images: Any, output_type: str = "pil", batch_size: int = 8,
                 size_rule: str = "pad") -> TranslationPipelineOutput:
        if output_type not in ("pil", "np", "pt"):
            raise ValueError(f"output_type must be 'pil', 'np' or 'pt', got {output_type!r}")
        if size_rule not in ("pad", "refuse"):
            raise ValueError(f"size_rule must be 'pad' or 'refuse', got {size_rule!r}")
        generator = self.generator
        generator.eval()
        tensors = _as_tensors(images, generator.config.in_channels)
        results: list[torch.Tensor | None] = [None] * len(tensors)
        by_size: dict[tuple[int, int], list[int]] = {}
        for index, tensor in enumerate(tensors):
            by_size.setdefault(tuple(tensor.shape[-2:]), []).append(index)
        parameter = next(generator.parameters())
        for (height, width), indices in by_size.items():
            target = (padded_size(height), padded_size(width))
            if target != (height, width) and size_rule == "refuse":
                raise SizeError(f"an image of {height}x{width} does not fit the generator (sides must be multiples of "
                                f"{SIZE_MULTIPLE}, at least {MIN_SIZE}); resize it, or use size_rule='pad'")
            for start in range(0, len(indices), batch_size):
                chunk = indices[start:start + batch_size]
                batch = torch.stack([tensors[i] for i in chunk]).to(parameter.device, parameter.dtype)
                batch = _pad(batch, *target)
                translated = generator(batch)[..., :height, :width].float().cpu()
                for i, image in zip(chunk, translated):
                    results[i] = (image + 1) / 2
        return TranslationPipelineOutput(images=_format(results, output_type))


def _pad(batch: torch.Tensor, height: int, width: int) -> torch.Tensor:
    pad_h, pad_w = height - batch.shape[-2], width - batch.shape[-1]
    if not pad_h and not pad_w:
        return batch
    # reflection needs padding smaller than the side; tiny images are edge-replicated instead
    mode = "reflect" if pad_h < batch.shape[-2] and pad_w < batch.shape[-1] else "replicate"
    return F.pad(batch, (0, pad_w, 0, pad_h), mode=mode)


def _format(images: Sequence[torch.Tensor], output_type: str):
    images = [image.clamp(0, 1) for image in images]
    if output_type == "pt":
        return torch.stack(images) if len({tuple(i.shape) for i in images}) == 1 else images
    arrays = [image.permute(1, 2, 0).numpy() for image in images]
    if output_type == "np":
        return np.stack(arrays) if len({a.shape for a in arrays}) == 1 else arrays
    pictures = []
    for array in arrays:
        array = (array * 255).round().astype(np.uint8)
        pictures.append(Image.fromarray(array[..., 0], mode="L") if array.shape[-1] == 1 else Image.fromarray(array, mode="RGB"))
    return pictures
