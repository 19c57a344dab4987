"""FID and KID of a translator (spec §6) in a stated feature space, and the identity guard.

    report = evaluate_translation(pipe_or_callable, test_a, test_b, features="digits")

FID and KID are torchmetrics' (`FrechetInceptionDistance`, `KernelInceptionDistance`) with a
feature network given as a module, so the space is always named in the report:

* ``"digits"``: the testbed's digit classifier (its pooled 96-d features), offline, for the
  project's own grayscale domains;
* a folder: a transformers vision backbone saved with ``save_pretrained`` (safetensors; e.g. a
  DINOv2 or CLIP vision model), its pooled output (or mean token) as features, with the image
  size and mean/std of its ``preprocessor_config.json`` when present;
* ``"inception"`` is refused: the Inception-v3 weights torchmetrics uses (through torch-fidelity)
  ship only as a pickled ``.pth`` file, and anagram never unpickles weights. Convert them to a
  transformers/safetensors folder yourself, or use another backbone folder, and pass it.

KID's subset size is ``min(1000, |fake|, |real|)`` (test sets of ~100 images are smaller than the
usual 1000) and its subsets are drawn from a seeded RNG. The report also gives the same metrics
for the untranslated sources against the targets (a translator that learned something beats this
"do nothing" baseline) and the mean |G(x) - x|: near 0, the generator is copying its input.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .data import Domain, preprocess
from .trainer import IDENTITY_WARNING

__all__ = ["FeatureError", "TranslationReport", "evaluate_translation", "load_features"]


class FeatureError(ValueError):
    """A feature network that cannot be used; the message says which file to provide."""


class DigitFeatures(nn.Module):
    """The testbed classifier's pooled features; input (B, C, H, W) in [0, 1]."""

    def __init__(self):
        super().__init__()
        from ..testbed.classifier import load_classifier

        self.classifier = load_classifier().eval()
        self.num_features = self.classifier.head.in_features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        from ..testbed.classifier import prepare

        x = prepare(images.float(), value_range=(0.0, 1.0))
        return self.classifier.features(x).mean(dim=(2, 3))


class BackboneFeatures(nn.Module):
    """A transformers vision model from a local folder (safetensors only); input in [0, 1]."""

    def __init__(self, folder: Path):
        super().__init__()
        from transformers import AutoModel

        if not any(folder.glob("*.safetensors")):
            raise FeatureError(f"{folder} has no .safetensors weights; save the backbone with save_pretrained "
                               "(safe_serialization=True): anagram never unpickles .bin/.pth weights")
        self.model = AutoModel.from_pretrained(folder, use_safetensors=True, local_files_only=True).eval()
        processor = folder / "preprocessor_config.json"
        settings = json.loads(processor.read_text()) if processor.is_file() else {}
        size = settings.get("crop_size") or settings.get("size") or getattr(self.model.config, "image_size", 224)
        if isinstance(size, dict):
            size = size.get("height") or size.get("shortest_edge") or 224
        self.size = int(size)
        self.register_buffer("mean", torch.tensor(settings.get("image_mean", [0.485, 0.456, 0.406])).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(settings.get("image_std", [0.229, 0.224, 0.225])).view(1, 3, 1, 1))
        with torch.no_grad():
            self.num_features = int(self.forward(torch.zeros(1, 3, self.size, self.size)).shape[-1])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float()
        x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
        x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        output = self.model(pixel_values=(x - self.mean) / self.std)
        pooled = getattr(output, "pooler_output", None)
        if pooled is None:
            pooled = output.last_hidden_state.flatten(2).mean(-1) if output.last_hidden_state.dim() == 4 else \
                output.last_hidden_state.mean(1)
        return pooled.flatten(1)


