"""The glyph testbed's noise-aware CLIP: a user-style CLIP folder, loaded by `clip:`, that reads glyphs.

The bounds below are measured (training_log.json of the shipped folder holds the held-out numbers)
and leave a margin; a CLIP that stopped reading glyphs, or a preprocessing that drifted from the
training's, fails them.
"""

import json

import pytest
import torch

from anagram.method.scorers import CLIPScorer, ScoreInputs, make_scorer
from anagram.testbed import glyph_clip, glyphs
from anagram.testbed.glyph_clip import GLYPH_CLIP_DIR

HELD_OUT_SEED = 4242  # neither the training seed (0) nor the report's (1000)


@pytest.fixture(scope="module")
def scorer():
    found = make_scorer(f"clip:{GLYPH_CLIP_DIR}")
    assert isinstance(found, CLIPScorer)
    return found


def test_the_folder_is_what_a_user_clip_folder_is():
    from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

    files = {p.name for p in GLYPH_CLIP_DIR.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer_config.json", "preprocessor_config.json"} <= files
    assert not [p for p in GLYPH_CLIP_DIR.rglob("*") if p.suffix in {".bin", ".pt", ".pth", ".pkl", ".ckpt"}]
    assert sum(p.stat().st_size for p in GLYPH_CLIP_DIR.rglob("*") if p.is_file()) < 5_000_000
    model = CLIPModel.from_pretrained(GLYPH_CLIP_DIR, use_safetensors=True)
    assert model.config.vision_config.image_size == 32 and model.config.text_config.num_hidden_layers >= 1
    tokenizer = AutoTokenizer.from_pretrained(GLYPH_CLIP_DIR)
    assert "CLIPTokenizer" in type(tokenizer).__name__
    assert len(tokenizer("a bold letter q", add_special_tokens=False).input_ids) == 4  # every word one token
    processor = CLIPImageProcessor.from_pretrained(GLYPH_CLIP_DIR)
    assert processor.crop_size["height"] == 32 and list(processor.image_mean) == [0.5] * 3
    log = json.loads((GLYPH_CLIP_DIR / "training_log.json").read_text())
    assert set(log["heldout"]) == {"clean", "high", "mid", "low"}


def test_training_preprocessing_is_the_scorer_preprocessing(scorer):
    images = glyphs.random_glyphs(6, torch.Generator().manual_seed(1)).images
    images = images + 0.3 * torch.randn(images.shape, generator=torch.Generator().manual_seed(2))  # out of range too
    torch.testing.assert_close(scorer.preprocess(images), glyph_clip.pixel_values(images))


def test_clip_ranks_a_clean_render_own_prompt_above_the_other_35(scorer):
    labels = torch.arange(len(glyphs.CLASSES)).repeat(4)
    renders = glyph_clip.clean_pairs(labels, torch.Generator().manual_seed(HELD_OUT_SEED))
    result = glyph_clip.ranking_accuracy(scorer, renders.images, renders.labels)
    assert result["n"] == 144
    assert result["accuracy"] >= 0.65, result  # measured 0.75 here (0.758 on the 360 of training_log.json)
    assert result["own_cosine"] > result["other_cosine"] + 0.2


def test_clip_reads_x0_predictions_at_low_noise_and_scores_for_balancing(scorer):
    model = glyph_clip.load_glyph_model()
    labels = torch.arange(len(glyphs.CLASSES)).repeat(2)
    x0 = glyph_clip.x0_predictions(model, labels, torch.Generator().manual_seed(HELD_OUT_SEED),
                                   t_range=glyph_clip.BANDS["low"], guidance_range=(3.0, 3.0))
    assert glyph_clip.ranking_accuracy(scorer, x0.images, x0.labels)["accuracy"] >= 0.7  # measured 0.82
    # as balancing calls it: (N views, B samples) -> (B, N) scores in (0, 1]; the right prompt scores higher
    b, q = glyphs.class_index("b"), glyphs.class_index("q")
    views = torch.stack([x0.images[labels == b][:2], x0.images[labels == q][:2]])
    right = scorer(ScoreInputs(x0_views=views, prompts=["a letter b", "a letter q"]))
    wrong = scorer(ScoreInputs(x0_views=views, prompts=["a letter q", "a letter b"]))
    assert right.shape == (2, 2) and bool((right > 0).all() and (right <= 1).all())
    assert bool((right > wrong).all()), (right, wrong)


def test_x0_predictions_are_a_pure_function_of_the_seed():
    model = glyph_clip.load_glyph_model()
    labels = torch.tensor([0, 5, 30])
    first = glyph_clip.x0_predictions(model, labels, torch.Generator().manual_seed(3))
    again = glyph_clip.x0_predictions(model, labels, torch.Generator().manual_seed(3))
    assert torch.equal(first.images, again.images) and first.prompts == again.prompts
    assert first.images.shape == (3, 1, 32, 32) and float(first.images.abs().max()) <= 1.0
    assert bool(((first.timesteps >= 1) & (first.timesteps <= 980)).all())


def test_training_script_writes_a_folder_that_clip_loads(tmp_path):
    from anagram.testbed.train_glyph_clip import train

    out = train(tmp_path / "clip", noisy=36, clean=324, steps=2, eval_per_class=1, progress=False)
    log = json.loads((out / "training_log.json").read_text())
    assert len(log["loss"]) == 1 and log["heldout"]["clean"]["n"] == 36
    loaded = make_scorer(f"clip:{out}")
    scores = loaded(ScoreInputs(x0_views=glyphs.random_glyphs(2, torch.Generator().manual_seed(0)).images[None],
                                prompts=["a letter a"]))
    assert scores.shape == (2, 1)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".clip.tmp")]
