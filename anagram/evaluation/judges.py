"""Judges: how well does view i of an image show prompt j, for the metrics.

A judge takes one sample's views ``(N, C, H, W)`` in [0, 1] and its N prompts and returns the score
matrix of spec §6 (``scores[i, j]``), logits whose softmax concealment reads, each view's predicted
class and the targets. The digit classifier judges the built-in digits model, the glyph judge the
built-in glyphs model (and reports concept segregation too); a CLIP model (hub id or folder) judges
real models, through the same CLIP wrapper the balancing scorer uses.

Two digit classifiers can judge: ``digit_judge`` (``anagram/models/digit_judge``, the second
classifier, trained apart by :mod:`anagram.testbed.train_digit_judge` and never a scorer) and
``digits`` (the shipped classifier, which is also a balancing scorer, ``--scorer digits``, so it
measures its scorer on samples balanced with it); ``digits:<folder>`` names any other classifier
folder. ``metrics.csv`` names the judge of every row.

``--judge auto`` takes the judge the samples' model declares (``"judge"`` in its folder's
``anagram_defaults.json``: ``digit_judge`` for the digits model, ``glyphs`` for the glyphs model).
The rule of every testbed: the network that judges a table is never the network that scored inside
the sampler. Neither the glyph judge nor the second digit classifier is a balancing scorer at all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Protocol

import torch


class Judge(Protocol):
    name: str

    def __call__(self, views: torch.Tensor, prompts: list[str]) -> dict[str, torch.Tensor]: ...


class DigitJudge:
    """A digit classifier: ``S[i, j] = p(digit of prompt j | view i)``. ``folder`` None: the shipped
    classifier (``digits``, also a scorer); else a classifier folder (the second classifier's is
    named ``digit_judge``, any other ``digits:<folder>``)."""

    def __init__(self, folder: str | Path | None = None):
        self.folder = None if folder is None else Path(folder)
        self.name = digit_judge_name(self.folder)
        self._classifier = None

    def __call__(self, views: torch.Tensor, prompts: list[str]) -> dict[str, torch.Tensor]:
        from ..testbed.classifier import load_classifier
        from ..testbed.judge import digit_score_matrix

        if self.folder is not None and self._classifier is None:
            self._classifier = load_classifier(self.folder)
        return digit_score_matrix(views, prompts, self._classifier)


def digit_judge_folder() -> Path:
    """Where the second digit classifier (the digits model's judge, never a scorer) is shipped."""
    from ..testbed import MODELS_DIR

    return MODELS_DIR / "digit_judge"


def digit_judge_name(folder: Path | None) -> str:
    """How records name a digit classifier judge: ``digits`` (shipped classifier), ``digit_judge``
    (the second classifier) or ``digits:<folder>``."""
    if folder is None:
        return "digits"
    if folder.resolve() == digit_judge_folder().resolve():
        return "digit_judge"
    return f"digits:{folder}"


class SecondDigitJudge(DigitJudge):
    """The second digit classifier (``anagram/models/digit_judge``), the digits model's judge."""

    def __init__(self):
        super().__init__(digit_judge_folder())


class GlyphJudge:
    """The glyph testbed's judge (a CNN trained on its own renders, never a scorer):
    ``S[i, j] = p(glyph of prompt j | view i)``; also whether a sample is segregated
    (:mod:`anagram.testbed.segregation`)."""

    name = "glyphs"

    def __call__(self, views: torch.Tensor, prompts: list[str]) -> dict[str, torch.Tensor]:
        from ..testbed.glyph_judge import glyph_score_matrix

        return glyph_score_matrix(views, prompts)

    def segregation(self, image: torch.Tensor, views: list, prompts: list[str]):
        """The segregation verdict of one sample (``image`` ``(C, H, W)`` in [0, 1], its view objects)."""
        from ..testbed.segregation import segregation

        return segregation(image, views, prompts)


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


JUDGES = {"digit_judge": SecondDigitJudge, "digits": DigitJudge, "glyphs": GlyphJudge}


def declared_judge(model: dict | str) -> str | None:
    """The judge a sample's model declares (``"judge"`` in ``anagram_defaults.json`` of its folder:
    the record's ``location``, or the built-in model of that name), else None."""
    from ..pipelines.loading import builtin_models, read_declared_defaults

    if isinstance(model, str):
        model = {"model": model}
    location = model.get("location") or builtin_models().get(str(model.get("model")))
    if not location or not Path(str(location)).is_dir():
        return None
    value = read_declared_defaults(location).get("judge")
    return value if isinstance(value, str) and value else None


def make_judge(judge: str, model_names: set[str], models: Iterable[dict] = ()) -> Judge:
    """The judge ``judge`` names, or a clear error. ``auto``: the judge the samples' model declares
    (``models``: the records' model entries; by name when none are given), the second digit
    classifier for the digits model (also when its folder cannot be found)."""
    if judge == "auto":
        models = list(models) or [{"model": name} for name in model_names]
        declared = {declared_judge(m) or ("digit_judge" if m.get("model") == "digits" else None) for m in models}
        if len(declared) == 1 and None not in declared:
            judge = declared.pop()
            if judge in JUDGES or judge.startswith(("clip:", "digits:")):
                return make_judge(judge, model_names)
        raise ValueError(f"samples of {sorted(model_names)}: pass --judge clip:<CLIP id or folder> "
                         "(only the built-in digits and glyphs models have an automatic judge, for a folder "
                         "of samples of one of them)")
    if judge in JUDGES:
        return JUDGES[judge]()
    if judge.startswith("clip:") and judge[5:]:
        return CLIPJudge(judge[5:])
    if judge.startswith("digits:") and judge[7:]:
        folder = Path(judge[7:]).expanduser()
        if not (folder / "model.safetensors").is_file():
            raise ValueError(f"judge {judge!r}: {folder} is no digit classifier folder "
                             "(config.json + model.safetensors)")
        return DigitJudge(folder)
    raise ValueError(f"unknown judge {judge!r}: use auto, digit_judge, digits, glyphs, digits:<classifier folder> "
                     "or clip:<id or folder>")
