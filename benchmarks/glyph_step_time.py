"""Seconds per training step of candidate glyph-model UNets (the choice of canvas and attention levels).

One step = render a batch, noise it, UNet forward + concept-attention loss + backward + AdamW + EMA,
exactly `anagram.testbed.trainer.train_step`. Run on an otherwise idle machine for honest numbers::

    python benchmarks/glyph_step_time.py --threads 2 --batch-size 32 --steps 6
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch

from anagram.testbed import trainer
from anagram.testbed.train_glyphs import GLYPH_CONFIG, GLYPH_UNET, GlyphsTask

CANDIDATES = {
    "32px, attention 8x8": GLYPH_UNET,
    "32px, attention 16x16+8x8": replace(
        GLYPH_UNET, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D")),
    "48px, attention 12x12": replace(GLYPH_UNET, sample_size=48),
}


def step_time(spec, batch_size: int, steps: int, warmup: int = 2) -> float:
    cfg = replace(GLYPH_CONFIG, unet=spec, batch_size=batch_size)
    task = GlyphsTask(spec.sample_size)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    m = trainer.build_trainee(task, cfg)
    alphas = trainer.build_train_scheduler().alphas_cumprod
    times = []
    for step in range(warmup + steps):
        t0 = time.perf_counter()
        x0, prompts = task.batch(batch_size, gen, cfg.prompt_dropout)
        trainer.train_step(m, cfg, x0, prompts, step, alphas, gen)
        times.append(time.perf_counter() - t0)
    return sorted(times[warmup:])[len(times[warmup:]) // 2]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--only", default=None, help="a substring of the candidate names")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    for name, spec in CANDIDATES.items():
        if a.only and a.only not in name:
            continue
        print(f"{name:28s} {step_time(spec, a.batch_size, a.steps):.3f} s/step (median, batch {a.batch_size})", flush=True)


if __name__ == "__main__":
    main()
