"""The glyph testbed's noise-aware CLIP: a tiny ``transformers.CLIPModel`` that reads glyphs and their prompts.

Balancing (method spec §3) scores each view of the *predicted clean sample* ``x0_hat`` against its
prompt. Early in sampling ``x0_hat`` is a blur, so a CLIP trained on clean renders only would see
images it never met. This one is trained (:mod:`anagram.testbed.train_glyph_clip`) on what the
scorer really sees: x0 predictions of the shipped glyph model (``anagram/models/glyphs``) from
renders noised to random timesteps, with classifier-free guidance at a random scale, plus clean
renders, each paired with its prompt ("a letter q", "a bold serif digit six"...).

The folder ``anagram/models/glyph_clip/`` (:data:`GLYPH_CLIP_DIR`) is what a user's CLIP folder
is: ``config.json`` + ``model.safetensors`` (a ``CLIPModel``, both towers), a ``CLIPTokenizer``
(built in memory from the glyph vocabulary, saved with ``save_pretrained``) and a
``preprocessor_config.json`` (a ``CLIPImageProcessor``: 32x32, mean/std 0.5, so a ``[-1, 1]``
grey image replicated to three channels is what the vision tower reads). ``--scorer
clip:<folder>`` loads it with `anagram.method.scorers.CLIPScorer`, the code path of a real CLIP;
the glyph model declares it as its scorer in ``anagram_defaults.json`` (``"clip:../glyph_clip"``,
relative to the model folder).

This module holds the pieces the trainer and the tests share: the architecture, the tokenizer,
the x0-prediction data (:func:`x0_predictions`) and the ranking accuracy (:func:`ranking_accuracy`).
It is not the glyph judge and never sees the judge's weights or architecture: it is a
transformer pair trained contrastively on image-text pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from . import MODELS_DIR
from . import glyphs

GLYPH_CLIP_DIR = MODELS_DIR / "glyph_clip"
GLYPH_MODEL_DIR = MODELS_DIR / "glyphs"
MAX_LENGTH = 16  # tokens per prompt, BOS and EOS included (the glyph model reads 8; a scorer may read more)
# Timesteps the x0 predictions are made at: the range a DDIM sampler with "leading" spacing visits
# (30 steps: 967 down to 1; 50 steps: up to 981). t = 999 is never sampled (alphas_cumprod 2.4e-9).
T_RANGE = (1, 980)
GUIDANCE_RANGE = (1.0, 5.0)  # classifier-free guidance scales of the x0 predictions (the model's default: 3)
IMAGE_STATS = {"mean": 0.5, "std": 0.5}  # [0, 1] -> [-1, 1]: the vision tower reads what the sampler makes
#: Noise bands of the reported accuracy (timestep ranges).
BANDS = {"high": (750, 967), "mid": (400, 600), "low": (50, 250)}


@dataclass(frozen=True)
class ClipSpec:
    """The tiny CLIP's architecture: a ViT on 8x8 patches of the 32x32 canvas (16 patches; 4x4 patches
    cost 3.3x per training step here) and a text transformer."""

    image_size: int = glyphs.DEFAULT_SIZE
    patch_size: int = 8
    vision_hidden: int = 64
    vision_layers: int = 4
    vision_heads: int = 4
    text_hidden: int = 64
    text_layers: int = 2
    text_heads: int = 2
    projection_dim: int = 64


def canonical_prompts() -> list[str]:
    """One prompt per class in class order ("a letter a" ... "a digit 9"): what the accuracy ranks."""
    from .train_glyphs import glyph_prompt

    return [glyph_prompt(c) for c in glyphs.CLASSES]


def build_tokenizer():
    """A ``CLIPTokenizer`` whose every word of the glyph vocabulary is one token (as the glyph model's)."""
    from .train_glyphs import WORDS
    from .trainer import build_word_tokenizer

    return build_word_tokenizer(WORDS, MAX_LENGTH)


def build_model(tokenizer, spec: ClipSpec = ClipSpec()):
    """A randomly initialised ``CLIPModel`` (both towers) for ``tokenizer``'s vocabulary."""
    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPVisionConfig

    text = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=spec.text_hidden, intermediate_size=4 * spec.text_hidden,
        num_hidden_layers=spec.text_layers, num_attention_heads=spec.text_heads,
        max_position_embeddings=tokenizer.model_max_length, projection_dim=spec.projection_dim,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    vision = CLIPVisionConfig(
        image_size=spec.image_size, patch_size=spec.patch_size, num_channels=3, hidden_size=spec.vision_hidden,
        intermediate_size=4 * spec.vision_hidden, num_hidden_layers=spec.vision_layers,
        num_attention_heads=spec.vision_heads, projection_dim=spec.projection_dim,
    )
    config = CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=spec.projection_dim)
    return CLIPModel(config)


