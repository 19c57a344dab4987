"""The web app's logic apart from the page: form checks, tokenizer checks, served paths, stems."""

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from anagram.app.checks import check_tokens, unknown_word
from anagram.app.generation import GenerateForm, build_request, run
from anagram.app.models import ModelPool, UnknownModelError
from anagram.app.results import OutsideFolderError, inside
from anagram.pipelines.loading import builtin_models
from anagram.views import ViewError


@pytest.fixture(scope="module")
def pool():
    return ModelPool(["digits"], device="cpu")


def form(**changes):
    values = dict(prompts=["a digit six", "a digit nine"], views=["identity", "rotate_180"], steps=2)
    values.update(changes)
    return GenerateForm(**values)


def test_form_mistakes_are_said_plainly(pool):
    with pytest.raises(ValueError, match="prompt 2 .* is empty"):
        build_request(form(prompts=["a digit six", " "]), pool)
    with pytest.raises(ValueError, match="exactly one prompt per view"):
        build_request(form(prompts=["a digit six"]), pool)
    with pytest.raises(ValueError, match="at least one view"):
        build_request(form(views=[], prompts=[]), pool)
    with pytest.raises(UnknownModelError, match="this app serves digits"):
        build_request(form(model="someone/else"), pool)
    with pytest.raises(ViewError, match="unknown view"):
        build_request(form(views=["identity", "rotate_181"]), pool)
    from anagram.method import MultiTask

    request = build_request(form(views=["identity", "jigsaw:4,seed=3"], method="mtl", balance=True,
                                 rectify=MultiTask().rectify, anti_seg=True), pool)
    assert request.views[1].params() == {"grid": 4, "seed": 3} and request.method_record() == "mtl"
    assert build_request(form(), pool).method is None  # every switch off: the baseline


def test_unknown_concept_words_and_long_prompts():
    tokenizer = AutoTokenizer.from_pretrained(builtin_models()["digits"] / "tokenizer")
    assert unknown_word(tokenizer, "banana") and not unknown_word(tokenizer, "six")
    check_tokens(tokenizer, ["a digit six"])
    with pytest.raises(ValueError, match="does not know the word 'banana'"):
        check_tokens(tokenizer, ["a digit banana"])
    with pytest.raises(ValueError, match="tokens long"):
        check_tokens(tokenizer, ["a digit six and a digit six and a digit six"])


def test_a_view_the_model_size_cannot_take_is_refused_before_sampling(pool, tmp_path):
    request = build_request(form(views=["identity", "jigsaw:5"]), pool)
    with pytest.raises(ViewError, match="not divisible"):
        run(request, [0], pool, tmp_path)
    assert not list(tmp_path.iterdir())


def test_paths_from_a_page_must_lie_in_a_served_folder(tmp_path):
    (tmp_path / "out" / "run").mkdir(parents=True)
    assert inside(tmp_path / "out" / "run", [tmp_path / "out"]) == (tmp_path / "out" / "run").resolve()
    for outside in (tmp_path, tmp_path / "out" / ".." / "elsewhere", Path("/etc/passwd")):
        with pytest.raises(OutsideFolderError):
            inside(outside, [tmp_path / "out"])


def test_browse_sorts_by_a_score_and_pages(tmp_path):
    from anagram.app.browse import listing, sample_folders
    from test_print_sheet import make_sample

    run = tmp_path / "out" / "run"
    run.mkdir(parents=True)
    for k in range(10):
        make_sample(run, f"s{k}", ["identity", "rotate_180"], [f"a{k}", f"b{k}"])
    (run / "metrics.csv").write_text("stem,alignment\n" + "".join(f"s{k},{(k * 7) % 10 / 10}\n" for k in range(9)))
    assert sample_folders([tmp_path / "out"]) == [run.resolve()]
    found = listing(run, [tmp_path / "out"], sort_by="alignment")
    values = [found.scores.get(s.stem, {}).get("alignment") for s in found.samples]
    assert values[:9] == sorted(values[:9], reverse=True) and values[9] is None  # unscored last
    assert found.pages(8) == 2 and [rank for rank, _ in found.page(2, 8)] == [9, 10]
    assert "alignment 0.9" in found.caption(1, found.samples[0])
    with pytest.raises(ValueError, match="no such score"):
        listing(run, [tmp_path / "out"], sort_by="beauty")
    with pytest.raises(OutsideFolderError):
        listing(tmp_path, [tmp_path / "out"])
