"""Train the glyph testbed's noise-aware CLIP (:mod:`anagram.testbed.glyph_clip`) contrastively.

The shipped folder ``anagram/models/glyph_clip/`` is written, from the repository root, by::

    python -m anagram.testbed.train_glyph_clip --out anagram/models/glyph_clip --threads 2

(seeded: the weights are a pure function of the configuration and the seed on one machine and
thread count; ``training_log.json`` in the folder holds the time it took and the held-out accuracy).

1. **Data, computed once**: ``noisy`` x0 predictions of the shipped glyph model (renders of uniformly
   random classes noised to a uniform timestep in 1..980, one guided UNet call each at a guidance
   scale uniform in 1..5, see `glyph_clip.x0_predictions`), and ``clean`` clean renders, each with a
   training prompt of the glyph model (article, some of its font's style words, ``letter`` /
   ``digit`` / ``number``, the glyph or digit word).
2. **Batches without duplicates**: a step holds ``groups`` groups; a group holds one pair of
   *every* class (36), each drawn from the clean pool with probability ``clean_fraction``, else
   from the x0 pool. The InfoNCE loss (symmetric cross-entropy over image-text cosine logits,
   CLIP's learned temperature) is taken within each group, so a batch never holds two pairs of one
   class that would be each other's false negatives, and the negatives of every pair are exactly
   the other 35 classes, the ranking the scorer needs.
3. **The folder**: ``CLIPModel`` (safetensors), tokenizer, ``preprocessor_config.json`` and
   ``training_log.json``, written to a temporary folder, measured there through
   `anagram.method.scorers.CLIPScorer` (the ``clip:<folder>`` code path) on held-out renders and x0
   predictions (seed ``seed + 1000``), then renamed into place.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from . import glyph_clip, glyphs
from .glyph_clip import ClipSpec
from .trainer import _progress, replace_folder, tokenize

EVAL_SEED_OFFSET = 1000


@dataclass
class ClipTrainConfig:
    seed: int = 0
    noisy: int = 6000  # x0 predictions in the pool
    clean: int = 4000  # clean renders in the pool
    steps: int = 1500
    groups: int = 2  # groups of 36 (one pair per class) per step
    clean_fraction: float = 0.3
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup: int = 100
    max_shift: int = 0  # each drawn image is moved by up to this many pixels (background filled in)
    eval_per_class: int = 10  # held-out pairs per class and set (clean, high, mid, low)
    spec: ClipSpec = field(default_factory=ClipSpec)


CLIP_CONFIG = ClipTrainConfig()


def learning_rate(cfg: ClipTrainConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to 5% of ``cfg.lr``."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    frac = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))


def group_info_nce(image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor,
                   groups: int) -> torch.Tensor:
    """Symmetric InfoNCE within each of ``groups`` equal groups (row i of a group pairs with text i)."""
    img = F.normalize(image_features, dim=-1).unflatten(0, (groups, -1))
    txt = F.normalize(text_features, dim=-1).unflatten(0, (groups, -1))
    logits = logit_scale.exp().clamp(max=100) * img @ txt.transpose(1, 2)  # (G, K, K)
    target = torch.arange(logits.shape[1]).expand(groups, -1)
    return (F.cross_entropy(logits.flatten(0, 1), target.flatten())
            + F.cross_entropy(logits.transpose(1, 2).flatten(0, 1), target.flatten())) / 2


def shift_images(pixels: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Move each image ``(B, C, S, S)`` by a random whole number of pixels in ``[-max_shift, max_shift]``
    per axis, filling with the background (the pool is fixed: this keeps it from being memorised)."""
    if max_shift <= 0:
        return pixels
    s = pixels.shape[-1]
    background = -1.0  # the background (-1 in [-1, 1]) after the 0.5/0.5 normalisation
    padded = F.pad(pixels, (max_shift,) * 4, value=background)
    offsets = torch.randint(0, 2 * max_shift + 1, (len(pixels), 2), generator=gen).tolist()
    return torch.stack([padded[i, :, dy : dy + s, dx : dx + s] for i, (dy, dx) in enumerate(offsets)])


def _features(output):
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def build_pools(cfg: ClipTrainConfig, gen: torch.Generator, progress: bool) -> tuple[glyph_clip.GlyphPairs, dict]:
    """The x0-prediction pool and the clean pool, concatenated (``timesteps`` 0 marks the clean ones)."""
    model = glyph_clip.load_glyph_model()
    n_classes = len(glyphs.CLASSES)
    t0 = time.time()
    parts = []
    chunk = 360
    with _progress("glyph CLIP data", progress) as bar:
        task = bar.add_task("x0", total=cfg.noisy + cfg.clean, loss=float("nan"))
        for start in range(0, cfg.noisy, chunk):
            labels = torch.randint(0, n_classes, (min(chunk, cfg.noisy - start),), generator=gen)
            parts.append(glyph_clip.x0_predictions(model, labels, gen))
            bar.advance(task, len(labels))
        for start in range(0, cfg.clean, chunk):
            labels = torch.randint(0, n_classes, (min(chunk, cfg.clean - start),), generator=gen)
            parts.append(glyph_clip.clean_pairs(labels, gen))
            bar.advance(task, len(labels))
    pool = glyph_clip.GlyphPairs(torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts]),
                                 [q for p in parts for q in p.prompts], torch.cat([p.timesteps for p in parts]))
    return pool, {"data_seconds": round(time.time() - t0, 1)}


