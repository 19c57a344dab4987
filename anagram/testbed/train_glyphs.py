"""Train the glyph testbed's text-conditioned pixel diffusion model of typeset letters and digits.

The shipped model at ``anagram/models/glyphs/`` is written, from the repository root, by::

    python -m anagram.testbed.train_glyphs --out anagram/models/glyphs --threads 2

(the defaults of :data:`GLYPH_CONFIG`: see ``training_log.json`` in the folder for the time it
took; the run is bitwise reproducible on the same machine and thread count, and resumes from its
checkpoint ``anagram/models/glyphs.checkpoint`` if interrupted).

Data: glyphs rendered on the fly by :mod:`anagram.testbed.glyphs` (36 classes, 21 fonts, random
scale, position, rotation and stroke weight) on a 32x32 canvas, so a glyph can sit anywhere and
two glyphs fit side by side.

Prompts (the glyph is always the last word, one token): an optional article, the font's style
words (each with probability 0.3), ``letter`` or ``digit``/``number``, then the glyph: "a letter
q", "the bold serif letter q", "a digit 6", "an italic number six"; 10% are ``""`` (the
unconditional branch of classifier-free guidance).

Canvas and attention levels, from measured step times (``benchmarks/glyph_step_time.py``, batch
32, 2 threads): cross-attention at 8x8 only is what fits the hour. Attention at 16x16 roughly
doubles a step for a map that the concept-attention loss can already place on a glyph of 3-7
cells at 8x8 (a glyph is 35-90% of the canvas), and a 48x48 canvas would cost 2.2x per step.

Text conditioning is the digit model's (see :mod:`anagram.testbed.trainer`): zero transformer
layers, so the glyph lives only in its token, and the concept-attention loss puts that token's
attention on the ink. One difference: the letter ``a`` and the article "a" are the same token, so
this encoder has learned position embeddings (the article stands first, the glyph last).
Prompt the letter a as "a letter a", not "a".
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from anagram.testbed import glyphs
from anagram.testbed import trainer
from anagram.testbed.trainer import TrainConfig, UNetSpec, configure

KIND_WORDS = ("letter", "digit", "number")
ARTICLES = ("a", "an", "the")
WORDS = tuple(dict.fromkeys(ARTICLES + KIND_WORDS + glyphs.STYLE_WORDS + glyphs.CLASSES + glyphs.DIGIT_WORDS))
MAX_LENGTH = 8  # BOS + article + up to 3 style words + kind + glyph + EOS
STYLE_PROBABILITY = 0.3
DEFAULT_LETTER_TEMPLATE = "a letter {}"
DEFAULT_DIGIT_TEMPLATE = "a digit {}"

#: The shipped model's configuration (see the module docstring for the choice of attention levels).
GLYPH_UNET = UNetSpec(
    sample_size=glyphs.DEFAULT_SIZE,
    block_out_channels=(32, 64, 96),
    down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
    layers_per_block=1,
    attention_head_dim=(1, 2, 4),
    norm_num_groups=8,
)
GLYPH_CONFIG = TrainConfig(steps=4000, seed=0, batch_size=64, lr=1e-3, warmup=200, ema_decay=0.999,
                           prompt_dropout=0.1, max_shift=0, hidden_size=64, attn_reg=0.05, unet=GLYPH_UNET)

#: Sampling defaults shipped in ``anagram_defaults.json``; ``judge`` and ``scorer`` name the
#: testbed's glyph judge and its noise-aware CLIP (a folder relative to the model folder).
DEFAULTS = {
    "num_inference_steps": 30,
    "guidance_scale": 3.0,
    "prompt_template": DEFAULT_LETTER_TEMPLATE,
    "digit_prompt_template": DEFAULT_DIGIT_TEMPLATE,
    "negative_prompt": "",
    "height": glyphs.DEFAULT_SIZE,
    "width": glyphs.DEFAULT_SIZE,
    "channels": 1,
    "value_range": [-1.0, 1.0],
    "concept": "last word of the prompt: a letter a-z, a digit 0-9 or a digit word",
    "classes": list(glyphs.CLASSES),
    "style_words": list(glyphs.STYLE_WORDS),
    "judge": "glyphs",
    "scorer": "clip:../glyph_clip",
}


def glyph_prompt(glyph: str, styles: tuple[str, ...] = (), article: str = "a", kind: str | None = None,
                 word: bool = False) -> str:
    """A prompt for ``glyph``: ``glyph_prompt("q")`` is "a letter q"; ``glyph_prompt("6", word=True)``
    is "a digit six"; ``styles=("bold",)`` gives "a bold letter q"."""
    is_digit = glyph.isdigit()
    kind = kind or ("digit" if is_digit else "letter")
    name = glyphs.CLASS_WORDS[glyph] if (word and is_digit) else glyph
    words = [*styles, kind, name]
    if article == "a" and words[0][0] in "aeiou":
        article = "an"
    return " ".join(([article] if article else []) + words)


def sample_prompts(labels: torch.Tensor, fonts: tuple[int, ...], generator: torch.Generator,
                   dropout: float = 0.1) -> list[str]:
    """One random training prompt per glyph: article, some of its font's style words, kind, glyph."""
    n = len(labels)
    u = torch.rand((n, 4 + len(glyphs.STYLE_WORDS)), generator=generator).tolist()
    prompts = []
    for label, font, r in zip(labels.tolist(), fonts, u):
        if r[0] < dropout:
            prompts.append("")
            continue
        glyph = glyphs.CLASSES[label]
        article = ("a", "the", "")[min(int(r[1] * 3), 2)]
        kind = ("digit", "number")[int(r[2] < 0.3)] if glyph.isdigit() else "letter"
        styles = tuple(s for s, v in zip(glyphs.STYLE_WORDS, r[4:]) if s in glyphs.FONTS[font].styles
                       and v < STYLE_PROBABILITY)
        prompts.append(glyph_prompt(glyph, styles, article, kind, word=r[3] < 0.5))
    return prompts


