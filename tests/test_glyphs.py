"""The glyph testbed's renderer, prompts and training script (the shared trainer)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from anagram.testbed import glyphs
from anagram.testbed import train_glyphs as tg
from anagram.testbed import trainer


def test_renders_are_deterministic_for_a_seed_and_differ_across_seeds():
    a = glyphs.random_glyphs(16, torch.Generator().manual_seed(3))
    b = glyphs.random_glyphs(16, torch.Generator().manual_seed(3))
    c = glyphs.random_glyphs(16, torch.Generator().manual_seed(4))
    assert a.images.shape == (16, 1, 32, 32) and a.images.dtype == torch.float32
    assert torch.equal(a.images, b.images) and a.labels.tolist() == b.labels.tolist()
    assert not torch.equal(a.images, c.images)
    assert float(a.images.min()) == -1.0 and float(a.images.max()) <= 1.0


def test_every_font_draws_every_class_inside_the_canvas():
    p = glyphs.Placement(scale=0.9, angle=6.0, center=(0.0, 1.0))  # pushed into a corner
    for f in range(len(glyphs.FONTS)):
        for c in glyphs.CLASSES:
            ink = glyphs.ink_fraction(glyphs.render_glyph(c, f, p))[0]
            assert ink.sum() > 5, (glyphs.FONTS[f].file, c)
            border = torch.cat([ink[0], ink[-1], ink[:, 0], ink[:, -1]])
            assert float(border.max()) < 0.1, (glyphs.FONTS[f].file, c)  # antialiasing only


def test_scale_sets_the_digit_height_and_letters_keep_their_relative_size():
    def height(glyph, scale):
        rows = glyphs.ink_fraction(glyphs.render_glyph(glyph, 0, glyphs.Placement(scale=scale)))[0].amax(1) > 0.3
        idx = rows.nonzero().squeeze(1)
        return int(idx.max() - idx.min() + 1)

    assert abs(height("0", 0.5) - 16) <= 2 and abs(height("0", 0.8) - 25.6) <= 2
    assert height("o", 0.8) < height("0", 0.8) - 4  # x-height below digit height


def test_placement_moves_the_ink():
    left = glyphs.ink_fraction(glyphs.render_glyph("b", 0, glyphs.Placement(scale=0.4, center=(0.2, 0.5))))[0]
    right = glyphs.ink_fraction(glyphs.render_glyph("b", 0, glyphs.Placement(scale=0.4, center=(0.8, 0.5))))[0]
    assert left[:, :16].sum() > 10 * left[:, 16:].sum() and right[:, 16:].sum() > 10 * right[:, :16].sum()


def test_class_names():
    assert len(glyphs.CLASSES) == 36 and glyphs.class_index("six") == glyphs.class_index("6") == 32
    assert glyphs.class_index("q") == 16
    with pytest.raises(ValueError, match="not a glyph"):
        glyphs.class_index("Q!")


def test_prompts_end_with_the_glyph_as_one_token():
    assert tg.glyph_prompt("q") == "a letter q"
    assert tg.glyph_prompt("6") == "a digit 6" and tg.glyph_prompt("6", word=True) == "a digit six"
    assert tg.glyph_prompt("q", ("italic", "serif")) == "an italic serif letter q"
    tok = trainer.build_word_tokenizer(tg.WORDS, tg.MAX_LENGTH)
    gen = torch.Generator().manual_seed(0)
    batch = glyphs.random_glyphs(64, gen)
    prompts = tg.sample_prompts(batch.labels, batch.fonts, gen, dropout=0.1)
    ids = trainer.tokenize(tok, prompts)
    pos = trainer.concept_positions(ids, tok.eos_token_id)
    for p, i, row, label, font in zip(prompts, pos.tolist(), ids, batch.labels.tolist(), batch.fonts):
        if not p:
            continue
        word = tok.convert_ids_to_tokens(int(row[i])).removesuffix("</w>")
        assert glyphs.class_index(word) == label, p
        assert {w for w in p.split() if w in glyphs.STYLE_WORDS} <= set(glyphs.FONTS[font].styles), p
    assert sum(p == "" for p in prompts) < 20


def test_training_script_writes_a_loadable_folder_and_resumes_bit_exactly(tmp_path):
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    full = tg.train(tmp_path / "full", steps=4, seed=0, batch_size=2, progress=False, log_every=1, checkpoint_every=2)
    assert not (tmp_path / "full.checkpoint").exists()
    defaults = json.loads((full / "anagram_defaults.json").read_text())
    assert defaults["judge"] == "glyphs" and defaults["scorer"] == "clip:../glyph_clip"
    assert not [p for p in full.rglob("*") if p.suffix in {".bin", ".pt", ".pth", ".pkl"}]
    unet = UNet2DConditionModel.from_pretrained(full / "unet", use_safetensors=True)
    text = CLIPTextModel.from_pretrained(full / "text_encoder", use_safetensors=True)
    tok = CLIPTokenizer.from_pretrained(full / "tokenizer")
    assert unet.config.sample_size == 32 and text.config.num_hidden_layers == 0 and len(tok) > 60
    assert [t for t in unet.config.down_block_types] == list(tg.GLYPH_UNET.down_block_types)

    class Stop(Exception):
        pass

    def stop_at_three(line):
        if line.startswith("step 3/"):
            raise Stop

    cfg = trainer.configure(tg.GLYPH_CONFIG, 4, 0, {"batch_size": 2})
    with pytest.raises(Stop):
        trainer.train(tg.GlyphsTask(), tmp_path / "part", cfg, progress=False, log_every=1, checkpoint_every=2,
                      report=stop_at_three)
    assert not (tmp_path / "part").exists() and (tmp_path / "part.checkpoint" / "checkpoint.json").is_file()
    trainer.train(tg.GlyphsTask(), tmp_path / "part", cfg, progress=False, log_every=1, checkpoint_every=2)
    a = load_file(full / "unet" / "diffusion_pytorch_model.safetensors")
    b = load_file(tmp_path / "part" / "unet" / "diffusion_pytorch_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
