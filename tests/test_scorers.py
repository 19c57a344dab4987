"""Balancing scorers: a tiny CLIP saved to a folder and loaded offline, the attention proxy, resolution."""

import pytest
import torch
from transformers import CLIPConfig, CLIPModel

from anagram.method.balancing import balance_weights
from anagram.method.scorers import (
    AttentionShareScorer,
    CallableScorer,
    CLIPScorer,
    ScoreInputs,
    Scorer,
    ScorerError,
    concept_attention_share,
    make_scorer,
    register_scorer,
)
from tiny_models import clip_tokenizer

PROMPTS = ["an oil painting of a rabbit", "a red fox in snow", "an old man"]


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    tokenizer = clip_tokenizer()
    torch.manual_seed(0)
    text = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_attention_heads=4,
                num_hidden_layers=2, max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1)
    vision = dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=37, num_attention_heads=4,
                  num_hidden_layers=2)
    folder = tmp_path_factory.mktemp("tiny_clip")
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    assert (folder / "model.safetensors").exists()
    return str(folder)


@pytest.fixture(scope="module")
def clip(clip_folder):
    return make_scorer(f"clip:{clip_folder}")


def images(n=3, b=2, size=(24, 40), channels=3, seed=0):
    return torch.rand(n, b, channels, *size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_clip_scores_shape_range_determinism(clip):
    assert isinstance(clip, CLIPScorer) and isinstance(clip, Scorer) and clip.needs_images
    inputs = ScoreInputs(images(), PROMPTS, step_index=3, num_steps=30)
    scores = clip(inputs)
    assert scores.shape == (2, 3) and scores.dtype == torch.float32
    assert ((scores > 0) & (scores <= 1)).all()
    assert torch.equal(scores, clip(inputs))
    # different images, different scores
    assert not torch.allclose(scores, clip(ScoreInputs(images(seed=1), PROMPTS)))
    assert torch.isfinite(balance_weights(scores, 3, 30)).all()


def test_clip_score_is_the_view_prompt_cosine(clip, clip_folder):
    x0 = images(n=2, b=1, size=(32, 32))
    model = CLIPModel.from_pretrained(clip_folder).eval()
    tok = clip_tokenizer()
    with torch.no_grad():
        pixels = ((x0.flatten(0, 1) + 1) / 2 - clip.mean) / clip.std  # 32x32 already: no resize
        img = clip._features(model.get_image_features(pixel_values=pixels))
        txt = clip._features(model.get_text_features(**tok(PROMPTS[:2], padding=True, return_tensors="pt")))
    img, txt = torch.nn.functional.normalize(img, dim=-1), torch.nn.functional.normalize(txt, dim=-1)
    expected = (img * txt).sum(-1).view(1, 2)
    inputs = ScoreInputs(x0, PROMPTS[:2])
    torch.testing.assert_close(clip.similarity(inputs), expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(clip(inputs), expected.clamp(1e-4, 1))
    affine = CLIPScorer(clip_folder, mapping="affine")
    torch.testing.assert_close(affine(inputs), (expected + 1) / 2)


def test_clip_preprocessing_in_torch(clip):
    out = clip.preprocess(images(n=1, b=4, size=(24, 40))[0])
    assert out.shape == (4, 3, 32, 32)
    gray = clip.preprocess(torch.zeros(2, 1, 28, 28))
    assert gray.shape == (2, 3, 32, 32)
    torch.testing.assert_close(gray[:, 0], torch.full((2, 32, 32), (0.5 - clip.mean[0, 0, 0, 0].item()) / clip.std[0, 0, 0, 0].item()))
    with pytest.raises(ScorerError, match="channels"):
        clip.preprocess(torch.zeros(1, 4, 8, 8))


def test_clip_input_errors(clip):
    with pytest.raises(ScorerError, match="x0_views"):
        clip(ScoreInputs(None, PROMPTS))
    with pytest.raises(ScorerError, match="3 views but 2 prompts"):
        clip(ScoreInputs(images(), PROMPTS[:2]))


def test_attention_share():
    n, b, t = 2, 3, 6
    attn = torch.softmax(torch.randn(n * b, 4, 4, t), -1) * 4  # four heads summed
    share = concept_attention_share(attn, [[1], [2, 3]], n)
    assert share.shape == (n, b)
    torch.testing.assert_close(share[0], (attn[:b, ..., 1] / 4).mean((-2, -1)))
    torch.testing.assert_close(share[1], (attn[b:, ..., 2:4].sum(-1) / 4).mean((-2, -1)))
    scorer = make_scorer("attention")
    assert isinstance(scorer, AttentionShareScorer) and not scorer.needs_images
    scores = scorer(ScoreInputs(None, PROMPTS[:2], concept_attention=share))
    torch.testing.assert_close(scores, share.T)
    assert scorer(ScoreInputs(None, PROMPTS[:2], concept_attention=torch.zeros(2, 3))).min() > 0
    with pytest.raises(ScorerError, match="concept_attention"):
        scorer(ScoreInputs(None, PROMPTS[:2]))


def test_callable_scorer_wraps_and_clamps():
    def fn(inputs):
        return torch.tensor([[0.0, 0.5, 2.0]])

    scorer = make_scorer(fn)
    assert isinstance(scorer, CallableScorer) and scorer.needs_images
    torch.testing.assert_close(scorer(ScoreInputs(images(b=1), PROMPTS)), torch.tensor([[1e-4, 0.5, 1.0]]))
    with pytest.raises(ScorerError, match="expected \\(B, N\\)"):
        scorer(ScoreInputs(images(b=2), PROMPTS))


def test_make_scorer_resolution_and_errors(monkeypatch):
    attention = AttentionShareScorer()
    assert make_scorer(attention) is attention
    with pytest.raises(ScorerError, match="unknown scorer 'blip:x'.*'clip:...'.*'attention'"):
        make_scorer("blip:x")
    with pytest.raises(ScorerError, match="needs a model"):
        make_scorer("clip:")
    with pytest.raises(ScorerError, match="cannot make a scorer"):
        make_scorer(42)
    from anagram.method import scorers

    monkeypatch.setattr(scorers, "_FACTORIES", dict(scorers._FACTORIES))  # keep the registration local
    register_scorer("constant", lambda arg: CallableScorer(lambda inputs: torch.full((1, 2), float(arg)), False))
    scorer = make_scorer("constant:0.25")
    torch.testing.assert_close(scorer(ScoreInputs(None, PROMPTS[:2])), torch.full((1, 2), 0.25))


def test_clip_missing_folder_fails_offline(tmp_path):
    with pytest.raises(OSError):
        CLIPScorer(str(tmp_path / "nowhere"))
