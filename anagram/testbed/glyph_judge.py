"""The glyph testbed's judge: a small CNN that reads typeset glyphs (26 lowercase letters, 10 digits).

The judge is the testbed classifier network of :mod:`anagram.testbed.classifier` (the same
:class:`~anagram.testbed.classifier.DigitClassifier` module, built with ``num_classes=36``; one
implementation of the network, of its saving, loading and input preparation), trained by
:mod:`anagram.testbed.train_glyph_judge` on its own renders of :mod:`anagram.testbed.glyphs` with
heavy augmentation. It is shipped at ``anagram/models/glyph_judge/`` (``config.json`` +
``model.safetensors``, loaded with safetensors only).

**A judge, never a scorer.** The network that judges a table must not be the network that scored
inside the sampler, or the table measures the scorer and not the images. So this module offers
no balancing scorer and none is registered for it: ``anagram evaluate`` uses it (``--judge glyphs``,
and ``--judge auto`` for samples of the glyphs model, whose ``anagram_defaults.json`` declares
``"judge": "glyphs"``); the balancing scorer of the glyph model is its noise-aware CLIP.

Input convention of :func:`glyph_probabilities`: images ``(..., C, H, W)`` in ``value_range``
(default ``[-1, 1]``, background -1, ink +1, the range the glyph model samples in); any size (resized
to the judge's 32x32). Output: probabilities over :data:`anagram.testbed.glyphs.CLASSES`.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..method.concepts import parse_concept
from . import MODELS_DIR
from .classifier import DigitClassifier, classify, load_classifier
from .glyphs import CLASSES, class_index

GLYPH_JUDGE_DIR = MODELS_DIR / "glyph_judge"

_DEFAULT: dict[str, DigitClassifier] = {}


def load_glyph_judge(path=GLYPH_JUDGE_DIR, device: str | torch.device = "cpu") -> DigitClassifier:
    """The glyph judge in eval mode (safetensors only); the shipped one is loaded once per process."""
    from pathlib import Path

    if Path(path).resolve() == GLYPH_JUDGE_DIR.resolve() and str(device) == "cpu":
        if "model" not in _DEFAULT:
            _DEFAULT["model"] = _checked(load_classifier(GLYPH_JUDGE_DIR))
        return _DEFAULT["model"]
    return _checked(load_classifier(path, device))


def _checked(model: DigitClassifier) -> DigitClassifier:
    if model.config["num_classes"] != len(CLASSES):
        raise ValueError(f"a glyph judge has {len(CLASSES)} classes, this network has {model.config['num_classes']}")
    return model


def glyph_of_prompt(prompt: str) -> int:
    """The class index of the glyph a prompt names by its concept word ("a letter q", "a digit six")."""
    concept = parse_concept(prompt)[1].strip(" .,!?")
    try:
        return class_index(concept)
    except ValueError:
        raise ValueError(f"prompt {prompt!r} names no glyph: its last word must be a letter a-z, a digit 0-9 "
                         "or a digit word (zero..nine)") from None


def glyph_probabilities(images: torch.Tensor, value_range=(-1.0, 1.0), judge: DigitClassifier | None = None,
                        batch: int = 1024) -> torch.Tensor:
    """Class probabilities ``(..., 36)`` of images ``(..., C, H, W)`` in ``value_range``."""
    model = judge if judge is not None else load_glyph_judge()
    flat = images.flatten(0, -4) if images.ndim > 3 else images
    probs = torch.cat([classify(flat[i: i + batch], model, value_range) for i in range(0, len(flat), batch)])
    return probs.view(*images.shape[:-3], len(CLASSES)) if images.ndim > 3 else probs


def glyph_score_matrix(view_images: torch.Tensor, prompts: Sequence[str],
                       judge: DigitClassifier | None = None) -> dict[str, torch.Tensor]:
    """For one sample's views ``(N, C, H, W)`` in [0, 1]: ``S[i, j] = p(glyph of prompt j | view i)``,
    log-probability logits, each view's predicted class and the targets (as the digit judge's)."""
    targets = torch.tensor([glyph_of_prompt(p) for p in prompts])
    probs = glyph_probabilities(view_images, value_range=(0.0, 1.0), judge=judge)  # (N, 36)
    scores = probs[:, targets]
    return {"scores": scores, "logits": scores.clamp_min(1e-12).log(), "predicted": probs.argmax(-1),
            "targets": targets, "probabilities": probs}


@torch.no_grad()
def confusion_matrix(judge: DigitClassifier, images: torch.Tensor, labels: torch.Tensor,
                     value_range=(-1.0, 1.0)) -> torch.Tensor:
    """``M[true, predicted]`` counts of the judge on labelled images."""
    predicted = glyph_probabilities(images, value_range, judge).argmax(-1)
    m = torch.zeros(len(CLASSES), len(CLASSES), dtype=torch.long)
    m.index_put_((labels.long(), predicted), torch.ones_like(predicted), accumulate=True)
    return m


def confused_pairs(m: torch.Tensor, top: int = 10) -> list[tuple[str, str, int, float]]:
    """The largest off-diagonal entries of a confusion matrix: ``(true, predicted, count, share of true)``."""
    off = m.clone()
    off.fill_diagonal_(0)
    values, flat = off.flatten().sort(descending=True)
    totals = m.sum(1).clamp_min(1)
    out = []
    for v, i in zip(values[:top].tolist(), flat[:top].tolist()):
        if v == 0:
            break
        t, p = divmod(i, len(CLASSES))
        out.append((CLASSES[t], CLASSES[p], v, v / int(totals[t])))
    return out


__all__ = ["GLYPH_JUDGE_DIR", "confused_pairs", "confusion_matrix", "glyph_of_prompt", "glyph_probabilities",
           "glyph_score_matrix", "load_glyph_judge"]
