"""The glyph judge (anagram.testbed.glyph_judge): shipped, reads renders and real samples, never a scorer."""

import json
from importlib import metadata

import pytest
import torch

from anagram.testbed import glyphs
from anagram.testbed.glyph_judge import (GLYPH_JUDGE_DIR, confusion_matrix, glyph_of_prompt, glyph_probabilities,
                                         glyph_score_matrix, load_glyph_judge)
from anagram.testbed.train_glyph_judge import JudgeConfig, augment, train


def test_shipped_folder_is_safetensors_and_config_only():
    assert sorted(p.name for p in GLYPH_JUDGE_DIR.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((GLYPH_JUDGE_DIR / "config.json").read_text())
    assert config["num_classes"] == len(glyphs.CLASSES) and config["classes"] == list(glyphs.CLASSES)


def test_judge_reads_unseen_renders():
    """Renders of a seed used neither in training nor for the held-out numbers, clean and augmented."""
    judge = load_glyph_judge()
    gen = torch.Generator().manual_seed(4242)
    labels = torch.arange(len(glyphs.CLASSES)).repeat(4)
    clean = glyphs.render_batch(labels, gen).images
    m = confusion_matrix(judge, clean, labels)
    assert m.diagonal().sum() / m.sum() >= 0.95
    noisy = augment(clean, gen)
    assert (glyph_probabilities(noisy, judge=judge).argmax(-1) == labels).float().mean() >= 0.85
    # any size, [0, 1] input, batch shape kept
    big = torch.nn.functional.interpolate((clean[:6] + 1) / 2, size=64, mode="bilinear")
    probs = glyph_probabilities(big[None], value_range=(0.0, 1.0), judge=judge)
    assert probs.shape == (1, 6, 36) and torch.allclose(probs.sum(-1), torch.ones(1, 6), atol=1e-5)


def test_judge_reads_real_glyph_model_samples():
    """Single-prompt samples of the shipped glyph model at its defaults are read as their prompt."""
    from anagram.testbed.trainer import load_model, sample

    model = load_model(glyphs_model_dir())
    prompts = ["a letter b", "a letter k", "a digit 7", "a digit three"]
    images = sample(model, prompts, generator=torch.Generator().manual_seed(0))
    predicted = glyph_probabilities(images).argmax(-1)
    assert predicted.tolist() == [glyph_of_prompt(p) for p in prompts]


def glyphs_model_dir():
    from anagram.testbed import MODELS_DIR

    return MODELS_DIR / "glyphs"


def test_score_matrix_and_prompts():
    b = (glyphs.render_glyph("b", 8, glyphs.Placement(scale=0.7)) + 1) / 2
    views = torch.stack([b, b.flip(-1, -2)])  # identity and rotate_180: a b and a q
    judged = glyph_score_matrix(views, ["a letter b", "a letter q"])
    assert judged["targets"].tolist() == [1, 16] and judged["predicted"].tolist() == [1, 16]
    assert judged["scores"][0, 0] > 0.9 and judged["scores"][1, 1] > 0.9 and judged["scores"][0, 1] < 0.1
    assert glyph_of_prompt("a digit six") == glyph_of_prompt("a digit 6") == glyphs.CLASSES.index("6")
    assert glyph_of_prompt("a bold serif letter [q]") == glyphs.CLASSES.index("q")
    with pytest.raises(ValueError, match="names no glyph"):
        glyph_of_prompt("a letter qq")
    with pytest.raises(ValueError, match="names no glyph"):
        glyph_of_prompt("a cat")


def test_the_judge_is_never_a_scorer():
    from anagram.method.scorers import ScorerError, make_scorer

    for name in ("glyphs", "glyph_judge", "judge"):
        with pytest.raises(ScorerError):
            make_scorer(name)
    values = [e.value for e in metadata.entry_points(group="anagram.scorers")]
    assert not any("glyph_judge" in v for v in values)
    declared = json.loads((glyphs_model_dir() / "anagram_defaults.json").read_text())
    assert declared["judge"] == "glyphs" and "glyph_judge" not in declared.get("scorer", "")


def test_training_script_writes_a_folder_that_loads(tmp_path):
    out = tmp_path / "judge"
    config = JudgeConfig(steps=3, batch_size=8, channels=(8, 8, 8))
    model, record = train(out, config, progress=False, held_out_per_class=1)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    saved = json.loads((out / "config.json").read_text())
    assert saved["training"]["steps"] == 3 and "accuracy" in saved["clean"] and saved["held_out_seed"] != config.seed
    loaded = load_glyph_judge(out)
    x = glyphs.random_glyphs(4, torch.Generator().manual_seed(1)).images
    assert torch.allclose(glyph_probabilities(x, judge=loaded), glyph_probabilities(x, judge=model), atol=1e-6)
    # seeded: the same run gives the same weights
    again, _ = train(None, config, progress=False, held_out_per_class=1)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
