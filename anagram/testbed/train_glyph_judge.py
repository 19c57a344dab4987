"""Train the glyph testbed's judge (:mod:`anagram.testbed.glyph_judge`) on its own augmented renders.

The shipped judge at ``anagram/models/glyph_judge/`` is written, from the repository root, by::

    python -m anagram.testbed.train_glyph_judge --out anagram/models/glyph_judge --threads 2

(the defaults of :data:`JUDGE_CONFIG`; ``config.json`` in the folder records the time it took and
the held-out accuracy). The run is seeded (bitwise reproducible on the same machine and thread
count) and writes exactly ``config.json`` + ``model.safetensors``, into a temporary folder renamed
into place.

Data: every batch is fresh glyphs from :func:`anagram.testbed.glyphs.random_glyphs` (36 classes,
21 fonts, the renderer's random scale, position, rotation and stroke weight), then
:func:`augment` makes them look like what a diffusion model draws: an extra affine (rotation,
scale, shear, shift) with a smooth elastic warp, thicker or thinner strokes, blur, contrast and
gamma jitter, Gaussian noise, stray specks and a partially erased patch.

Held out: renders of another seed (:data:`HELD_OUT_SEED`), clean and augmented, never seen in
training; the per-class confusion is written to ``config.json`` (see :func:`evaluate`).
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from . import glyphs
from .classifier import DigitClassifier, save_classifier
from .glyph_judge import GLYPH_JUDGE_DIR, confused_pairs, confusion_matrix
from .trainer import replace_folder

HELD_OUT_SEED = 10_007
HELD_OUT_PER_CLASS = 100


@dataclass(frozen=True)
class JudgeConfig:
    """Training settings of the glyph judge."""

    steps: int = 2000
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 1e-4
    label_smoothing: float = 0.05
    channels: tuple[int, int, int] = (32, 64, 96)
    dropout: float = 0.2
    seed: int = 0


JUDGE_CONFIG = JudgeConfig()


# -- augmentation ----------------------------------------------------------------------------------


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def _gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-image separable Gaussian blur (``sigma`` in pixels, 0 = unchanged)."""
    b = x.shape[0]
    r = 2
    t = torch.arange(-r, r + 1, dtype=x.dtype)
    k = torch.exp(-0.5 * (t[None] / sigma.clamp_min(1e-3)[:, None]) ** 2)
    k = k / k.sum(1, keepdim=True)  # (b, 5); sigma -> 0 gives the delta
    xs = x.transpose(0, 1)  # (1, b, H, W): one group per image
    xs = F.conv2d(F.pad(xs, (r, r, 0, 0), mode="replicate"), k.view(b, 1, 1, -1), groups=b)
    xs = F.conv2d(F.pad(xs, (0, 0, r, r), mode="replicate"), k.view(b, 1, -1, 1), groups=b)
    return xs.transpose(0, 1)


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Heavy augmentation of renders ``(B, 1, H, W)`` in ``[-1, 1]``; every draw from ``gen``."""
    b, _, h, w = x.shape
    ink = (x + 1.0) / 2.0
    # 1. affine (rotation <= 10 deg, scale 0.85..1.1, shear <= 0.15, shift <= 2 px) + smooth elastic warp
    ang = _uniform(b, -1, 1, gen) * math.radians(10)
    scale = _uniform(b, 0.85, 1.1, gen)
    shear = _uniform(b, -0.15, 0.15, gen)
    shift = _uniform(2 * b, -2, 2, gen).view(b, 2) * 2.0 / w
    cos, sin = torch.cos(ang) / scale, torch.sin(ang) / scale
    theta = torch.stack([torch.stack([cos, -sin + shear, shift[:, 0]], 1),
                         torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, [b, 1, h, w], align_corners=False)
    elastic = torch.randn((b, 2, 4, 4), generator=gen) * _uniform(b, 0, 1.2, gen).view(b, 1, 1, 1) * 2.0 / w
    grid = grid + F.interpolate(elastic, size=(h, w), mode="bicubic", align_corners=False).permute(0, 2, 3, 1)
    ink = F.grid_sample(ink, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # 2. stroke weight: a soft dilation or erosion for some
    u = torch.rand(b, generator=gen).view(b, 1, 1, 1)
    dil = F.max_pool2d(ink, 3, 1, 1)
    ero = -F.max_pool2d(-ink, 3, 1, 1)
    a = _uniform(b, 0.3, 1.0, gen).view(b, 1, 1, 1)
    ink = torch.where(u < 0.15, ink + a * (dil - ink), torch.where(u > 0.9, ink + a * (ero - ink), ink))
    # 3. blur (half of them, sigma up to 1 px)
    sigma = _uniform(b, 0, 1.0, gen) * (torch.rand(b, generator=gen) < 0.5)
    ink = _gaussian_blur(ink, sigma)
    # 4. partial erasing (a 2-6 px rectangle set to background, 30%)
    ys = torch.arange(h).view(1, h, 1)
    xs = torch.arange(w).view(1, 1, w)
    eh, ew = torch.randint(2, 7, (b, 1, 1), generator=gen), torch.randint(2, 7, (b, 1, 1), generator=gen)
    ey, ex = torch.randint(0, h, (b, 1, 1), generator=gen), torch.randint(0, w, (b, 1, 1), generator=gen)
    box = (ys >= ey) & (ys < ey + eh) & (xs >= ex) & (xs < ex + ew) & (torch.rand(b, 1, 1, generator=gen) < 0.3)
    ink = ink.masked_fill(box[:, None], 0.0)
    # 5. stray specks (30%: 1-3 single pixels or 2x2 dots of ink)
    specks = torch.zeros(b, 1, h, w)
    count = torch.randint(1, 4, (b,), generator=gen) * (torch.rand(b, generator=gen) < 0.3)
    for k in range(3):
        on = count > k
        py, px = torch.randint(0, h - 1, (b,), generator=gen), torch.randint(0, w - 1, (b,), generator=gen)
        big = torch.rand(b, generator=gen) < 0.5
        idx = on.nonzero().squeeze(1)
        specks[idx, 0, py[idx], px[idx]] = 1.0
        idx = (on & big).nonzero().squeeze(1)
        specks[idx, 0, py[idx] + 1, px[idx]] = 1.0
        specks[idx, 0, py[idx], px[idx] + 1] = 1.0
        specks[idx, 0, py[idx] + 1, px[idx] + 1] = 1.0
    ink = torch.maximum(ink, specks * _uniform(b, 0.4, 1.0, gen).view(b, 1, 1, 1))
    # 6. contrast and gamma: ink level 0.6..1, background 0..0.2, gamma 0.7..1.4
    ink = ink.clamp(0, 1) ** _uniform(b, 0.7, 1.4, gen).view(b, 1, 1, 1)
    lo, hi = _uniform(b, 0.0, 0.2, gen).view(b, 1, 1, 1), _uniform(b, 0.6, 1.0, gen).view(b, 1, 1, 1)
    ink = lo + (hi - lo) * ink
    # 7. Gaussian noise (std up to 0.08 of the range)
    ink = ink + _uniform(b, 0, 0.08, gen).view(b, 1, 1, 1) * torch.randn(ink.shape, generator=gen)
    return (ink.clamp(0, 1) * 2.0 - 1.0)


# -- held-out evaluation ---------------------------------------------------------------------------


def held_out(per_class: int = HELD_OUT_PER_CLASS, seed: int = HELD_OUT_SEED) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Renders never seen in training (another seed): ``(clean, augmented, labels)``."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(len(glyphs.CLASSES)).repeat_interleave(per_class)
    clean = glyphs.render_batch(labels, gen).images
    return clean, augment(clean, gen), labels


def evaluate(model: DigitClassifier, per_class: int = HELD_OUT_PER_CLASS, seed: int = HELD_OUT_SEED) -> dict:
    """Held-out accuracy (clean and augmented renders), the worst classes and the most confused pairs."""
    model.eval()
    clean, aug, labels = held_out(per_class, seed)
    out = {"held_out_seed": seed, "held_out_per_class": per_class}
    for name, images in (("clean", clean), ("augmented", aug)):
        m = confusion_matrix(model, images, labels)
        per_class_acc = (m.diagonal() / m.sum(1).clamp_min(1)).tolist()
        worst = sorted(range(len(per_class_acc)), key=lambda i: per_class_acc[i])[:5]
        out[name] = {
            "accuracy": round(float(m.diagonal().sum() / m.sum()), 4),
            "worst_classes": {glyphs.CLASSES[i]: round(per_class_acc[i], 3) for i in worst},
            "confused_pairs": [f"{t}->{p}: {n} ({share:.1%})" for t, p, n, share in confused_pairs(m, 10)],
        }
    return out


# -- training --------------------------------------------------------------------------------------


def train(out_dir: str | Path | None, config: JudgeConfig = JUDGE_CONFIG, *, threads: int | None = None,
          progress: bool = True, held_out_per_class: int = HELD_OUT_PER_CLASS) -> tuple[DigitClassifier, dict]:
    """Train the judge; write ``config.json`` + ``model.safetensors`` to ``out_dir`` (unless None).
    Returns the model (eval mode) and the training record written into its config."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    glyphs.glyph_bank()  # the masters, before the clock starts
    model = DigitClassifier(config.channels, glyphs.DEFAULT_SIZE, len(glyphs.CLASSES), config.dropout)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=config.steps, pct_start=0.15)
    t0 = time.time()
    cols = (TextColumn("[bold]glyph judge"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.3f} acc {task.fields[acc]:.3f}"), TimeElapsedColumn())
    running_loss, running_acc = float("nan"), float("nan")
    model.train()
    with Progress(*cols, disable=not progress) as bar:
        task = bar.add_task("train", total=config.steps, loss=running_loss, acc=running_acc)
        for step in range(config.steps):
            batch = glyphs.random_glyphs(config.batch_size, gen)
            x = augment(batch.images, gen)
            logits = model(x)
            loss = F.cross_entropy(logits, batch.labels, label_smoothing=config.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            acc = float((logits.argmax(-1) == batch.labels).float().mean())
            running_loss = loss.item() if step == 0 else 0.98 * running_loss + 0.02 * loss.item()
            running_acc = acc if step == 0 else 0.98 * running_acc + 0.02 * acc
            bar.update(task, advance=1, loss=running_loss, acc=running_acc)
    model.eval()
    record = {"classes": list(glyphs.CLASSES), "training": {**asdict(config), "threads": torch.get_num_threads(),
                                                            "train_seconds": round(time.time() - t0, 1)}}
    record.update(evaluate(model, held_out_per_class))
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
        save_classifier(model, tmp, record)
        for path in (tmp, *tmp.iterdir()):  # mkdtemp makes the folder private: the package's files are not
            path.chmod(0o755 if path.is_dir() else 0o644)
        replace_folder(tmp, out_dir)
    return model, record


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=GLYPH_JUDGE_DIR, help="output folder (config.json + model.safetensors)")
    p.add_argument("--steps", type=int, default=JUDGE_CONFIG.steps)
    p.add_argument("--batch-size", type=int, default=JUDGE_CONFIG.batch_size)
    p.add_argument("--seed", type=int, default=JUDGE_CONFIG.seed)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--held-out-per-class", type=int, default=HELD_OUT_PER_CLASS)
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    config = JudgeConfig(steps=a.steps, batch_size=a.batch_size, seed=a.seed)
    model, record = train(a.out, config, threads=a.threads, progress=not a.no_progress,
                          held_out_per_class=a.held_out_per_class)
    n = sum(q.numel() for q in model.parameters())
    print(f"wrote {a.out}: {n:,} parameters, {record['training']['train_seconds']:.0f} s")
    print(json.dumps({k: record[k] for k in ("clean", "augmented")}, indent=1))


if __name__ == "__main__":
    main()
