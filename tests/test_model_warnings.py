"""Said before sampling: words the built-in model cannot read, sizes it was not trained at, colour
views on a grey model; and the built-in names and declared defaults from Python."""

import pytest
import torch
from typer.testing import CliRunner

from anagram import AnagramPipeline
from anagram.cli import app
from anagram.runs.model import LoadedModel, known_words
from anagram.runs.request import Request


@pytest.fixture(scope="module")
def digits():
    return LoadedModel.load("digits")


def test_words_outside_the_vocabulary_are_named_with_what_the_model_knows(digits):
    warnings = digits.warnings(Request.build(["a cat", "a digit eleven"]))
    assert len(warnings) == 2
    assert "'cat'" in warnings[0] and "'eleven'" in warnings[1]
    assert "It knows:" in warnings[0] and "seven" in warnings[0]
    assert digits.warnings(Request.build(["a digit six", "the number 9"])) == []
    assert known_words(digits.pipe.tokenizer) is not None


def test_long_prompts_size_and_colour_views(digits):
    [long] = digits.warnings(Request.build(["a handwritten drawing of the digit seven"]))
    assert "cut off" in long
    [size] = digits.warnings(Request.build(["a digit six"], size=48))
    assert "trained at 32 px" in size
    [colour] = digits.warnings(Request.build(["a digit six", "a digit nine"], ["grayscale", "color"]))
    assert "grayscale, color" in colour and "flat grey" in colour


def test_generate_prints_the_warning_before_sampling(tmp_path):
    result = CliRunner().invoke(app, ["generate", "a cat", "a digit nine", "--steps", "1", "--out", str(tmp_path)],
                                env={"COLUMNS": "300"})
    text = " ".join(result.output.split())
    assert result.exit_code == 0 and "warning: the model 'digits' does not know 'cat'" in text
    assert text.index("warning:") < text.index("wrote")


def test_batch_notes_the_warning_once_per_job(tmp_path):
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("prompts,seeds,steps\na cat|a digit nine,0-1,1\n")
    result = CliRunner().invoke(app, ["batch", str(jobs), "--out", str(tmp_path / "b"), "--no-evaluate"],
                                env={"COLUMNS": "300"})
    text = " ".join(result.output.split())
    assert result.exit_code == 0, text
    assert text.count("does not know 'cat'") == 1 and "jobs.csv:2: warning:" in text


def test_from_pretrained_takes_builtin_names_and_the_declared_defaults():
    pipe = AnagramPipeline.from_pretrained("digits")
    assert pipe.call_defaults() == (30, 3.0)  # anagram_defaults.json, as the command line uses
    steps = []
    out = pipe(["a digit six", "a digit nine"], generator=torch.Generator().manual_seed(0),
               callback_on_step_end=lambda p, i, t, k: steps.append(i) or {})
    assert len(steps) == 30 and out.images[0].size == (32, 32)
    cli = LoadedModel.load("digits").generate(Request.build(["a digit six", "a digit nine"]), [0])[0]
    assert out.images[0].tobytes() == cli.image.tobytes()  # Python and CLI defaults agree


def test_python_calls_warn_about_unknown_words_as_the_command_line_does():
    """`pipe(...)` from Python says what `anagram generate` says (one function, `prompt_warnings`),
    pointing at the caller's line; known words pass silently."""
    import warnings

    from anagram.pipelines.vocabulary import UnknownWordWarning

    pipe = AnagramPipeline.from_pretrained("digits")
    with pytest.warns(UnknownWordWarning) as caught:
        pipe(["a cat", "a digit eleven"], num_inference_steps=1, generator=torch.Generator().manual_seed(0))
    messages = [str(w.message) for w in caught if issubclass(w.category, UnknownWordWarning)]
    assert len(messages) == 2
    assert "the model 'digits' does not know 'cat'" in messages[0] and "'eleven'" in messages[1]
    assert "It knows:" in messages[0] and "seven" in messages[0]
    assert all(w.filename == __file__ for w in caught), [w.filename for w in caught]
    cli = LoadedModel.load("digits").warnings(Request.build(["a cat", "a digit eleven"]))
    assert messages == cli  # the same sentences
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnknownWordWarning)
        pipe(["a digit six", "the number 9"], num_inference_steps=1)


