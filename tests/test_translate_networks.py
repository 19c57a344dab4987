"""The translator's networks and one iteration's objective on tiny configurations."""

from __future__ import annotations

import pytest
import torch

from anagram.translate.config import TranslationConfig, preset
from anagram.translate.networks import (
    DualCoordinateAttention, PatchDiscriminator, ResnetGenerator, build_networks, h_swish,
)
from anagram.translate.objective import GeneratorObjective

TINY = dict(ngf=4, n_blocks=2, ndf=4, n_layers_d=2, head_units=8, dc_units=8, num_patches=6,
            nce_layers=("input", "down1", "down2", "res1", "res2"), crop_size=16, load_size=18)


def tiny(name="cut", **overrides):
    return preset(name, **{**TINY, **overrides})


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("antialias", [True, False])
def test_generator_shapes_and_taps(channels, antialias):
    g = ResnetGenerator(in_channels=channels, out_channels=channels, ngf=4, n_blocks=2, antialias=antialias).eval()
    x = torch.rand(2, channels, 16, 24) * 2 - 1
    y, feats = g(x, ["input", "down1", "down2", "res1", "res2"])
    assert y.shape == x.shape and y.abs().max() <= 1
    expected = {"input": (channels, 22, 30), "down1": (8, 16, 24) if antialias else (8, 8, 12),
                "down2": (16, 8, 12) if antialias else (16, 4, 6), "res1": (16, 4, 6), "res2": (16, 4, 6)}
    assert {k: tuple(v.shape[1:]) for k, v in feats.items()} == expected
    assert all(g.tap_channels(k) == v[0] for k, v in expected.items())
    encoded = g.encode(x, ["down2", "res1"])
    assert torch.equal(encoded["down2"], feats["down2"]) and torch.equal(encoded["res1"], feats["res1"])
    assert torch.equal(g(x), y)


def test_encode_stops_after_the_deepest_tap():
    g = ResnetGenerator(in_channels=3, out_channels=3, ngf=4, n_blocks=3)
    called = []
    g.blocks[1].register_forward_hook(lambda *a: called.append("res2"))
    g.up.register_forward_hook(lambda *a: called.append("up"))
    g.encode(torch.zeros(1, 3, 16, 16), ["res1", "down1"])
    assert called == []
    g.encode(torch.zeros(1, 3, 16, 16), ["res2"])
    assert called == ["res2"]


@pytest.mark.parametrize("placement", ["stem", "resblocks"])
def test_dca_leaves_tap_names_and_shapes_unchanged(placement):
    taps = ["input", "down1", "down2", "res1", "res2"]
    plain = ResnetGenerator(ngf=4, n_blocks=2)
    with_dca = ResnetGenerator(ngf=4, n_blocks=2, dca=True, dca_placement=placement)
    assert any(isinstance(m, DualCoordinateAttention) for m in with_dca.modules())
    x = torch.randn(1, 3, 16, 16)
    a, b = plain.encode(x, taps), with_dca.encode(x, taps)
    assert list(a) == list(b) and all(a[k].shape == b[k].shape for k in a)
    assert with_dca.tap_names == plain.tap_names


def test_generator_refuses_sizes_it_cannot_take():
    g = ResnetGenerator(ngf=4, n_blocks=1)
    with pytest.raises(ValueError, match="multiples of 4"):
        g(torch.zeros(1, 3, 18, 16))
    with pytest.raises(ValueError, match="unknown feature taps"):
        g.encode(torch.zeros(1, 3, 16, 16), ["res5"])


@pytest.mark.parametrize("pooling", ["sum", "branches"])
def test_dca_equals_its_formula(pooling):
    torch.manual_seed(0)
    dca = DualCoordinateAttention(channels=6, reduction=32, norm="group", pooling=pooling)
    x = torch.randn(2, 6, 3, 5)

    def conv(layer, t):  # a 1x1 conv written out
        return torch.einsum("oc,bchw->bohw", layer.weight[:, :, 0, 0], t) + layer.bias[None, :, None, None]

    def group_norm(layer, t):
        mean = t.mean(dim=(1, 2, 3), keepdim=True)
        var = t.var(dim=(1, 2, 3), unbiased=False, keepdim=True)
        return (t - mean) / torch.sqrt(var + layer.eps) * layer.weight[None, :, None, None] + layer.bias[None, :, None, None]

    z_avg = torch.cat([x.mean(3, keepdim=True), x.mean(2, keepdim=True).permute(0, 1, 3, 2)], 2)
    z_max = torch.cat([x.amax(3, keepdim=True), x.amax(2, keepdim=True).permute(0, 1, 3, 2)], 2)
    if pooling == "sum":
        u = h_swish(group_norm(dca.norm, conv(dca.reduce, z_avg + z_max)))
    else:
        u = h_swish(group_norm(dca.norm, conv(dca.reduce, z_avg))) + h_swish(group_norm(dca.norm_max, conv(dca.reduce_max, z_max)))
    assert u.shape[1] == 8  # m = max(8, 6 // 32)
    a_h = torch.sigmoid(conv(dca.expand_h, u[:, :, :3]))  # (B, C, H, 1)
    a_w = torch.sigmoid(conv(dca.expand_w, u[:, :, 3:])).permute(0, 1, 3, 2)  # (B, C, 1, W)
    assert torch.allclose(dca(x), x * a_h * a_w, atol=1e-6)
    assert torch.allclose(h_swish(torch.tensor([-4.0, 0.0, 1.0, 4.0])), torch.tensor([0.0, 0.0, 4 / 6, 4.0]))


