"""The digit testbed: data split, tokenizer, training script, shipped model and classifier."""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from anagram.testbed import CLASSIFIER_DIR, DIGIT_NUMERALS, DIGIT_WORDS, DIGITS_MODEL_DIR  # noqa: E402
from anagram.testbed import data as tb_data  # noqa: E402
from anagram.testbed import train_digits as td  # noqa: E402
from anagram.testbed.classifier import accuracy, classify, load_classifier  # noqa: E402

MODEL_INDEX = {
    "_class_name": "AnagramPipeline",
    "scheduler": ["diffusers", "DDIMScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": [None, None],
}


@pytest.fixture(scope="module")
def split():
    return tb_data.load_split()


@pytest.fixture(scope="module")
def shipped():
    return td.load_model(DIGITS_MODEL_DIR)


@pytest.fixture(scope="module")
def clf():
    return load_classifier(CLASSIFIER_DIR)


def _load_folder(path):
    from diffusers import DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    unet = UNet2DConditionModel.from_pretrained(path / "unet", use_safetensors=True)
    text = CLIPTextModel.from_pretrained(path / "text_encoder", use_safetensors=True)
    tok = CLIPTokenizer.from_pretrained(path / "tokenizer")
    sched = DDIMScheduler.from_pretrained(path / "scheduler")
    return unet, text, tok, sched


def _check_folder(path):
    index = json.loads((path / "model_index.json").read_text())
    assert {k: v for k, v in index.items() if k != "_diffusers_version"} == MODEL_INDEX
    files = [p for p in path.rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix in {".bin", ".pt", ".pth", ".ckpt", ".pkl"}]
    assert (path / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert (path / "text_encoder" / "model.safetensors").is_file()
    defaults = json.loads((path / "anagram_defaults.json").read_text())
    assert {"num_inference_steps", "guidance_scale", "prompt_template"} <= defaults.keys()
    unet, text, tok, sched = _load_folder(path)
    assert sched.config.clip_sample is False
    assert unet.config.in_channels == unet.config.out_channels == 1
    assert unet.config.cross_attention_dim == text.config.hidden_size
    assert text.config.num_hidden_layers == 0
    return unet, text, tok, sched


def test_split_is_deterministic_and_stratified(split):
    assert split.train_images.shape == (1437, 1, 32, 32) and split.test_images.shape == (360, 1, 32, 32)
    assert float(split.train_images.min()) == -1.0 and float(split.train_images.max()) == 1.0
    counts = torch.bincount(split.test_labels, minlength=10)
    assert int(counts.min()) >= 35 and int(counts.max()) <= 37
    tr, te = tb_data.split_indices(tb_data.load_images(8)[1].numpy())
    tr2, te2 = tb_data.split_indices(tb_data.load_images(8)[1].numpy())
    assert (tr == tr2).all() and (te == te2).all() and not set(tr) & set(te)


def test_tokenizer_round_trip(tmp_path):
    from transformers import CLIPTokenizer

    tok = td.build_tokenizer()
    tok.save_pretrained(tmp_path)
    tok2 = CLIPTokenizer.from_pretrained(tmp_path)
    assert tok2.model_max_length == td.MAX_LENGTH
    digit_ids = set()
    for d in range(10):
        for word in (DIGIT_WORDS[d], DIGIT_NUMERALS[d]):
            prompt = td.digit_prompt(d, numeral=word.isdigit())
            ids = tok2(prompt, padding="max_length", max_length=tok2.model_max_length).input_ids
            assert ids == tok(prompt, padding="max_length", max_length=tok.model_max_length).input_ids
            assert len(ids) == td.MAX_LENGTH
            eos = ids.index(tok2.eos_token_id)
            assert tok2.convert_ids_to_tokens(ids[eos - 1]) == word + "</w>"  # the last word: one token
            digit_ids.add(ids[eos - 1])
    assert len(digit_ids) == 20
    unknown = tok2("a digit cat", add_special_tokens=False).input_ids
    assert not set(unknown[2:]) & digit_ids
    assert tok2("")["input_ids"] == [tok2.bos_token_id, tok2.eos_token_id]


def test_training_script_writes_a_loadable_folder(tmp_path):
    out = td.train(tmp_path / "digits", steps=2, seed=0, batch_size=4, progress=False)
    unet, text, tok, sched = _check_folder(out)
    # the fragments of unknown words are encoded like the unk token
    with torch.no_grad():
        e = text(tok(["a digit cat", "a digit"], padding="max_length", max_length=8, return_tensors="pt").input_ids)[0]
    unk = text(torch.tensor([[tok.unk_token_id]]))[0][0, 0]
    assert torch.allclose(e[0, 3:6], unk.expand(3, -1), atol=1e-5)


def test_shipped_files_exist_and_load(shipped):
    unet, *_ = _check_folder(DIGITS_MODEL_DIR)
    assert unet.config.sample_size == shipped.defaults["height"] == 32
    size = sum(p.stat().st_size for p in DIGITS_MODEL_DIR.rglob("*") if p.is_file())
    assert size < 20e6
    assert (CLASSIFIER_DIR / "config.json").is_file() and (CLASSIFIER_DIR / "model.safetensors").is_file()


def test_classifier_recognises_the_test_split(split, clf):
    assert accuracy(clf, split.test_images, split.test_labels) >= 0.97


def test_classify_conventions(split, clf):
    x = split.test_images[:20]
    p = classify(x, clf)
    assert p.shape == (20, 10) and torch.allclose(p.sum(-1), torch.ones(20), atol=1e-5)
    p01 = classify((x + 1) / 2, clf, value_range=(0.0, 1.0))
    assert torch.allclose(p, p01, atol=1e-5)
    small = torch.nn.functional.interpolate(x, size=(16, 16), mode="bilinear", antialias=True)
    assert (classify(small, clf).argmax(-1) == p.argmax(-1)).float().mean() >= 0.9
    assert classify(x[:, 0], clf).shape == (20, 10)


def test_shipped_model_samples_are_recognised(shipped, clf):
    prompts = [td.digit_prompt(d, numeral=bool(d % 2)) for d in range(10)]
    images = td.sample(shipped, prompts, generator=torch.Generator().manual_seed(0))
    assert images.shape == (10, 1, 32, 32)
    assert float(images.min()) >= -1.0 and float(images.max()) <= 1.0
    pred = classify(images, clf).argmax(-1)
    assert int((pred == torch.arange(10)).sum()) >= 9, pred.tolist()