def load_features(spec: str | Path | nn.Module) -> tuple[nn.Module, str]:
    """The feature network of ``spec`` and the name the report gives its space."""
    if isinstance(spec, nn.Module):
        return spec, type(spec).__name__
    if str(spec) == "digits":
        return DigitFeatures(), "digits (testbed classifier, pooled 96-d)"
    if str(spec) == "inception":
        raise FeatureError("Inception-v3 features are not available: their weights (torch-fidelity's "
                           "pt_inception-2015-12-05-6726825d.pth) are a pickled file and anagram never unpickles "
                           "weights. Pass --features FOLDER with a transformers vision backbone saved as safetensors "
                           "(e.g. a DINOv2 or CLIP vision model saved with save_pretrained), or 'digits' offline")
    folder = Path(spec)
    if not folder.is_dir():
        raise FeatureError(f"feature network {spec!r}: not 'digits' and not a folder; give a local folder holding a "
                           "transformers vision model (config.json + model.safetensors)")
    return BackboneFeatures(folder), f"backbone {folder}"


@dataclass
class TranslationReport:
    features: str
    fid: float
    kid_mean: float
    kid_std: float
    fid_source: float
    kid_source_mean: float
    identity_distance: float
    copying: bool
    n_source: int
    n_target: int
    kid_subset_size: int
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _load(domain: Domain, config, channels: int) -> list[torch.Tensor]:
    return [preprocess(domain.load(i, channels), config, train=False) if config is not None else domain.load(i, channels)
            for i in range(len(domain))]


def evaluate_translation(translate: Callable[[torch.Tensor], torch.Tensor], source: Domain, target: Domain,
                         features: str | Path | nn.Module = "digits", channels: int = 3, config=None,
                         seed: int = 0, batch_size: int = 16, kid_subsets: int = 100) -> TranslationReport:
    """FID / KID of ``translate(A)`` against B, and of A itself (the do-nothing baseline).

    ``translate`` maps a batch ``(B, C, H, W)`` in [-1, 1] to the same (a `TranslationPipeline`'s
    generator, or any callable); ``config`` (a `TranslationConfig`) applies its test-time resizing.
    """
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    if len(source) < 2 or len(target) < 2:
        raise ValueError(f"FID/KID need at least 2 images per domain (source {len(source)}, target {len(target)})")
    network, name = load_features(features)
    network.eval()
    subset = min(1000, len(source), len(target))

    def metrics():
        with warnings.catch_warnings():  # "KID keeps every feature in memory": test sets are small
            warnings.simplefilter("ignore", UserWarning)
            return (FrechetInceptionDistance(feature=network, normalize=True),
                    KernelInceptionDistance(feature=network, subset_size=subset, subsets=kid_subsets, normalize=True))

    fid, kid = metrics()
    fid_src, kid_src = metrics()
    distances = []
    with torch.no_grad():
        reals = _load(target, config, channels)
        for start in range(0, len(reals), batch_size):
            group = reals[start:start + batch_size]
            for real in group:  # one at a time: test images may differ in size
                batch = ((real + 1) / 2)[None]
                for metric in (fid, kid, fid_src, kid_src):
                    metric.update(batch, real=True)
        sources = _load(source, config, channels)
        for x in sources:
            x = x[None]
            y = translate(x).float().clamp(-1, 1)
            distances.append((y - x).abs().mean())
            fid.update((y + 1) / 2, real=False)
            kid.update((y + 1) / 2, real=False)
            fid_src.update((x + 1) / 2, real=False)
            kid_src.update((x + 1) / 2, real=False)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # KID's subsets
            kid_mean, kid_std = kid.compute()
            torch.manual_seed(seed)
            kid_source_mean, _ = kid_src.compute()
        identity = float(torch.stack(distances).mean())
    return TranslationReport(features=name, fid=float(fid.compute()), kid_mean=float(kid_mean), kid_std=float(kid_std),
                             fid_source=float(fid_src.compute()), kid_source_mean=float(kid_source_mean),
                             identity_distance=identity, copying=identity < IDENTITY_WARNING, n_source=len(source),
                             n_target=len(target), kid_subset_size=subset, seed=seed)