def test_discriminator_and_its_size_floor():
    d = PatchDiscriminator(3, ndf=4, n_layers=2)
    assert d(torch.zeros(2, 3, 16, 16)).shape == (2, 1, 2, 2)
    assert PatchDiscriminator(3, 64, 3).min_size() == 24
    with pytest.raises(ValueError, match="n_layers_d"):
        d(torch.zeros(1, 3, 8, 8))


def test_build_networks_heads_exist_before_any_batch():
    nets = build_networks(tiny("mcdut"))
    assert set(nets) == {"generator", "discriminator", "heads", "domain_heads"}
    assert nets["heads"]["input"].mlp[0].in_features == 3 and nets["heads"]["res2"].mlp[0].in_features == 16
    again = build_networks(tiny("mcdut"))
    assert all(torch.equal(a, b) for a, b in zip(nets["generator"].state_dict().values(), again["generator"].state_dict().values()))
    fixed = build_networks(tiny("mcdut", dc_head="random_pair"))["domain_heads"]
    assert len(fixed) == 2 and not any(p.requires_grad for p in fixed.parameters())


def objective_for(config):
    nets = build_networks(config)
    return GeneratorObjective(config, nets["generator"], nets["heads"], nets.get("domain_heads")), nets


def test_multi_crop_adds_exactly_the_stated_negatives_none_the_positive():
    config = tiny("mcdut", crop_count=2, num_patches=5)
    objective, _ = objective_for(config)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    g = torch.Generator().manual_seed(0)
    feats = objective.generator.encode(x, config.nce_layers)
    ids = {t: torch.randperm(feats[t][0, 0].numel(), generator=g)[:5] for t in config.nce_layers}
    with torch.no_grad():
        extra = objective._extra_negatives(x, feats, ids, g)
        for tap, e in zip(config.nce_layers, extra):
            assert e.shape == (2, 3 * 5, 8)  # (k + 1) S extra negatives per image
            keys = objective._project(tap, feats[tap], ids[tap])
            # no extra negative equals a positive key of its image
            assert (torch.cdist(e, keys).amin() > 1e-4).all(), tap
    assert config.negatives_per_query == 4 + 15


def test_random_negative_control_matches_the_count():
    config = tiny("cut", extra_negatives=True, crop_count=2, num_patches=5)
    objective, _ = objective_for(config)
    x = torch.rand(1, 3, 16, 16)
    feats = objective.generator.encode(x, config.nce_layers)
    g = torch.Generator().manual_seed(0)
    ids = {t: torch.randperm(feats[t][0, 0].numel(), generator=g)[:5] for t in config.nce_layers}
    with torch.no_grad():
        extra = objective._extra_negatives(x, feats, ids, g)
    assert [e.shape[1] for e in extra] == [15] * 5


@pytest.mark.parametrize("name", ["cut", "fastcut", "mcdut"])
def test_objective_runs_and_is_a_function_of_its_seed(name):
    config = tiny(name)
    objective, nets = objective_for(config)
    x, y = torch.rand(1, 3, 16, 16) * 2 - 1, torch.rand(1, 3, 16, 16) * 2 - 1
    a = objective(x, y, torch.Generator().manual_seed(3))
    b = objective(x, y, torch.Generator().manual_seed(3))
    assert torch.equal(a["loss"], b["loss"]) and a["fake"].shape == x.shape
    assert ("nce_idt" in a) == config.nce_idt and ("dc" in a) == config.domain_consistency


@pytest.mark.parametrize("head", ["shared", "random"])
def test_domain_consistency_gradient_reaches_the_generator_only(head):
    config = tiny("cut", domain_consistency=True, dc_head=head)
    objective, nets = objective_for(config)
    x = (torch.rand(1, 3, 16, 16) * 2 - 1)
    y = (torch.rand(1, 3, 16, 16) * 2 - 1).requires_grad_(True)
    out = objective(x, y, torch.Generator().manual_seed(0))
    out["dc"].backward()
    # y shares G's batched pass with x (identity NCE), so it may get a gradient tensor: it must be zero
    assert y.grad is None or torch.count_nonzero(y.grad) == 0
    assert nets["generator"].stem[0].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in nets["discriminator"].parameters())
    trained = [p.grad is not None for p in nets["domain_heads"].parameters()]
    assert all(trained) if head == "shared" else not any(trained)


def test_objective_takes_different_domain_sizes():
    config = tiny("cut")
    objective, _ = objective_for(config)
    out = objective(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 20, 16), torch.Generator().manual_seed(0))
    assert out["fake"].shape == (1, 3, 16, 16) and out["idt"].shape == (1, 3, 20, 16)