def draw_batch(pool: glyph_clip.GlyphPairs, by_class: list[dict[str, torch.Tensor]], cfg: ClipTrainConfig,
               gen: torch.Generator) -> torch.Tensor:
    """Pool indices of one step: ``groups`` groups of one pair per class, in class order."""
    n_classes = len(by_class)
    u = torch.rand((cfg.groups, n_classes, 2), generator=gen)
    rows = []
    for g in range(cfg.groups):
        for c, members in enumerate(by_class):
            kind = "clean" if (u[g, c, 0] < cfg.clean_fraction and len(members["clean"])) or not len(members["noisy"]) \
                else "noisy"
            idx = members[kind]
            rows.append(int(idx[min(int(u[g, c, 1] * len(idx)), len(idx) - 1)]))
    return torch.tensor(rows)


def train(out_dir: str | Path, config: ClipTrainConfig | None = None, *, threads: int | None = None,
          progress: bool = True, **overrides) -> Path:
    """Train the CLIP and write its folder to ``out_dir``; returns ``out_dir``."""
    from ..method.scorers import CLIPScorer

    cfg = ClipTrainConfig(**{**asdict(config or CLIP_CONFIG), **overrides})
    if isinstance(cfg.spec, dict):
        cfg.spec = ClipSpec(**cfg.spec)
    if threads:
        torch.set_num_threads(threads)
    out_dir = Path(out_dir)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    tokenizer = glyph_clip.build_tokenizer()
    model = glyph_clip.build_model(tokenizer, cfg.spec)
    log: dict = {"config": asdict(cfg), "params": sum(p.numel() for p in model.parameters())}

    pool, timing = build_pools(cfg, gen, progress)
    log.update(timing)
    by_class = [{"clean": ((pool.labels == c) & (pool.timesteps == 0)).nonzero()[:, 0],
                 "noisy": ((pool.labels == c) & (pool.timesteps > 0)).nonzero()[:, 0]}
                for c in range(len(glyphs.CLASSES))]
    missing = [glyphs.CLASSES[c] for c, m in enumerate(by_class) if not len(m["clean"]) and not len(m["noisy"])]
    if missing:
        raise ValueError(f"the data holds no pair of class(es) {', '.join(missing)}: raise noisy/clean")
    token_ids = tokenize(tokenizer, pool.prompts)
    pixels = glyph_clip.pixel_values(pool.images)

    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    model.train()
    t0, losses, running, n_run = time.time(), [], 0.0, 0
    eos = tokenizer.eos_token_id
    with _progress("glyph CLIP", progress) as bar:
        task = bar.add_task("train", total=cfg.steps, loss=float("nan"))
        for step in range(cfg.steps):
            rows = draw_batch(pool, by_class, cfg, gen)
            ids = token_ids[rows]
            mask = (torch.cumsum((ids == eos).int(), dim=1) <= 1).long()  # up to and including the first EOS
            img = _features(model.get_image_features(pixel_values=shift_images(pixels[rows], cfg.max_shift, gen)))
            txt = _features(model.get_text_features(input_ids=ids, attention_mask=mask))
            loss = group_info_nce(img, txt, model.logit_scale, cfg.groups)
            for g in optimizer.param_groups:
                g["lr"] = learning_rate(cfg, step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            running, n_run = running + loss.item(), n_run + 1
            if (step + 1) % 100 == 0 or step + 1 == cfg.steps:
                losses.append([step + 1, round(running / n_run, 4), round(time.time() - t0, 1)])
                bar.update(task, loss=running / n_run)
                running, n_run = 0.0, 0
            bar.advance(task)
    log["train_seconds"] = round(time.time() - t0, 1)
    log["loss"], log["loss_columns"] = losses, ["step", "info_nce", "seconds"]
    model.eval()

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp.", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "preprocessor_config.json").write_text(json.dumps(glyph_clip.preprocessor_config(), indent=2) + "\n")
        t1 = time.time()
        scorer = CLIPScorer(str(tmp))  # the clip:<folder> code path
        sets = glyph_clip.evaluation_sets(glyph_clip.load_glyph_model(), cfg.seed + EVAL_SEED_OFFSET,
                                          cfg.eval_per_class)
        log["heldout"] = {name: glyph_clip.ranking_accuracy(scorer, s.images, s.labels) for name, s in sets.items()}
        log["heldout_seed"] = cfg.seed + EVAL_SEED_OFFSET
        log["eval_seconds"] = round(time.time() - t1, 1)
        (tmp / "training_log.json").write_text(json.dumps(log, indent=1) + "\n")
        for path in [tmp, *tmp.iterdir()]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        replace_folder(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="output folder (the CLIP folder)")
    p.add_argument("--steps", type=int, default=CLIP_CONFIG.steps)
    p.add_argument("--seed", type=int, default=CLIP_CONFIG.seed)
    p.add_argument("--noisy", type=int, default=CLIP_CONFIG.noisy, help="x0 predictions in the data")
    p.add_argument("--clean", type=int, default=CLIP_CONFIG.clean, help="clean renders in the data")
    p.add_argument("--max-shift", type=int, default=CLIP_CONFIG.max_shift,
                   help="random shift of the drawn images, pixels (augmentation; 0: none)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    out = train(a.out, steps=a.steps, seed=a.seed, noisy=a.noisy, clean=a.clean, max_shift=a.max_shift,
                threads=a.threads, progress=not a.no_progress)
    log = json.loads((out / "training_log.json").read_text())
    accuracy = ", ".join(f"{k} {v['accuracy']:.3f}" for k, v in log["heldout"].items())
    print(f"wrote {out} ({log['params']:,} params; data {log['data_seconds']:.0f} s, training "
          f"{log['train_seconds']:.0f} s); held-out ranking accuracy: {accuracy}")


if __name__ == "__main__":
    main()
