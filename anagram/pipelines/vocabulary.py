"""What a model cannot read in a prompt, said once and in one place for Python and the command line.

The shipped testbed models (``digits``, ``glyphs``) have closed vocabularies: their tokenizers know a
few dozen words (``digit``, ``six``, ``letter``, ``q``, ``bold`` ...). A word outside one ("a cat",
"a digit eleven") is spelt letter by letter or mapped to the unknown token, and that view shows a
blob with no readable word. `prompt_warnings` finds such words (and prompts longer than the
tokenizer keeps) and says what the model knows; a full CLIP or T5 vocabulary spells any word, so it
is not checked for words.

What a model knows is what its text encoder can tell apart, not every piece of its tokenizer: the
testbed tokenizers hold the BPE pieces that build each word (``n</w>`` ends "an", ``x</w>`` ends
"six"), and those pieces read as the unknown token (their embedding is its embedding,
`anagram.testbed.trainer.tie_fragment_embeddings`). Given the text encoder, `known_words` leaves
them out, so ``digits`` is not said to know the letters e, f, g, n, o, r, t and x.

Every anagram pipeline call warns with `warn_unreadable_prompts` (a Python `UnknownWordWarning`,
before any step runs); `anagram generate`/`batch` print the same sentences (`anagram.runs.model`'s
`LoadedModel.warnings`) and silence the pipeline's copy.
"""

from __future__ import annotations

import os
import re
import sys
import warnings
from pathlib import Path
from typing import Sequence

# A tokenizer this small was built for a closed set of words (the shipped testbed models); a full
# CLIP or T5 vocabulary (tens of thousands of pieces) spells any word, so it is not checked.
CLOSED_VOCABULARY_MAX = 1000
ALPHABET_MIN = 3  # single letters listed apart ("single letters: a-z") only when there are this many


class UnknownWordWarning(UserWarning):
    """A prompt holds a word the model cannot read, or is longer than its tokenizer keeps."""


def read_as_unknown(tokenizer, text_encoder) -> set[str]:
    """The tokens ``text_encoder`` cannot tell from the unknown token: their input embedding is its
    embedding (the BPE pieces of the testbed models). Empty without a text encoder or an unknown token."""
    unk = getattr(tokenizer, "unk_token_id", None)
    embeddings = getattr(text_encoder, "get_input_embeddings", None)
    if unk is None or embeddings is None:
        return set()
    weight = getattr(embeddings(), "weight", None)
    if weight is None or weight.device.type == "meta" or not 0 <= unk < weight.shape[0]:
        return set()
    same = (weight.detach() == weight.detach()[unk]).all(dim=-1).tolist()
    return {token for token, i in tokenizer.get_vocab().items() if i != unk and i < len(same) and same[i]}


def known_words(tokenizer, text_encoder=None) -> list[str] | None:
    """The words a closed-vocabulary tokenizer spells as one token each; None for an open vocabulary.

    Whole words first, then the single letters (the ``glyphs`` model's letters a-z). Words are read
    from CLIP's BPE (``word</w>``) or SentencePiece (``▁word``) pieces; a small vocabulary in neither
    form (no whole words found) is not checked either. With ``text_encoder``, pieces it reads as the
    unknown token are no words (`read_as_unknown`)."""
    vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}
    if not vocab or len(vocab) > CLOSED_VOCABULARY_MAX:
        return None
    vocab = set(vocab) - read_as_unknown(tokenizer, text_encoder)
    words = {token[: -len("</w>")] for token in vocab if token.endswith("</w>") and not token.startswith("<|")}
    words |= {token[1:] for token in vocab if token.startswith("\u2581") and len(token) > 1}
    words = {w.lower() for w in words if any(ch.isalnum() for ch in w)}  # not punctuation
    if not words:
        return None
    return sorted(words, key=lambda w: (len(w) == 1 and w.isalpha(), w))


