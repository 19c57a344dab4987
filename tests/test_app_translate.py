"""The Translate tab's logic apart from the page, on a tiny translator trained here (two iterations).

Which translators are offered (the served folders, searched; a typed path only inside them), one load
per translator, a request's pairs of source and translation written into a new folder of the output
folder (equal to the pipeline's own output), samples picked from the output folder, and each mistake
said in one sentence.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from anagram.app.results import OutsideFolderError
from anagram.app.translation import OUTPUT_FOLDER, TranslatorPool, find_translators, translate, translator_folder


def tiny_translator(run: Path) -> Path:
    """Train a 2-iteration CUT translator into ``run`` (a run folder with ``model/``); its model folder."""
    from anagram.translate.config import preset
    from anagram.translate.data import TensorDomain
    from anagram.translate.trainer import TrainOptions, train

    g = torch.Generator().manual_seed(0)
    a = TensorDomain(torch.rand(2, 3, 20, 20, generator=g) * 2 - 1, "A")
    b = TensorDomain((torch.rand(2, 3, 20, 20, generator=g) * 2 - 1).clamp(-1, 0), "B")
    config = preset("cut", ngf=4, n_blocks=2, ndf=4, n_layers_d=2, head_units=8, num_patches=16, crop_size=16,
                    load_size=20, nce_layers=("input", "down1", "down2", "res1", "res2"), n_epochs=1, n_epochs_decay=1)
    result = train(a, b, config, TrainOptions(out=run, sample_count=0, log_every=1))
    return result.model_dir


def picture(path: Path, size=(24, 20), seed=0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    out = tmp_path_factory.mktemp("app-out")
    model = tiny_translator(out / "runs" / "tiny")
    return out, model


def test_translators_are_found_in_the_served_folders(served, tmp_path):
    out, model = served
    assert translator_folder(model.parent) == model == translator_folder(model)  # a run folder or its model/
    assert find_translators([out]) == [model.resolve()]
    pool = TranslatorPool([out])
    (label, value), = pool.choices()
    assert value == str(model.resolve()) and label.startswith("tiny (cut: A -> B)")
    assert pool.resolve(str(model.parent)) == model.resolve()
    elsewhere = tiny_translator(tmp_path / "elsewhere")
    with pytest.raises(OutsideFolderError):
        pool.resolve(str(elsewhere))  # a real translator, but not one the app offers
    with pytest.raises(ValueError, match="holds no translator"):
        pool.resolve(str(out))
    with pytest.raises(ValueError, match="pick a translator"):
        pool.resolve(" ")


def test_a_request_translates_uploads_into_a_new_folder(served, tmp_path):
    out, model = served
    pool = TranslatorPool([out])
    uploads = [picture(tmp_path / "one.png"), picture(tmp_path / "two.jpg", (16, 16), seed=1)]
    first = translate(pool, str(model), uploads, [], out, [out])
    second = translate(pool, str(model), uploads[:1], [], out, [out])
    assert pool.loads == 1, "a translator is loaded once and reused"
    assert first.folder != second.folder and first.folder.parent == out / OUTPUT_FOLDER / "tiny"
    assert [(s.name, t.name) for s, t in first.pairs] == [("one.png", "one.png"), ("two.jpg", "two.png")]
    from anagram.translate.pipeline import TranslationPipeline

    pipe = TranslationPipeline.from_pretrained(model)
    for source, translated in first.pairs:
        with Image.open(source) as image:
            expected = np.asarray(pipe(image.convert("RGB")).images[0])
        got = np.asarray(Image.open(translated))
        assert got.shape == expected.shape and np.array_equal(got, expected)
        assert Image.open(translated).size == Image.open(source).size  # padded for the generator, cropped back


def test_samples_picked_from_the_output_folder(served):
    from test_print_sheet import make_sample

    out, model = served
    samples = out / "samples"
    samples.mkdir(exist_ok=True)
    make_sample(samples, "s0", ["identity", "rotate_180"], ["a six", "a nine"])
    done = translate(TranslatorPool([out]), str(model), [], [samples / "s0.json"], out, [out])
    (source, translated), = done.pairs
    assert source == (samples / "s0.png").resolve() and translated.is_file()


def test_mistakes_are_said_plainly(served, tmp_path):
    out, model = served
    pool = TranslatorPool([out])
    with pytest.raises(ValueError, match="upload images or pick samples"):
        translate(pool, str(model), [], [], out, [out])
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(ValueError, match="notes.png is not an image"):
        translate(pool, str(model), [text], [], out, [out])
    twins = [picture(tmp_path / "a.png"), picture((tmp_path / "b").mkdir() or tmp_path / "b" / "a.png")]
    with pytest.raises(ValueError, match="same name"):
        translate(pool, str(model), twins, [], out, [out])
    with pytest.raises(OutsideFolderError):
        translate(pool, str(model), [], ["/etc/passwd"], out, [out])
    before = sorted(p for p in out.rglob("*") if p.is_file())
    with pytest.raises(ValueError, match="holds no translator"):
        translate(pool, str(out), [twins[0]], [], out, [out])
    assert sorted(p for p in out.rglob("*") if p.is_file()) == before  # nothing written by a refused request