class GlyphsTask:
    """The glyph model's data: uniformly random classes rendered in random fonts and placements."""

    name = "glyphs"
    words = WORDS
    max_length = MAX_LENGTH
    position_std = 0.5
    defaults = DEFAULTS

    def __init__(self, size: int = glyphs.DEFAULT_SIZE):
        self.size = size
        glyphs.glyph_bank()  # render the masters once, before the clock starts

    def batch(self, n: int, generator: torch.Generator, prompt_dropout: float) -> tuple[torch.Tensor, list[str]]:
        rendered = glyphs.random_glyphs(n, generator, self.size)
        return rendered.images, sample_prompts(rendered.labels, rendered.fonts, generator, prompt_dropout)


def train(out_dir: str | Path, steps: int = GLYPH_CONFIG.steps, seed: int = 0, *, config: TrainConfig | None = None,
          progress: bool = True, log_every: int = 100, checkpoint_every: int = 0, **overrides) -> Path:
    """Train the glyph model and write its pipeline folder to ``out_dir`` (see :func:`trainer.train`)."""
    cfg = configure(config or GLYPH_CONFIG, steps, seed, overrides)
    task = GlyphsTask(cfg.unet.sample_size)
    return trainer.train(task, out_dir, cfg, progress=progress, log_every=log_every,
                         checkpoint_every=checkpoint_every, report=lambda line: print(line, flush=True))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="output folder (the pipeline folder)")
    p.add_argument("--steps", type=int, default=GLYPH_CONFIG.steps)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=GLYPH_CONFIG.batch_size)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--checkpoint-every", type=int, default=500, help="resumable checkpoint every N steps (0: none)")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    out = train(a.out, a.steps, a.seed, batch_size=a.batch_size, threads=a.threads, progress=not a.no_progress,
                checkpoint_every=a.checkpoint_every)
    log = json.loads((out / "training_log.json").read_text())
    print(f"wrote {out} (UNet {log['unet_params']:,} params, text encoder {log['text_encoder_params']:,}; "
          f"{log['train_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