def test_the_glyph_model_vocabulary_is_checked_too():
    """The glyphs model knows letters a-z, digits, digit words and style words, not other words."""
    import warnings

    from anagram.pipelines.vocabulary import UnknownWordWarning

    pipe = AnagramPipeline.from_pretrained("glyphs")
    words = known_words(pipe.tokenizer)
    assert {"q", "z", "7", "seven", "bold", "letter"} <= set(words) and "cat" not in words
    with pytest.warns(UnknownWordWarning, match="the model 'glyphs' does not know 'cat'.*It knows: .*bold.*"
                                                "zero, 0-9; single letters: a-z$"):
        pipe(["a letter cat", "a letter q"], num_inference_steps=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnknownWordWarning)
        pipe(["a bold letter q", "an italic digit seven"], num_inference_steps=1)


def test_the_command_line_says_it_once_in_its_own_words(tmp_path):
    import warnings

    from anagram.pipelines.vocabulary import UnknownWordWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = CliRunner().invoke(app, ["generate", "a cat", "a digit nine", "--steps", "1", "--out",
                                          str(tmp_path)], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert result.output.count("does not know 'cat'") == 1
    assert not [w for w in caught if issubclass(w.category, UnknownWordWarning)]  # not a second time


def test_written_paths_stay_on_their_line_in_a_narrow_terminal(tmp_path):
    """At 80 columns a long output name used to go to the line after 'wrote', alone."""
    out = tmp_path / "a-rather-long-folder-name-for-the-outputs"
    result = CliRunner().invoke(app, ["generate", "a digit six", "a digit nine", "--steps", "1", "--out", str(out)],
                                env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    [line] = [line for line in result.output.splitlines() if "wrote" in line]
    assert line.startswith("wrote ") and line.endswith(".png") and len(line) > 80


def test_a_typo_of_a_builtin_name_is_answered_with_the_name():
    from anagram.pipelines.loading import ModelLoadError, locate

    with pytest.raises(ModelLoadError, match="did you mean 'digits'.*built-in: digits"):
        locate("digts")
    result = CliRunner().invoke(app, ["generate", "a digit six", "--model", "Digits"], env={"COLUMNS": "300"})
    assert result.exit_code == 2 and "did you mean 'digits'" in result.output


def test_three_prompts_without_views_say_how_to_give_them():
    with pytest.raises(ValueError, match=r"3 prompts need 3 views.*--views .*views=\[\.\.\.\] in Python"):
        Request.build(["a digit six", "a digit nine", "a digit one"])


def test_sentencepiece_vocabularies_are_read_too():
    """A small T5 (SentencePiece) vocabulary: its words are '▁word' pieces; before, none were found and
    every word of every prompt was called unknown, with an empty list of known words."""
    from anagram.pipelines.vocabulary import prompt_warnings
    from tiny_models import t5_tokenizer

    [line] = prompt_warnings(t5_tokenizer(max_length=64), ["a painting of a red fox", "a zebra"], "tiny")
    assert "does not know 'zebra'" in line and "red, seven" in line and ", 0-9" in line


def test_a_view_that_cannot_cut_a_latent_says_so_in_image_sizes():
    """A latent model's views act on the latent: 'use a size that is a multiple of 5, e.g. 15 or 20'
    was in latent pixels, 8 times smaller than the --size a user gives."""
    from anagram.views.base import ViewError
    from tiny_models import sd_components

    pipe = AnagramPipeline(**sd_components())
    factor = pipe.vae_scale_factor
    assert factor > 1
    with pytest.raises(ViewError, match=rf"latent of the {16 * factor}x{16 * factor} image: multiply those sizes "
                                        rf"by {factor}"):
        pipe(["a red fox", "a duck"], views=["identity", "jigsaw:5"], height=16 * factor, width=16 * factor,
             num_inference_steps=1, output_type="latent")


def test_the_digits_model_knows_its_words_not_the_pieces_that_build_them(digits):
    """Its tokenizer holds the BPE pieces its words are built of ('n</w>' ends "an", 'x</w>' ends
    "six"); the text encoder reads them as the unknown token, so they are no words. The list said
    'single letters: a, e, f, g, n, o, r, t, x', and 'a digit x' passed without a word."""
    from anagram.pipelines.vocabulary import read_as_unknown

    tokenizer, text_encoder = digits.pipe.tokenizer, digits.pipe.text_encoder
    words = known_words(tokenizer, text_encoder)
    assert {"a", "an", "six", "handwritten", "7"} <= set(words) and not set("efgnortx") & set(words)
    assert {"n</w>", "x</w>", "hand"} <= read_as_unknown(tokenizer, text_encoder) and "six</w>" not in \
        read_as_unknown(tokenizer, text_encoder)
    [line] = digits.warnings(Request.build(["a digit x"]))
    assert "does not know 'x'" in line and "It knows: a, an, digit, " in line and line.endswith("zero, 0-9")


def test_a_view_the_model_size_cannot_take_is_refused_before_loading_with_sizes_the_cli_takes(tmp_path, monkeypatch):
    """jigsaw:5 on the 32 px digits model: the hint said 30 or 35, which --size refuses (multiples of
    8), and only once the weights were loaded. The folder's configs give the size: said first, 40."""
    from anagram.runs.sizes import check_view_sizes, folder_grid

    def no_loading(*args, **kwargs):
        raise AssertionError("the weights were loaded")

    monkeypatch.setattr(LoadedModel, "load", classmethod(no_loading))
    result = CliRunner().invoke(app, ["generate", "a digit six", "a digit nine", "--views", "identity,jigsaw:5",
                                      "--out", str(tmp_path)], env={"COLUMNS": "300"})
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and "not divisible by the 5x5 piece grid" in text, text
    assert "multiple of 40 (5 for the view, 8 for the image size), e.g. 40 or 80" in text and "35" not in text
    assert check_view_sizes(Request.build(["a", "b"], ["identity", "jigsaw:5"], size=40), folder_grid("digits")) is None
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("prompts,views\na digit six|a digit nine,identity|jigsaw:5\n")
    result = CliRunner().invoke(app, ["batch", str(jobs), "--out", str(tmp_path / "b"), "--no-evaluate"],
                                env={"COLUMNS": "300"})
    text = " ".join(result.output.split())
    assert result.exit_code != 0 and "jobs.csv:2:" in text and "e.g. 40 or 80" in text, text


def test_model_folders_say_their_grid_and_hub_ids_do_not(tmp_path):
    from anagram.runs.sizes import ModelGrid, check_view_sizes, folder_grid
    from anagram.views import ViewError
    from tiny_models import sd_components

    assert folder_grid("digits") == ModelGrid(32, "pixel", 1, 1)
    assert folder_grid("someone/some-model") is None and folder_grid(str(tmp_path)) is None
    pipe = AnagramPipeline(**sd_components())
    pipe.save_pretrained(tmp_path / "sd")
    factor, side = pipe.vae_scale_factor, pipe.default_size()[0]
    assert folder_grid(str(tmp_path / "sd")) == ModelGrid(side, "latent", factor, factor)
    request = Request.build(["a", "b"], ["identity", "jigsaw:5"], model=str(tmp_path / "sd"), size=16 * factor)
    with pytest.raises(ViewError, match=f"latent of the {16 * factor}x{16 * factor} image"):
        check_view_sizes(request, folder_grid(request.model))