def preprocessor_config(image_size: int = glyphs.DEFAULT_SIZE) -> dict:
    """The ``preprocessor_config.json`` of the folder (a ``CLIPImageProcessor`` at the canvas size)."""
    return {
        "image_processor_type": "CLIPImageProcessor", "processor_class": "CLIPProcessor",
        "do_resize": True, "size": {"shortest_edge": image_size}, "resample": 3,
        "do_center_crop": True, "crop_size": {"height": image_size, "width": image_size},
        "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True, "do_convert_rgb": True,
        "image_mean": [IMAGE_STATS["mean"]] * 3, "image_std": [IMAGE_STATS["std"]] * 3,
    }


def pixel_values(images: torch.Tensor) -> torch.Tensor:
    """Grey images ``(B, 1, S, S)`` in ``[-1, 1]`` -> the vision tower's input ``(B, 3, S, S)``.

    The same numbers as `anagram.method.scorers.CLIPScorer.preprocess` with this folder's
    statistics (clamp to [0, 1] after mapping, replicate to RGB, normalise with 0.5/0.5): the
    tests check that the two agree.
    """
    x = ((images.float() + 1) / 2).clamp(0, 1).expand(-1, 3, -1, -1)
    return (x - IMAGE_STATS["mean"]) / IMAGE_STATS["std"]


# -- x0 predictions of the glyph model -------------------------------------------------------------


@dataclass
class GlyphPairs:
    """Images ``(n, 1, S, S)`` in ``[-1, 1]`` with their labels, prompts and timesteps (0: a clean render)."""

    images: torch.Tensor
    labels: torch.Tensor
    prompts: list[str]
    timesteps: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


def load_glyph_model(path: str | Path = GLYPH_MODEL_DIR):
    """The glyph diffusion model's components (eval mode, safetensors), see `trainer.load_model`."""
    from .trainer import load_model

    model = load_model(path)
    model.unet.requires_grad_(False)
    model.text_encoder.requires_grad_(False)
    return model


def clean_pairs(labels: torch.Tensor, generator: torch.Generator, size: int = glyphs.DEFAULT_SIZE) -> GlyphPairs:
    """Clean renders of ``labels`` with their training prompts (style words of their fonts, no empty prompt)."""
    from .train_glyphs import sample_prompts

    rendered = glyphs.render_batch(labels, generator, size)
    prompts = sample_prompts(rendered.labels, rendered.fonts, generator, dropout=0.0)
    return GlyphPairs(rendered.images, rendered.labels, prompts, torch.zeros(len(labels), dtype=torch.long))


