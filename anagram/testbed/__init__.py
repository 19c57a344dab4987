"""The digit testbed: a tiny text-conditioned pixel diffusion model of handwritten digits and its judge.

The testbed makes every part of the toolkit (views, multi-view sampling, noise balancing,
variance rectification, anti-segregation, metrics) runnable in seconds on a CPU, offline:

* ``anagram/models/digits/`` (:data:`DIGITS_MODEL_DIR`): a diffusers-format pixel-space model
  (``UNet2DConditionModel`` + a non-contextual ``CLIPTextModel`` + ``CLIPTokenizer`` +
  ``DDIMScheduler``, no VAE) of 32x32 grayscale digits in ``[-1, 1]``, prompted with
  ``"a digit seven"``, ``"the number 7"``... (the digit is always the last word). Trained by
  :mod:`anagram.testbed.train_digits`. Sampling defaults are in ``anagram_defaults.json``.
* ``anagram/models/digit_classifier/`` (:data:`CLASSIFIER_DIR`): a small CNN that recognises the
  digits (the testbed's judge), trained by :mod:`anagram.testbed.classifier`.

Both are trained on scikit-learn's bundled 8x8 digits (no download), see :mod:`anagram.testbed.data`.
"""

from __future__ import annotations

from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
DIGITS_MODEL_DIR = MODELS_DIR / "digits"
CLASSIFIER_DIR = MODELS_DIR / "digit_classifier"

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DIGIT_NUMERALS = tuple(str(d) for d in range(10))

__all__ = ["CLASSIFIER_DIR", "DIGITS_MODEL_DIR", "DIGIT_NUMERALS", "DIGIT_WORDS", "MODELS_DIR"]
