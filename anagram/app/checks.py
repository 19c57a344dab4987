"""Checks of a page's input that the request parser cannot make without the model: each failure is
one sentence that says what to change, shown in the page (never a traceback).

`Request.build` already refuses unknown views and bad method settings, and the pipeline refuses
views that cannot act on the model's samples (a jigsaw of 5 pieces a side on a 32-pixel image) before
any step runs. Checked here: the prompts of the page (one per view, none empty), and the prompts
against the model's tokenizer: a concept word the model does not know (its tokenizer has no token
for it and spells it letter by letter, or maps it to the unknown token) and a prompt longer than
the tokenizer keeps.
"""

from __future__ import annotations

from typing import Sequence

from ..method import parse_concept

SUBWORD_MARKS = ("</w>", "Ġ", "▁", "##")


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


def _bare(token: str) -> str:
    for mark in SUBWORD_MARKS:
        token = token.replace(mark, "")
    return token


def unknown_word(tokenizer, word: str) -> bool:
    """Whether ``tokenizer`` has no token for ``word``: it maps a piece to the unknown token, or spells
    a word of two or more letters one character at a time."""
    tokens = tokenizer.tokenize(word)
    unk = getattr(tokenizer, "unk_token", None)
    if unk is not None and unk in tokens and unk not in word:
        return True
    letters = [_bare(token) for token in tokens]
    return len(word) > 1 and len(letters) == len(word.replace(" ", "")) and all(len(t) == 1 for t in letters)


def check_tokens(tokenizer, full_prompts: Sequence[str]) -> None:
    """ValueError when a prompt's concept word is unknown to the model or a prompt is too long."""
    if tokenizer is None:
        return
    limit = getattr(tokenizer, "model_max_length", None)
    for prompt in full_prompts:
        clean, concept = parse_concept(prompt)
        for word in concept.split():
            if unknown_word(tokenizer, word):
                raise ValueError(f"the model does not know the word {word!r} (the concept of {clean!r}): its "
                                 "tokenizer has no token for it; use a word the model was trained on, or mark "
                                 "another concept with [brackets]")
        ids = tokenizer(clean).input_ids
        if limit and limit < 10_000 and len(ids) > limit:
            raise ValueError(f"the prompt {clean!r} is {len(ids)} tokens long; this model keeps {limit}: shorten it "
                             "(or the style prefix)")


__all__ = ["check_prompts", "check_tokens", "unknown_word"]
