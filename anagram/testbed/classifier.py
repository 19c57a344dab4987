"""The testbed's judge: a small CNN that recognises the handwritten digits.

The shipped classifier at ``anagram/models/digit_classifier/`` was produced with::

    python -m anagram.testbed.classifier --out anagram/models/digit_classifier --epochs 60 --seed 0

(6 minutes on the shared 2-core CPU under ``nice``; 205,162 parameters; held-out accuracy 0.9972,
359 of the 360 test images). It is stored as ``config.json`` + ``model.safetensors`` and loaded with safetensors only (no
pickle). It is trained on the train split of :func:`anagram.testbed.data.load_split` (32x32,
``[-1, 1]``) with light augmentation (random shifts, small rotations/scalings, contrast and
noise jitter) so that it also judges what the diffusion model draws, not only the dataset.

Input convention of :func:`classify`: images ``(B, 1, H, W)`` (or ``(B, H, W)``; 3-channel images
are averaged to gray) **in [-1, 1]** (background -1, ink +1), the range the digit diffusion model
samples in; pass ``value_range=(0, 1)`` for images in ``[0, 1]``. Any size is accepted (resized to
32x32 bilinearly). The output is the class probabilities ``(B, 10)``; class ``k`` is the digit ``k``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from anagram.testbed import CLASSIFIER_DIR
from anagram.testbed.data import DEFAULT_SIZE, load_split, random_shift

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


class DigitClassifier(nn.Module):
    """(conv-GroupNorm-SiLU) x2 + max-pool, three times (32, 64, 96 channels), global average
    pooling, dropout, linear: about 0.2M parameters."""

    def __init__(self, channels: tuple[int, int, int] = (32, 64, 96), size: int = DEFAULT_SIZE,
                 num_classes: int = 10, dropout: float = 0.2):
        super().__init__()
        self.config = {"channels": list(channels), "size": size, "num_classes": num_classes, "dropout": dropout}
        layers: list[nn.Module] = []
        c_in = 1
        for c in channels:
            layers += [
                nn.Conv2d(c_in, c, 3, padding=1), nn.GroupNorm(8, c), nn.SiLU(),
                nn.Conv2d(c, c, 3, padding=1), nn.GroupNorm(8, c), nn.SiLU(),
                nn.MaxPool2d(2),
            ]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(c_in, num_classes)

    @property
    def size(self) -> int:
        return self.config["size"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for images ``(B, 1, size, size)`` in ``[-1, 1]``."""
        h = self.features(x).mean(dim=(2, 3))
        return self.head(self.dropout(h))


def save_classifier(model: DigitClassifier, out_dir: str | Path, extra: dict | None = None) -> Path:
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = dict(model.config, _class_name="DigitClassifier", input_range=[-1.0, 1.0], **(extra or {}))
    (out_dir / CONFIG_NAME).write_text(json.dumps(cfg, indent=2) + "\n")
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out_dir / WEIGHTS_NAME), metadata={"format": "pt"})
    return out_dir


def load_classifier(path: str | Path = CLASSIFIER_DIR, device: str | torch.device = "cpu") -> DigitClassifier:
    """Load a saved classifier (safetensors only), in eval mode."""
    from safetensors.torch import load_file

    path = Path(path)
    cfg = json.loads((path / CONFIG_NAME).read_text())
    model = DigitClassifier(tuple(cfg["channels"]), cfg["size"], cfg["num_classes"], cfg.get("dropout", 0.0))
    model.load_state_dict(load_file(str(path / WEIGHTS_NAME), device="cpu"))
    return model.to(device).eval()


_DEFAULT: dict[str, DigitClassifier] = {}


def _default_classifier() -> DigitClassifier:
    if "model" not in _DEFAULT:
        _DEFAULT["model"] = load_classifier(CLASSIFIER_DIR)
    return _DEFAULT["model"]


def prepare(images: torch.Tensor, size: int = DEFAULT_SIZE, value_range: tuple[float, float] = (-1.0, 1.0)) -> torch.Tensor:
    """Bring images to the classifier's input: ``(B, 1, size, size)`` float in ``[-1, 1]``."""
    x = images
    if x.ndim == 2:
        x = x[None, None]
    elif x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise ValueError(f"expected images (B, C, H, W), got shape {tuple(images.shape)}")
    x = x.float()
    if x.shape[1] == 3:
        x = x.mean(dim=1, keepdim=True)
    elif x.shape[1] != 1:
        raise ValueError(f"expected 1 or 3 channels, got {x.shape[1]}")
    lo, hi = value_range
    if (lo, hi) != (-1.0, 1.0):
        x = (x - lo) / (hi - lo) * 2.0 - 1.0
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                          antialias=x.shape[-1] > size)
    return x.clamp(-1.0, 1.0)


