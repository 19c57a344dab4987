"""Concept tokens (spec §5): default last word, [brackets], CLIP and T5 tokenisation, clear errors."""

import pytest

from anagram.method.concepts import ConceptError, concept_token_indices, parse_concept
from tiny_models import clip_tokenizer, t5_tokenizer

TOKENIZERS = {"clip": clip_tokenizer, "t5": t5_tokenizer}


def padded_ids(tokenizer, prompt):
    return tokenizer(prompt, padding="max_length", max_length=tokenizer.model_max_length, truncation=True).input_ids


def tokens_at(tokenizer, prompt, indices):
    ids = padded_ids(tokenizer, prompt)
    return [t.replace("</w>", "").replace("\u2581", "") for t in tokenizer.convert_ids_to_tokens([ids[i] for i in indices])]


@pytest.mark.parametrize(
    "prompt, clean, concept",
    [
        ("an oil painting of a rabbit", "an oil painting of a rabbit", "rabbit"),
        ("an oil painting of a rabbit.", "an oil painting of a rabbit.", "rabbit"),
        ("a photo of a 'duck'!  ", "a photo of a 'duck'!  ", "duck"),
        ("a painting of a [red fox] in snow", "a painting of a red fox in snow", "red fox"),
        ("[ old man ] in a kitchen", "old man in a kitchen", "old man"),
        ("a drawing of a [dog]", "a drawing of a dog", "dog"),
    ],
)
def test_parse_concept(prompt, clean, concept):
    assert parse_concept(prompt) == (clean, concept)


@pytest.mark.parametrize("prompt", ["a [red fox", "a red] fox", "a [red] [fox]", "a ]red[ fox", "a [[red]] fox"])
def test_unbalanced_or_repeated_brackets_are_errors(prompt):
    with pytest.raises(ConceptError, match="bracket"):
        parse_concept(prompt)


@pytest.mark.parametrize("prompt", ["", "   "])
def test_empty_prompt_is_an_error(prompt):
    with pytest.raises(ConceptError, match="empty prompt"):
        parse_concept(prompt)


def test_empty_concept_is_an_error():
    with pytest.raises(ConceptError, match="empty concept"):
        parse_concept("a painting of a [ ] dog")
    with pytest.raises(ConceptError, match="no letters"):
        parse_concept("a painting of a dog ...")


@pytest.mark.parametrize("kind", ["clip", "t5"])
@pytest.mark.parametrize(
    "prompt, concept_tokens",
    [
        ("an oil painting of a rabbit", ["rabbit"]),
        ("an oil painting of a rabbit.", ["rabbit"]),
        ("a painting of a [red fox] in snow", ["red", "fox"]),
        ("[old man] in a kitchen", ["old", "man"]),  # CLIP's merges spell "man" as "m" + "an"
        ("[young lady] in a kitchen", ["young", "lady"]),
        ("a photo of a duck , a duck", ["duck"]),
    ],
)
def test_indices_point_at_the_concept(kind, prompt, concept_tokens):
    tokenizer = TOKENIZERS[kind]()
    clean, indices = concept_token_indices(tokenizer, prompt)
    assert clean == parse_concept(prompt)[0]
    found = tokens_at(tokenizer, clean, indices)
    # compare spellings: a word may be several sub-word tokens
    assert "".join(found) == "".join(concept_tokens)
    assert indices == list(range(indices[0], indices[0] + len(found)))


def test_bos_offsets_differ_between_clip_and_t5():
    # CLIP puts <|startoftext|> first, T5 has no BOS: the same word sits one position later in CLIP
    _, clip_idx = concept_token_indices(clip_tokenizer(), "a [dog] in snow")
    _, t5_idx = concept_token_indices(t5_tokenizer(), "a [dog] in snow")
    assert clip_idx == [2] and t5_idx == [1]


def test_default_picks_the_last_occurrence():
    tokenizer = clip_tokenizer()
    _, indices = concept_token_indices(tokenizer, "a duck and a duck")
    assert indices == [5]


def test_concept_of_unknown_word_spans_its_sub_tokens():
    tokenizer = t5_tokenizer()  # "xyz" is not in the vocabulary: spelled letter by letter
    clean, indices = concept_token_indices(tokenizer, "a painting of a [xyz]")
    assert len(indices) >= 2
    assert "".join(tokens_at(tokenizer, clean, indices)) == "xyz"


@pytest.mark.parametrize("kind", ["clip", "t5"])
def test_truncated_concept_is_a_clear_error(kind):
    tokenizer = TOKENIZERS[kind]()  # model_max_length = 16
    prompt = "a painting of a rabbit and a duck and a red fox in the snow of the old house"
    with pytest.raises(ConceptError, match="truncated away.*16 tokens"):
        concept_token_indices(tokenizer, prompt)
    # the same concept early in the prompt is fine
    clean, indices = concept_token_indices(tokenizer, "a [rabbit] and a duck and a red fox in the snow of the old house")
    assert tokens_at(tokenizer, clean, indices) == ["rabbit"]


def test_concept_changed_by_tokenisation_is_a_clear_error():
    # glued to the previous word, sentencepiece spells "ared" letter by letter: "red" is not a token
    with pytest.raises(ConceptError, match=r"is not in the tokenised prompt \(tokens: .*\[brackets\]"):
        concept_token_indices(t5_tokenizer(), "a painting of a[red fox] in snow")


def test_explicit_concept():
    tokenizer = clip_tokenizer()
    clean, indices = concept_token_indices(tokenizer, "a red fox in snow", concept="red fox")
    assert clean == "a red fox in snow" and tokens_at(tokenizer, clean, indices) == ["red", "fox"]
    with pytest.raises(ConceptError, match="does not occur"):
        concept_token_indices(tokenizer, "a red fox in snow", concept="castle")
    with pytest.raises(ConceptError, match="brackets"):
        concept_token_indices(tokenizer, "a [red fox] in snow", concept="snow")


def test_empty_prompt_indices_error():
    with pytest.raises(ConceptError):
        concept_token_indices(clip_tokenizer(), "")
