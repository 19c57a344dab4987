"""A second digit classifier, trained apart from the shipped one, to judge tables the first one scores.

The shipped digit classifier (``anagram/models/digit_classifier``) is also a balancing scorer
(``--scorer digits``), so a digits table balanced with it and judged by it measures its scorer. This
one judges instead: the same training code (:func:`anagram.testbed.classifier.train_classifier`) with
another seed (1 instead of 0: other initial weights, batch order and augmentations) and another
architecture (widths 24, 48, 80 instead of 32, 64, 96). It is shipped at
``anagram/models/digit_judge/`` and is never registered as a scorer; the shipped folder is written by::

    python -m anagram.testbed.train_digit_judge --out anagram/models/digit_judge

``benchmarks/quality.py --model digits --judge anagram/models/digit_judge`` judges the digits table with it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from . import MODELS_DIR
from .classifier import train_classifier

DIGIT_JUDGE_DIR = MODELS_DIR / "digit_judge"
JUDGE_SEED = 1
JUDGE_CHANNELS = (24, 48, 80)


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
    model, acc = train_classifier(a.out, a.epochs, a.seed, progress=not a.no_progress, channels=JUDGE_CHANNELS,
                                  extra={"role": "judge (never a scorer)"})
    n = sum(q.numel() for q in model.parameters())
    print(f"wrote {a.out}: {n:,} parameters, held-out accuracy {acc:.4f}")


if __name__ == "__main__":
    main()