def describe_words(words: Sequence[str]) -> str:
    """``an, digit, ..., zero, 0-9; single letters: a-z``: the words, then numerals and letters in short.

    Letters are listed apart only as an alphabet (three or more: the ``glyphs`` model's a-z); the
    article "a" alone is a word like the others (``a, an, digit, ...`` for ``digits``)."""
    singles = [w for w in words if len(w) == 1 and w.isalnum()]
    digits = sorted(w for w in singles if w.isdigit())
    letters = sorted(w for w in singles if not w.isdigit())
    if len(letters) < ALPHABET_MIN:
        letters = []
    apart = set(digits) | set(letters)
    parts = sorted(w for w in words if w not in apart)
    if digits:
        parts.append("0-9" if len(digits) == 10 else ", ".join(digits))
    text = ", ".join(parts)
    if letters:
        text += f"; single letters: {'a-z' if len(letters) == 26 else ', '.join(letters)}"
    return text


def prompt_warnings(tokenizer, prompts: Sequence[str], model: str, text_encoder=None) -> list[str]:
    """What the model will not read in these prompts: words outside a closed vocabulary, and prompts
    longer than the tokenizer keeps (their ends, where the concept usually is, are cut). Give the
    ``text_encoder`` too: only then are the pieces it reads as unknown told from words."""
    from ..method import strip_concept_marks
    from ..method.concepts import TOKENIZER_LOCK

    found = []
    words = known_words(tokenizer, text_encoder)
    limit = getattr(tokenizer, "model_max_length", None)
    for prompt in prompts:
        plain = strip_concept_marks(prompt)
        unknown = []
        if words is not None:
            unknown = [w for w in re.findall(r"[^\W_]+", plain.lower()) if w not in words]
            if unknown:
                found.append(f"the model '{model}' does not know {', '.join(map(repr, unknown))} (prompt "
                             f"{plain!r}): that view will show no readable word. It knows: {describe_words(words)}")
        if limit and limit < 10_000 and not unknown:  # unknown words are spelt letter by letter: said above
            with TOKENIZER_LOCK:
                length = len(tokenizer(plain, verbose=False).input_ids)
            if length > limit:
                found.append(f"prompt {plain!r} is {length} tokens, the model '{model}' reads {limit} (with "
                             "start and end): its end is cut off; shorten it")
    return found


def model_label(pipe) -> str:
    """The name a pipeline was loaded by: a built-in name (``digits``) for a shipped folder, else the
    folder or hub id it came from, else its class name."""
    from .loading import builtin_models

    location = getattr(pipe, "name_or_path", None)
    if not location:
        return type(pipe).__name__
    for name, folder in builtin_models().items():
        try:
            if Path(str(location)).expanduser().resolve() == folder.resolve():
                return name
        except OSError:
            pass
    return str(location)


def _caller_stacklevel() -> int:
    """The stack level of the first frame outside anagram, torch and contextlib: the user's call."""
    skipped = (str(Path(__file__).resolve().parents[1]) + os.sep, f"{os.sep}torch{os.sep}", f"{os.sep}contextlib.py")
    frame, level = sys._getframe(1), 1
    while frame is not None and any(part in frame.f_code.co_filename for part in skipped):
        frame, level = frame.f_back, level + 1
    return level


def warn_unreadable_prompts(pipe, prompts: Sequence[str]) -> list[str]:
    """`UnknownWordWarning` for each problem `prompt_warnings` finds with ``pipe``'s tokenizer; returns them."""
    tokenizer = getattr(pipe, "tokenizer", None)
    if tokenizer is None:
        return []
    found = prompt_warnings(tokenizer, prompts, model_label(pipe), getattr(pipe, "text_encoder", None))
    if found:
        level = _caller_stacklevel()
        for line in found:
            warnings.warn(line, UnknownWordWarning, stacklevel=level)
    return found


__all__ = ["CLOSED_VOCABULARY_MAX", "UnknownWordWarning", "describe_words", "known_words", "model_label",
           "prompt_warnings", "read_as_unknown", "warn_unreadable_prompts"]
