"""Checks of a page's input that the request parser cannot make without the model: each failure is
one sentence that says what to change, shown in the page (never a traceback).

`Request.build` already refuses unknown views and bad method settings, and the pipeline refuses
views that cannot act on the model's samples (a jigsaw of 5 pieces a side on a 32-pixel image) before
any step runs. Checked here: the prompts of the page (one per view, none empty), and what the model
cannot read in them (`check_readable`: a word outside a closed vocabulary such as the ``digits``
model's, a prompt longer than the tokenizer keeps), said by the one function the command line and
Python warn with, `anagram.pipelines.vocabulary.prompt_warnings`.
"""

from __future__ import annotations

from typing import Sequence

from ..pipelines.vocabulary import prompt_warnings


def check_prompts(prompts: Sequence[str], views: Sequence[str]) -> list[str]:
    """The prompts, stripped; ValueError for a missing view, an empty prompt or a count mismatch."""
    if not views:
        raise ValueError("pick at least one view (identity is the image as it is)")
    cleaned = [(p or "").strip() for p in prompts]
    if len(cleaned) != len(views):
        raise ValueError(f"got {len(cleaned)} prompt(s) for {len(views)} view(s): give exactly one prompt per view")
    for k, (prompt, view) in enumerate(zip(cleaned, views)):
        if not prompt:
            raise ValueError(f"prompt {k + 1} (for view {view}) is empty: write what this view should show")
    return cleaned


def check_readable(pipe, prompts: Sequence[str], model: str) -> None:
    """ValueError when the model cannot read a prompt: a word outside its closed vocabulary, or more
    tokens than it keeps. The sentences are `prompt_warnings`', the ones `anagram generate` and a
    Python call warn with (they list what the model knows); the page refuses instead of warning."""
    tokenizer = getattr(pipe, "tokenizer", None)
    if tokenizer is None:
        return
    problems = prompt_warnings(tokenizer, prompts, model, getattr(pipe, "text_encoder", None))
    if problems:
        raise ValueError("\n".join(problems))


__all__ = ["check_prompts", "check_readable"]
