"""`--keep-views`: a translation made equivariant to a sample's views (flips, rotations), exact with a
real generator; views that cannot be kept (jigsaw, patch permutations, factorized) are named."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from anagram.cli import app
from anagram.outputs.records import SampleRecord, write_sample
from anagram.translate.config import preset
from anagram.translate.keep_views import (
    KeepViewsError, KeepViewsWarning, signed_permutation, symmetrize, translate_keeping_views, view_group,
)
from anagram.translate.networks import generator_from_config
from anagram.translate.pipeline import TranslationPipeline
from anagram.views import parse_view

TINY = dict(channels=1, ngf=4, n_blocks=2, nce_layers=("input", "down1", "down2", "res1", "res2"), head_units=8)


@pytest.fixture(scope="module")
def pipe():
    torch.manual_seed(0)
    generator = generator_from_config(preset("cut", **TINY)).eval()
    with torch.no_grad():  # a random generator is far from equivariant: perturb it off any symmetry
        for parameter in generator.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return TranslationPipeline(generator)


def image(seed=0, size=16):
    return torch.rand(1, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("names,order", [(["flip"], 2), (["rotate_180"], 2), (["rotate_cw"], 4),
                                         (["hflip", "rotate_cw"], 8), (["flip", "negate"], 4)])
def test_translating_then_viewing_equals_viewing_then_translating(pipe, names, order):
    views = [parse_view("identity")] + [parse_view(n) for n in names]
    x = image()
    kept, group = translate_keeping_views(pipe, x, views, on_unkept="error")
    assert group.order == order and not group.not_kept
    for view in views:
        seen = translate_keeping_views(pipe, view.view_image(x), views, on_unkept="error")[0]
        assert torch.allclose(view.view_image(kept), seen, atol=1e-5, rtol=0), view.label
    # without it the same generator breaks the anagram (the test can fail)
    plain = pipe(x, output_type="pt").images[0]
    last = views[-1]
    assert (last.view_image(plain) - pipe(last.view_image(x), output_type="pt").images[0]).abs().max() > 1e-2


def test_symmetrize_is_the_group_average(pipe):
    views = [parse_view("identity"), parse_view("rotate_180")]
    group = view_group(views, 16, 16)
    x = image(1)[None] * 2 - 1

    def g(batch):
        return pipe((batch + 1) / 2, output_type="pt").images * 2 - 1

    expected = 0.5 * (g(x) + g(x.flip(-1).flip(-2)).flip(-1).flip(-2))
    assert torch.allclose(symmetrize(g, x, group), expected, atol=1e-5)


def test_signed_permutations_of_views():
    flip, _ = signed_permutation(parse_view("flip"), 4, 4)
    x = torch.randn(2, 3, 4, 4)
    assert torch.equal(flip.apply(x), x.flip(-2)) and flip.sign == 1
    negate, _ = signed_permutation(parse_view("negate"), 4, 4)
    assert negate.sign == -1 and negate.perm.tolist() == list(range(16))
    rotate, why = signed_permutation(parse_view("rotate_cw"), 4, 6)
    assert rotate is None and "square" in why
    low, why = signed_permutation(parse_view("low_pass"), 8, 8)
    assert low is None and "factorized" in why


def test_a_jigsaw_is_refused_by_name_and_the_other_views_stay_exact(pipe):
    views = [parse_view("identity"), parse_view("flip"), parse_view("jigsaw")]
    x = image(2)
    with pytest.raises(KeepViewsError, match="jigsaw.*scrambled"):
        translate_keeping_views(pipe, x, views, on_unkept="error")
    with pytest.warns(KeepViewsWarning, match="jigsaw"):
        kept, group = translate_keeping_views(pipe, x, views)
    assert group.order == 2 and [v.name for v, _ in group.not_kept] == ["jigsaw"]
    seen = translate_keeping_views(pipe, views[1].view_image(x), views, on_unkept="ignore")[0]
    assert torch.allclose(views[1].view_image(kept), seen, atol=1e-5, rtol=0)
    patches = view_group([parse_view("patch_permute:4")], 16, 16)
    assert patches.order == 1 and "scrambled" in patches.not_kept[0][1]
    large = view_group([parse_view("jigsaw")], 32, 32, rigid_only=False, max_order=8)
    assert large.order == 1 and "larger than 8" in large.not_kept[0][1]


def write_anagram(folder, stem, views, size=16):
    pixels = (image(3, size)[0].numpy() * 255).round().astype(np.uint8)
    record = SampleRecord(prompts=["a digit six"] * len(views), full_prompts=["a digit six"] * len(views),
                          views=[parse_view(v).config() for v in views], seed=0, num_inference_steps=1,
                          guidance_scale=1.0, model={"model": "digits"})
    picture = Image.fromarray(pixels, "L")
    write_sample(folder, stem, picture, [picture] * len(views), record)


def test_cli_keep_views_writes_the_group_and_warns_for_a_jigsaw(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "model")
    write_anagram(tmp_path / "samples", "six_nine", ["identity", "rotate_180"])
    write_anagram(tmp_path / "samples", "puzzle", ["identity", "jigsaw"])
    runner = CliRunner()
    result = runner.invoke(app, ["translate", "apply", str(tmp_path / "model"), str(tmp_path / "samples"),
                                 "--out", str(tmp_path / "kept"), "--keep-views"])
    assert result.exit_code == 0, result.output
    assert "jigsaw" in result.output and "cannot keep" in result.output
    record = json.loads((tmp_path / "kept" / "six_nine.json").read_text())
    kept = record["versions"]["translation"]["keep_views"]
    assert kept["group_order"] == 2 and not kept["not_kept"]
    with Image.open(tmp_path / "samples" / "six_nine.png") as picture:
        source = torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255)[None]
    expected = translate_keeping_views(pipe, source, [parse_view("rotate_180")])[0]
    with Image.open(tmp_path / "kept" / "six_nine.png") as picture:
        translated = torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255)[None]
    assert (translated - expected).abs().max() <= 1 / 255  # what was written is the kept translation
    puzzle = json.loads((tmp_path / "kept" / "puzzle.json").read_text())["versions"]["translation"]["keep_views"]
    assert puzzle["group_order"] == 1 and puzzle["not_kept"][0]["view"]["name"] == "jigsaw"
    plain = runner.invoke(app, ["translate", "apply", str(tmp_path / "model"), str(tmp_path / "samples"),
                                "--out", str(tmp_path / "plain")])
    assert plain.exit_code == 0 and "cannot keep" not in plain.output
    assert json.loads((tmp_path / "plain" / "six_nine.json").read_text())["versions"]["translation"]["keep_views"] is None
