"""Concept tokens of a prompt (method spec §5): which text tokens anti-segregation pulls together.

By default the concept is the last word of the prompt ("an oil painting of a rabbit" ->
"rabbit"); the user can mark it explicitly with one pair of square brackets ("a painting of a
[red fox] in snow" -> "red fox"), which are removed from the prompt that is encoded. A concept
that cannot be located in the tokenised prompt (for example because truncation cut it away) is
a `ConceptError`, never a silent no-op.
"""

from __future__ import annotations

import string
import threading
from typing import Any

__all__ = ["TOKENIZER_LOCK", "ConceptError", "concept_token_indices", "parse_concept", "strip_concept_marks"]

# transformers' tokenizers (the Rust backend) keep their padding and truncation settings on the
# object and change them per call, so two threads tokenizing at once can get each other's settings:
# every use of a pipeline's tokenizer takes this lock (tokenizing is cheap next to denoising).
TOKENIZER_LOCK = threading.RLock()

_PUNCTUATION = string.punctuation + "\u2019\u201d\u201c\u2018"


class ConceptError(ValueError):
    """A prompt's concept is malformed or cannot be found among its tokens."""


def _parse(prompt: str) -> tuple[str, str, int]:
    """``(clean_prompt, concept, start)`` with ``clean_prompt[start:].startswith(concept)``."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise ConceptError(f"empty prompt {prompt!r}: a prompt needs at least one word to name its concept")
    opens, closes = prompt.count("["), prompt.count("]")
    if opens == 0 and closes == 0:
        clean = prompt
        # default concept: the last word, without surrounding punctuation ("a dog." -> "dog")
        stripped = clean.rstrip()
        last_start = len(stripped) - len(stripped.split()[-1])
        word = stripped[last_start:]
        concept = word.strip(_PUNCTUATION)
        if not concept:
            raise ConceptError(
                f"the last word of prompt {prompt!r} has no letters to use as the concept; "
                "mark the concept with [brackets]"
            )
        return clean, concept, last_start + word.index(concept)
    i, j = prompt.find("["), prompt.find("]")
    if opens != 1 or closes != 1 or j < i:
        raise ConceptError(
            f"prompt {prompt!r} has unbalanced or repeated brackets; mark exactly one concept, "
            "like 'a painting of a [red fox] in snow'"
        )
    before, inner, after = prompt[:i], prompt[i + 1 : j], prompt[j + 1 :]
    concept = " ".join(inner.split())
    if not concept:
        raise ConceptError(f"prompt {prompt!r} marks an empty concept '[]'")
    # keep the user's spacing outside the brackets; only the padding inside them is dropped
    clean = before + concept + after
    return clean, concept, len(before)


def parse_concept(prompt: str) -> tuple[str, str]:
    """Split a prompt into ``(clean_prompt, concept_text)``.

    >>> parse_concept("a painting of a [red fox] in snow")
    ('a painting of a red fox in snow', 'red fox')
    >>> parse_concept("an oil painting of a rabbit.")
    ('an oil painting of a rabbit.', 'rabbit')
    """
    clean, concept, _ = _parse(prompt)
    return clean, concept


def _ids(tokenizer: Any, text: str) -> list[int]:
    """Token ids of ``text`` without special tokens (BOS/EOS) or padding."""
    if not text.strip():
        return []
    # tokenize + convert rather than __call__: no "sequence longer than max length" warning for
    # long prompts, whose truncation is checked explicitly below
    return list(tokenizer.convert_tokens_to_ids(tokenizer.tokenize(text)))


def _find_all(haystack: list[int], needle: list[int]) -> list[int]:
    n = len(needle)
    return [s for s in range(len(haystack) - n + 1) if haystack[s : s + n] == needle]


def _offset(full: list[int], raw: list[int]) -> int:
    """Where the prompt's own tokens start in the padded ids (1 after a BOS, 0 for T5): the shift
    that lines up the longest run of leading tokens (truncation may replace the tail by EOS)."""

    def run(off: int) -> int:
        n = 0
        while n < len(raw) and off + n < len(full) and full[off + n] == raw[n]:
            n += 1
        return n

    return max(range(len(full)), key=lambda off: (run(off), -off), default=0)


def concept_token_indices(tokenizer: Any, prompt: str, concept: str | None = None) -> tuple[str, list[int]]:
    """Positions of the concept's tokens in the padded, truncated tokenisation of the prompt.

    Returns ``(clean_prompt, indices)``; ``indices`` index
    ``tokenizer(clean_prompt, padding="max_length", max_length=tokenizer.model_max_length,
    truncation=True).input_ids`` (what the Stable Diffusion and IF pipelines encode, so the
    caller must encode exactly ``clean_prompt``). Works with and without a BOS token (CLIP BPE,
    T5 sentencepiece).

    ``concept`` overrides the default/bracketed concept of an unbracketed prompt.

    The concept is located by tokenising the text before it and the concept itself and checking
    that they form a prefix of the prompt's tokens (exact for word-level tokenizers); when the
    context changes the tokens (a concept glued to the previous word, a byte-level BPE), the
    concept's token sequence is searched for instead, nearest to its expected position.
    """
    clean, parsed, start = _parse(prompt)
    if concept is not None:
        if "[" in prompt:
            raise ConceptError(f"prompt {prompt!r} marks a concept with brackets and concept={concept!r} is also given")
        concept = " ".join(concept.split())
        start = clean.rfind(concept)
        if not concept or start < 0:
            raise ConceptError(f"concept {concept!r} does not occur in prompt {prompt!r}")
    else:
        concept = parsed

    max_length = tokenizer.model_max_length
    with TOKENIZER_LOCK:
        full = list(tokenizer(clean, padding="max_length", max_length=max_length, truncation=True).input_ids)
        raw = _ids(tokenizer, clean)
        prefix = _ids(tokenizer, clean[:start])
        candidates = (_ids(tokenizer, concept), _ids(tokenizer, " " + concept))
        tokens = tokenizer.convert_ids_to_tokens(raw)
    offset = _offset(full, raw)

    positions: list[int] = []
    for candidate in candidates:
        if not candidate:
            continue
        n = len(candidate)
        if raw[: len(prefix)] == prefix and raw[len(prefix) : len(prefix) + n] == candidate:
            positions = list(range(len(prefix), len(prefix) + n))
            break
        hits = _find_all(raw, candidate)
        if hits:
            s = min(hits, key=lambda h: abs(h - len(prefix)))
            positions = list(range(s, s + n))
            break

    if not positions:
        raise ConceptError(
            f"concept {concept!r} of prompt {prompt!r} is not in the tokenised prompt (tokens: {tokens}); "
            "mark it with [brackets] around whole words, e.g. 'a painting of a [red fox] in snow'"
        )
    indices = [offset + p for p in positions]
    # truncation (model_max_length, plus the EOS slot it reserves) may have cut the concept off
    if any(i >= len(full) or full[i] != raw[p] for i, p in zip(indices, positions)):
        raise ConceptError(
            f"concept {concept!r} of prompt {prompt!r} is truncated away: the tokenizer keeps "
            f"{max_length} tokens (tokens: {tokens}); shorten the prompt or move the concept earlier"
        )
    return clean, indices


def strip_concept_marks(prompt: str) -> str:
    """The prompt as encoded: concept brackets (``a [red fox]``) removed."""
    return parse_concept(prompt)[0] if ("[" in prompt or "]" in prompt) else prompt
