"""Judges: how well does view i of an image show prompt j, for the metrics.

A judge takes one sample's views ``(N, C, H, W)`` in [0, 1] and its N prompts and returns the score
matrix of spec §6 (``scores[i, j]``), logits whose softmax concealment reads, each view's predicted
class and the targets. The digit classifier judges the built-in digits model; a CLIP model (hub id
or folder) judges real models, through the same CLIP wrapper the balancing scorer uses.
"""

from __future__ import annotations

from typing import Protocol

import torch


class Judge(Protocol):
    name: str

    def __call__(self, views: torch.Tensor, prompts: list[str]) -> dict[str, torch.Tensor]: ...


class DigitJudge:
    """The digit testbed's classifier: ``S[i, j] = p(digit of prompt j | view i)``."""

    name = "digits"

    def __call__(self, views: torch.Tensor, prompts: list[str]) -> dict[str, torch.Tensor]:
        from ..testbed.judge import digit_score_matrix

        return digit_score_matrix(views, prompts)


class CLIPJudge:
    """``S[i, j]`` = CLIP cosine similarity of view i with prompt j; logits ``S / tau``."""

    def __init__(self, model: str):
        from ..method.scorers import CLIPScorer

        self.name = f"clip:{model}"
        self.clip = CLIPScorer(model)

    def __call__(self, views: torch.Tensor, prompts: list[str]) -> dict[str, torch.Tensor]:
        images = self.clip.image_embeddings(views * 2 - 1)
        texts = self.clip.text_embeddings(prompts).to(images.device)
        scores = (images @ texts.T).cpu()
        logits = scores * self.clip.model.logit_scale.exp().float().cpu()
        return {"scores": scores, "logits": logits, "predicted": logits.argmax(-1),
                "targets": torch.arange(len(prompts))}


def make_judge(judge: str, model_names: set[str]) -> Judge:
    """The judge ``judge`` names (``auto``: the one the samples' model has), or a clear error."""
    if judge == "auto":
        if model_names == {"digits"}:
            return DigitJudge()
        raise ValueError(f"samples of {sorted(model_names)}: pass --judge clip:<CLIP id or folder> "
                         "(only the built-in digits model has an automatic judge)")
    if judge == "digits":
        return DigitJudge()
    if judge.startswith("clip:") and judge[5:]:
        return CLIPJudge(judge[5:])
    raise ValueError(f"unknown judge {judge!r}: use auto, digits or clip:<id or folder>")