@torch.no_grad()
def classify(
    images: torch.Tensor,
    classifier: DigitClassifier | None = None,
    value_range: tuple[float, float] = (-1.0, 1.0),
) -> torch.Tensor:
    """Class probabilities ``(B, 10)`` of images in ``value_range`` (default ``[-1, 1]``)."""
    model = classifier if classifier is not None else _default_classifier()
    dev = next(model.parameters()).device
    x = prepare(images.detach(), model.size, value_range).to(dev)
    return model(x).softmax(dim=-1).to(images.device)


@torch.no_grad()
def accuracy(classifier: DigitClassifier, images: torch.Tensor, labels: torch.Tensor, batch: int = 512) -> float:
    correct = 0
    for i in range(0, len(images), batch):
        probs = classify(images[i : i + batch], classifier)
        correct += int((probs.argmax(-1) == labels[i : i + batch]).sum())
    return correct / max(1, len(images))


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Shifts (<= 3 px), rotation (<= 12 deg), scale (0.85..1.15), contrast/offset and noise jitter."""
    b = x.shape[0]
    ang = (torch.rand(b, generator=gen) * 2 - 1) * math.radians(12)
    scale = 1.0 + (torch.rand(b, generator=gen) * 2 - 1) * 0.15
    cos, sin = torch.cos(ang) / scale, torch.sin(ang) / scale
    theta = torch.stack([torch.stack([cos, -sin, torch.zeros(b)], 1), torch.stack([sin, cos, torch.zeros(b)], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x + 1.0, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1.0
    x = random_shift(x, 3, gen)
    gain = 1.0 + (torch.rand(b, 1, 1, 1, generator=gen) * 2 - 1) * 0.25
    offset = (torch.rand(b, 1, 1, 1, generator=gen) * 2 - 1) * 0.2
    x = (x + 1.0) * gain - 1.0 + offset
    sigma = torch.rand(b, 1, 1, 1, generator=gen) * 0.15
    x = x + sigma * torch.randn(x.shape, generator=gen)
    return x.clamp(-1.0, 1.0)


def train_classifier(
    out_dir: str | Path | None = CLASSIFIER_DIR,
    epochs: int = 60,
    seed: int = 0,
    batch_size: int = 64,
    lr: float = 3e-3,
    progress: bool = True,
    channels: tuple[int, int, int] = (32, 64, 96),
    extra: dict | None = None,
) -> tuple[DigitClassifier, float]:
    """Train on the train split, save to ``out_dir`` (unless None); returns (model, test accuracy).
    ``channels`` sets the network's widths (the shipped classifier: 32, 64, 96); ``extra`` is added to
    the saved config."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    data = load_split(DEFAULT_SIZE)
    model = DigitClassifier(channels=tuple(channels))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    n = len(data.train_images)
    steps_per_epoch = math.ceil(n / batch_size)
    total = epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total, pct_start=0.15)
    t0 = time.time()
    cols = (TextColumn("[bold]classifier"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.3f} test acc {task.fields[acc]:.3f}"), TimeElapsedColumn())
    with Progress(*cols, disable=not progress) as bar:
        task = bar.add_task("train", total=epochs, loss=float("nan"), acc=float("nan"))
        for _ in range(epochs):
            model.train()
            perm = torch.randperm(n, generator=gen)
            tot = 0.0
            for i in range(0, n, batch_size):
                idx = perm[i : i + batch_size]
                x = augment(data.train_images[idx], gen)
                loss = F.cross_entropy(model(x), data.train_labels[idx], label_smoothing=0.05)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                tot += loss.item() * len(idx)
            model.eval()
            acc = accuracy(model, data.test_images, data.test_labels)
            bar.update(task, advance=1, loss=tot / n, acc=acc)
    model.eval()
    acc = accuracy(model, data.test_images, data.test_labels)
    if out_dir is not None:
        save_classifier(model, out_dir, {"test_accuracy": round(acc, 4), "epochs": epochs, "seed": seed,
                                         "train_seconds": round(time.time() - t0, 1), **(extra or {})})
    return model, acc


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Train the testbed's digit classifier.")
    p.add_argument("--out", type=Path, default=CLASSIFIER_DIR)
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    model, acc = train_classifier(a.out, a.epochs, a.seed, progress=not a.no_progress)
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {a.out}: {n:,} parameters, held-out accuracy {acc:.4f}")


if __name__ == "__main__":
    main()
