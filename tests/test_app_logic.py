"""The web app's logic apart from the page: form checks, unreadable prompts, served paths, stems."""

from pathlib import Path

import pytest

from anagram.app.checks import check_readable
from anagram.app.generation import GenerateForm, build_request, run
from anagram.app.models import ModelPool, UnknownModelError
from anagram.app.results import OutsideFolderError, inside
from anagram.pipelines.vocabulary import prompt_warnings
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


def test_unknown_words_and_long_prompts_are_refused_in_the_words_of_the_command_line(pool, tmp_path):
    """One check for the page, the command line and Python (`prompt_warnings`): the page refuses with
    the sentence `anagram generate` warns with, which lists the words the model knows."""
    pipe = pool.get("digits").pipe
    check_readable(pipe, ["a digit six", "the number 9"], "digits")
    with pytest.raises(ValueError, match="does not know 'banana'.*It knows: a, an, digit, .*zero, 0-9$"):
        check_readable(pipe, ["a digit banana"], "digits")
    with pytest.raises(ValueError, match="does not know 'cat'"):  # any word of the prompt, not only its concept
        check_readable(pipe, ["a cat digit six"], "digits")
    with pytest.raises(ValueError, match="cut off"):
        check_readable(pipe, ["a handwritten drawing of the digit seven"], "digits")
    prompts = ["a digit six", "a digit banana"]
    with pytest.raises(ValueError) as error:
        run(build_request(form(prompts=prompts), pool), [0], pool, tmp_path)
    assert str(error.value) == "\n".join(prompt_warnings(pipe.tokenizer, prompts, "digits", pipe.text_encoder))
    assert not list(tmp_path.iterdir())


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
