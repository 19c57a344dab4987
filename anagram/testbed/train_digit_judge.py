"""A second digit classifier, trained apart from the shipped one, to judge tables the first one scores.

The shipped digit classifier (``anagram/models/digit_classifier``) is also a balancing scorer
(``--scorer digits``), so a digits table balanced with it and judged by it measures its scorer. This
one judges instead: the same training code (:func:`anagram.testbed.classifier.train_classifier`) with
another seed (1 instead of 0: other initial weights, batch order and augmentations) and another
architecture (widths 24, 48, 80 instead of 32, 64, 96). It is shipped at
``anagram/models/digit_judge/`` and is never registered as a scorer; the shipped folder is written by::

    python -m anagram.testbed.train_digit_judge --out anagram/models/digit_judge --threads 1

(40 epochs, 123 s on one thread of the shared 2-core CPU; 130,386 parameters; held-out split 360 of
360, 1.0000; the held-out images under 5 draws of the training augmentation, seed 10007: 0.9989,
the shipped classifier 0.9972; the two agree on 99.8% of those). It is the digits model's declared
judge (``"judge": "digit_judge"`` in its ``anagram_defaults.json``), so ``anagram evaluate`` of
digits samples uses it; ``--judge digits`` still names the shipped classifier.

``benchmarks/quality.py --model digits --judge anagram/models/digit_judge`` judges the digits table with it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

from . import MODELS_DIR
from .classifier import train_classifier

DIGIT_JUDGE_DIR = MODELS_DIR / "digit_judge"
JUDGE_SEED = 1
JUDGE_CHANNELS = (24, 48, 80)


def train_judge(out: Path, epochs: int = 40, seed: int = JUDGE_SEED, progress: bool = False,
                channels: tuple[int, int, int] = JUDGE_CHANNELS):
    """Train the judge and write ``out`` (config.json + model.safetensors); returns (model, held-out
    accuracy). The files are written beside ``out`` first and renamed into it, so an interrupted run
    never leaves a half-written judge."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model, acc = train_classifier(staging, epochs, seed, progress=progress, channels=channels,
                                      extra={"role": "judge (never a scorer)"})
        out.mkdir(exist_ok=True)
        for name in ("model.safetensors", "config.json"):  # weights first: the config names what they are
            os.chmod(staging / name, 0o644)
            os.replace(staging / name, out / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return model, acc


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Train the second digit classifier (a judge, never a scorer).")
    p.add_argument("--out", type=Path, default=DIGIT_JUDGE_DIR)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--seed", type=int, default=JUDGE_SEED)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    model, acc = train_judge(a.out, a.epochs, a.seed, progress=not a.no_progress)
    n = sum(q.numel() for q in model.parameters())
    print(f"wrote {a.out}: {n:,} parameters, held-out accuracy {acc:.4f}")


if __name__ == "__main__":
    main()