@torch.no_grad()
def x0_predictions(model, labels: torch.Tensor, generator: torch.Generator, t_range: tuple[int, int] = T_RANGE,
                   guidance_range: tuple[float, float] = GUIDANCE_RANGE, batch_size: int = 128) -> GlyphPairs:
    """What the balancing scorer sees: renders of ``labels`` noised to random timesteps, denoised in one
    step by the glyph model with classifier-free guidance (scale uniform in ``guidance_range``) and
    turned into the predicted clean sample (`anagram.method.hooks.predicted_clean`, as the sampler
    does), clamped to ``[-1, 1]``; prompts as in training, conditioned on by the model."""
    from ..method.hooks import predicted_clean
    from .trainer import encode

    scheduler = model.scheduler
    out_images, out_prompts, out_t = [], [], []
    labels = torch.as_tensor(labels, dtype=torch.long)
    for start in range(0, len(labels), batch_size):
        clean = clean_pairs(labels[start : start + batch_size], generator, model.unet.config.sample_size)
        n = len(clean)
        t = torch.randint(t_range[0], t_range[1] + 1, (n,), generator=generator)
        scale = guidance_range[0] + (guidance_range[1] - guidance_range[0]) * torch.rand(n, generator=generator)
        noise = torch.randn(clean.images.shape, generator=generator)
        a = scheduler.alphas_cumprod[t].view(-1, 1, 1, 1).float()
        xt = a.sqrt() * clean.images + (1 - a).sqrt() * noise
        emb = encode(model.text_encoder, model.tokenizer, [""] * n + clean.prompts)
        eps_u, eps_c = model.unet(torch.cat([xt, xt]), torch.cat([t, t]), encoder_hidden_states=emb).sample.chunk(2)
        eps = eps_u + scale.view(-1, 1, 1, 1) * (eps_c - eps_u)
        x0 = torch.stack([predicted_clean(scheduler, xt[i : i + 1], eps[i : i + 1], t[i])[0] for i in range(n)])
        out_images.append(x0.clamp(-1, 1))
        out_prompts += clean.prompts
        out_t.append(t)
    return GlyphPairs(torch.cat(out_images), labels, out_prompts, torch.cat(out_t))


# -- accuracy --------------------------------------------------------------------------------------


@torch.no_grad()
def ranking_accuracy(scorer, images: torch.Tensor, labels: torch.Tensor, prompts: Sequence[str] | None = None) -> dict:
    """How often a `CLIPScorer` ranks each image's own class prompt above the other 35.

    ``images`` ``(n, 1, S, S)`` in ``[-1, 1]``; ``prompts`` one per class (default
    :func:`canonical_prompts`). Returns ``accuracy``, the mean cosine with the own prompt and with
    the others, and the per-class accuracy.
    """
    prompts = list(prompts or canonical_prompts())
    text = scorer.text_embeddings(prompts)
    image = torch.cat([scorer.image_embeddings(images[i : i + 256]) for i in range(0, len(images), 256)])
    sim = image @ text.T.to(image.device)
    labels = torch.as_tensor(labels).to(sim.device)
    correct = (sim.argmax(-1) == labels).float()
    own = sim.gather(1, labels[:, None])[:, 0]
    others = (sim.sum(1) - own) / (sim.shape[1] - 1)
    per_class = {glyphs.CLASSES[c]: float(correct[labels == c].mean()) for c in labels.unique().tolist()}
    return {"accuracy": float(correct.mean()), "n": len(labels), "own_cosine": float(own.mean()),
            "other_cosine": float(others.mean()), "per_class": per_class}


def evaluation_sets(model, seed: int, per_class: int) -> dict[str, GlyphPairs]:
    """Held-out images for the report: clean renders and x0 predictions in each band of :data:`BANDS`
    (guidance at the model's default), ``per_class`` of every class each, drawn from ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(len(glyphs.CLASSES)).repeat(per_class)
    guidance = float(model.defaults.get("guidance_scale", 3.0))
    sets = {"clean": clean_pairs(labels, gen)}
    for band, t_range in BANDS.items():
        sets[band] = x0_predictions(model, labels, gen, t_range=t_range, guidance_range=(guidance, guidance))
    return sets


__all__ = [
    "BANDS", "ClipSpec", "GLYPH_CLIP_DIR", "GLYPH_MODEL_DIR", "GlyphPairs", "MAX_LENGTH", "build_model",
    "build_tokenizer", "canonical_prompts", "clean_pairs", "evaluation_sets", "load_glyph_model", "pixel_values",
    "preprocessor_config", "ranking_accuracy", "x0_predictions",
]
