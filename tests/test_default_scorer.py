"""Which scorer `--method mtl` balances with: the model's declared one, else a CLIP by hub id; the record says.

The rule (`anagram.method.scorers.resolve_scorer`): MultiTask's scorer "auto" is the scorer the model
folder declares in anagram_defaults.json (a relative "clip:../x" is relative to that folder); a folder
that declares none gets CLIP openai/clip-vit-base-patch32 from the hub, and offline that fails early
with a message that says what to pass instead. An explicit --scorer wins.
"""

import json

import pytest
import torch
from typer.testing import CliRunner

from anagram import AnagramPipeline
from anagram.cli import app
from anagram.method import MultiTask
from anagram.method.scorers import (
    DEFAULT_CLIP, AttentionShareScorer, CLIPScorer, ScorerError, check_scorer_available, make_scorer,
    resolve_declared_scorer, resolve_scorer,
)
from anagram.pipelines.loading import builtin_models, read_declared_scorer
from anagram.runs.model import LoadedModel
from anagram.runs.request import Request
from anagram.testbed.glyph_clip import GLYPH_CLIP_DIR
from tiny_models import sd_components

HUB_CLIP = f"clip:{DEFAULT_CLIP}"


@pytest.fixture()
def empty_hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache and the hub switched off: nothing can be downloaded or found."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sd") / "model"
    AnagramPipeline(**sd_components()).save_pretrained(folder)
    assert not (folder / "anagram_defaults.json").exists()
    return folder


def test_the_method_default_is_auto_and_an_explicit_scorer_wins():
    assert MultiTask().scorer == "auto"
    assert resolve_scorer("auto", "attention") == "attention"
    assert resolve_scorer("auto", None) == HUB_CLIP
    assert resolve_scorer("clip:/some/folder", "attention") == "clip:/some/folder"
    assert resolve_scorer("attention", "clip:/x") == "attention"


def test_relative_declarations_are_relative_to_the_model_folder(tmp_path):
    assert resolve_declared_scorer("clip:../glyph_clip", tmp_path / "glyphs") == f"clip:{tmp_path / 'glyph_clip'}"
    assert resolve_declared_scorer("clip:./clip", tmp_path / "m") == f"clip:{tmp_path / 'm' / 'clip'}"
    assert resolve_declared_scorer("clip:openai/clip-vit-large-patch14", tmp_path) == "clip:openai/clip-vit-large-patch14"
    assert resolve_declared_scorer("attention", tmp_path) == "attention"


def test_glyph_model_declares_its_shipped_clip_and_digits_the_attention_scorer():
    glyphs = AnagramPipeline.from_pretrained("glyphs")
    assert glyphs.declared_scorer == f"clip:{GLYPH_CLIP_DIR}"
    assert (GLYPH_CLIP_DIR / "model.safetensors").is_file()
    assert isinstance(make_scorer("auto", glyphs.declared_scorer), CLIPScorer)
    # the digit classifier judges the digits tables: it must not be the scorer those samples balance with
    assert read_declared_scorer(builtin_models()["digits"]) == "attention"
    digits = LoadedModel.load("digits")
    assert digits.scorer(Request.build(["a digit six", "a digit nine"], method="mtl")) == "attention"
    assert isinstance(make_scorer("auto", digits.pipe.declared_scorer), AttentionShareScorer)
    assert digits.scorer(Request.build(["a digit six", "a digit nine"], method="baseline")) is None


def test_a_folder_without_declaration_gets_the_hub_clip(sd_folder):
    loaded = LoadedModel.load(str(sd_folder))
    assert loaded.pipe.declared_scorer is None
    request = Request.build(["a painting of a red fox", "a painting of a duck"], method="mtl", model=str(sd_folder))
    assert loaded.scorer(request) == HUB_CLIP
    explicit = Request.build(request.prompts, method=MultiTask(scorer="attention"), model=str(sd_folder))
    assert loaded.scorer(explicit) == "attention"


def test_offline_hub_clip_fails_early_with_what_to_do(sd_folder, empty_hub_cache, tmp_path):
    with pytest.raises(ScorerError, match="--scorer attention"):
        check_scorer_available(HUB_CLIP)
    assert check_scorer_available("attention") is None
    assert check_scorer_available(f"clip:{GLYPH_CLIP_DIR}") is None
    # the command line: a clear message and nothing sampled or written
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["generate", "a painting of a red fox", "a painting of a duck", "--model",
                                      str(sd_folder), "--steps", "2", "--size", "32", "--method", "mtl", "--out", str(out)])
    assert result.exit_code != 0
    text = " ".join(result.output.split())
    assert DEFAULT_CLIP in text and "--scorer attention" in text and "Traceback" not in text
    assert not list(out.glob("*.png"))
    # the Python API fails before the first denoising step
    pipe = AnagramPipeline.from_pretrained(str(sd_folder))
    steps = []
    with pytest.raises(ScorerError, match="--scorer attention"):
        pipe(["a painting of a red fox", "a painting of a duck"], views=["identity", "rotate_180"], method="mtl",
             num_inference_steps=2, height=32, width=32, output_type="latent",
             callback_on_step_end=lambda p, i, t, k: steps.append(i) or {})
    assert steps == []


def test_records_name_the_scorer_that_ran(tmp_path):
    runner = CliRunner()
    common = ["generate", "a letter b", "a letter q", "--model", "glyphs", "--steps", "2", "--views",
              "identity,rotate_180"]
    for method, extra, expected in [("mtl", [], f"clip:{GLYPH_CLIP_DIR}"), ("mtl", ["--scorer", "attention"], "attention"),
                                    ("baseline", [], None), ("mtl", ["--no-balance"], None)]:
        out = tmp_path / f"{method}{len(extra)}"
        result = runner.invoke(app, [*common, "--method", method, *extra, "--out", str(out)])
        assert result.exit_code == 0, result.output
        record = json.loads(next(out.glob("*.json")).read_text())
        assert record["scorer"] == expected, (method, extra)


def test_batch_records_the_declared_scorer(tmp_path):
    from anagram.runs.batch import run_batch

    jobs = tmp_path / "jobs.csv"
    jobs.write_text("prompts,views,method,seeds,steps\na digit six|a digit nine,\"identity,rotate_180\",mtl,0,2\n")
    result = run_batch(jobs, tmp_path / "out", model="digits")
    assert result.exit_code == 0
    records = [json.loads(p.read_text()) for p in (tmp_path / "out").glob("*.json") if "seed" in p.read_text()]
    assert [r["scorer"] for r in records] == ["attention"]


def test_the_scorer_balances_with_the_declared_clip_in_python(monkeypatch):
    """pipe(..., method="mtl") on the glyph model calls its CLIP (the code path of a user's CLIP)."""
    calls = []
    original = CLIPScorer.__call__

    def spy(self, inputs):
        calls.append(self.source)
        return original(self, inputs)

    monkeypatch.setattr(CLIPScorer, "__call__", spy)
    pipe = AnagramPipeline.from_pretrained("glyphs")
    pipe.set_progress_bar_config(disable=True)
    out = pipe(["a letter b", "a letter q"], views=["identity", "rotate_180"], method="mtl", num_inference_steps=3,
               generator=torch.Generator().manual_seed(0), output_type="pt")
    assert torch.isfinite(out.images).all()
    assert calls == [str(GLYPH_CLIP_DIR)] * 3


def test_built_in_models_are_the_generation_models_not_the_shipped_translator():
    # anagram/models/typeset is a TranslationPipeline: `--model typeset` must not be offered or tried.
    names = builtin_models()
    assert {"digits", "glyphs"} <= set(names)
    assert "typeset" not in names
