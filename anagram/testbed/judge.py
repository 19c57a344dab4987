"""The digit classifier as a judge: score matrices for the metrics and a balancing scorer.

The digit a prompt asks for is its concept word: the last word (or the [marked] one), a digit word
("seven") or a numeral ("7").
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..method.concepts import parse_concept
from . import DIGIT_NUMERALS, DIGIT_WORDS
from .classifier import classify


def digit_of_prompt(prompt: str) -> int:
    """The digit named by a prompt's concept word; a clear error when there is none."""
    concept = parse_concept(prompt)[1].strip(" .,!?").lower()
    if concept in DIGIT_WORDS:
        return DIGIT_WORDS.index(concept)
    if concept in DIGIT_NUMERALS:
        return int(concept)
    raise ValueError(f"prompt {prompt!r} names no digit: its last word must be a digit word (zero..nine) or 0-9")


def digit_probabilities(view_images: torch.Tensor, value_range=(-1.0, 1.0), classifier=None) -> torch.Tensor:
    """Class probabilities ``(..., 10)`` of images ``(..., C, H, W)`` (``classifier`` None: the shipped one)."""
    flat = view_images.flatten(0, -4)
    return classify(flat, classifier, value_range=value_range).view(*view_images.shape[:-3], 10)


class DigitScorer:
    """Balancing scorer for the testbed: the classifier's probability of each view's digit."""

    needs_images = True

    def __repr__(self) -> str:
        return "DigitScorer()"

    def __call__(self, inputs) -> torch.Tensor:
        digits = torch.tensor([digit_of_prompt(p) for p in inputs.prompts], device=inputs.x0_views.device)
        probs = digit_probabilities(inputs.x0_views)  # (N, B, 10)
        own = probs.gather(-1, digits.view(-1, 1, 1).expand(-1, probs.shape[1], 1))[..., 0]  # (N, B)
        return own.transpose(0, 1).clamp(1e-4, 1.0)


def digit_score_matrix(view_images: torch.Tensor, prompts: Sequence[str], classifier=None) -> dict[str, torch.Tensor]:
    """For one sample's views ``(N, C, H, W)`` in [0, 1]: ``S[i, j] = p(digit of prompt j | view i)``,
    log-probability logits, the predicted class of each view and the targets (``classifier`` None: the
    shipped one; else any loaded digit classifier, e.g. the second one that judges)."""
    digits = torch.tensor([digit_of_prompt(p) for p in prompts])  # first: a prompt naming no digit fails early
    probs = digit_probabilities(view_images, value_range=(0.0, 1.0), classifier=classifier).cpu()  # (N, 10)
    scores = probs[:, digits]
    return {"scores": scores, "logits": scores.clamp_min(1e-12).log(), "predicted": probs.argmax(-1),
            "targets": digits}
