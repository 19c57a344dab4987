"""The translator's losses equal their formulas (spec §2-§4) on small constructed tensors."""

from __future__ import annotations

import math

import pytest
import torch

from anagram.translate.config import ConfigError, TranslationConfig, preset
from anagram.translate.losses import (
    CropError, crop_boxes, crop_views, discriminator_loss, domain_consistency_loss, gather_patches,
    generator_gan_loss, l2_normalize, multilayer_nce, patch_nce_logits, patch_nce_loss, random_negative_ids,
    sample_locations,
)


def test_patch_nce_hand_computed_case():
    q = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    k = torch.tensor([[[1.0, 0.0], [0.6, 0.8]]])
    l0 = -math.log(math.exp(1.0) / (math.exp(1.0) + math.exp(0.6)))
    l1 = -math.log(math.exp(0.8) / (math.exp(0.8) + math.exp(0.0)))
    assert patch_nce_loss(q, k, tau=1.0).item() == pytest.approx((l0 + l1) / 2, abs=1e-6)
    # one extra negative e = (0, 1): q0.e = 0, q1.e = 1
    e = torch.tensor([[[0.0, 1.0]]])
    l0 = -math.log(math.exp(1.0) / (math.exp(1.0) + math.exp(0.6) + math.exp(0.0)))
    l1 = -math.log(math.exp(0.8) / (math.exp(0.8) + math.exp(0.0) + math.exp(1.0)))
    assert patch_nce_loss(q, k, tau=1.0, extra_negatives=e).item() == pytest.approx((l0 + l1) / 2, abs=1e-6)


def test_patch_nce_equals_loop_formula_and_tau():
    g = torch.Generator().manual_seed(0)
    q = l2_normalize(torch.randn(2, 5, 4, generator=g))
    k = l2_normalize(torch.randn(2, 5, 4, generator=g))
    extra = l2_normalize(torch.randn(2, 3, 4, generator=g))
    tau = 0.07
    total = 0.0
    for b in range(2):
        for s in range(5):
            pos = math.exp(float(q[b, s] @ k[b, s]) / tau)
            neg = sum(math.exp(float(q[b, s] @ k[b, t]) / tau) for t in range(5) if t != s)
            neg += sum(math.exp(float(q[b, s] @ extra[b, n]) / tau) for n in range(3))
            total += -math.log(pos / (pos + neg))
    assert patch_nce_loss(q, k, tau, extra).item() == pytest.approx(total / 10, rel=1e-5)
    logits = patch_nce_logits(q, k, tau, extra)
    assert logits.shape == (2, 5, 1 + 5 + 3)
    assert torch.isinf(logits[..., 1:6].diagonal(dim1=-2, dim2=-1)).all()  # its own location is no negative


def test_patch_nce_keys_are_detached():
    q = torch.randn(1, 4, 3, requires_grad=True)
    k = torch.randn(1, 4, 3, requires_grad=True)
    patch_nce_loss(l2_normalize(q), l2_normalize(k)).backward()
    assert q.grad is not None and k.grad is None


def test_multilayer_nce_is_mean_of_layers():
    g = torch.Generator().manual_seed(1)
    qs = [l2_normalize(torch.randn(1, n, 4, generator=g)) for n in (3, 6)]
    ks = [l2_normalize(torch.randn(1, n, 4, generator=g)) for n in (3, 6)]
    expected = (patch_nce_loss(qs[0], ks[0]) + patch_nce_loss(qs[1], ks[1])) / 2
    assert torch.allclose(multilayer_nce(qs, ks), expected)


def test_sampling_and_gathering():
    g = torch.Generator().manual_seed(0)
    ids = sample_locations(12, 5, g)
    assert ids.unique().numel() == 5 and ids.max() < 12
    assert sample_locations(4, 256, g).numel() == 4  # a map smaller than S gives all its locations
    feats = torch.arange(2 * 3 * 12, dtype=torch.float).view(2, 3, 3, 4)
    patches = gather_patches(feats, ids)
    assert patches.shape == (2, 5, 3)
    for j, i in enumerate(ids.tolist()):
        assert torch.equal(patches[:, j], feats[:, :, i // 4, i % 4])


def test_crop_boxes_are_strictly_smaller_and_fail_loudly():
    g = torch.Generator().manual_seed(0)
    boxes = crop_boxes(32, 24, count=3, scale_range=(0.5, 0.9), centre_scale=0.7, generator=g)
    assert len(boxes) == 4
    top, left, h, w = boxes[0]
    assert (h, w) == (round(0.7 * 32), round(0.7 * 24)) and (top, left) == ((32 - h) // 2, (24 - w) // 2)
    for top, left, h, w in boxes:
        assert 0 < h < 32 and 0 < w < 24 and top + h <= 32 and left + w <= 24
    with pytest.raises(CropError, match="strictly"):
        crop_boxes(32, 32, count=1, scale_range=(0.5, 1.0), centre_scale=1.0)
    with pytest.raises(CropError, match="strictly smaller"):
        crop_boxes(3, 3, count=0, centre_scale=0.9)  # round(2.7) = 3: the whole image
    with pytest.raises(ConfigError, match="strictly between 0 and 1"):
        TranslationConfig(crop_scale=(0.5, 1.0))


def test_crop_views_resize_back_and_show_new_content():
    g = torch.Generator().manual_seed(0)
    images = torch.randn(2, 3, 16, 16, generator=g)
    boxes = crop_boxes(16, 16, count=2, generator=g)
    views = crop_views(images, boxes)
    assert views.shape == (6, 3, 16, 16)
    top, left, h, w = boxes[1]
    expected = torch.nn.functional.interpolate(images[:, :, top:top + h, left:left + w], size=(16, 16),
                                               mode="bilinear", align_corners=False)
    assert torch.allclose(views[2:4], expected)
    assert all(not torch.allclose(views[2 * v:2 * v + 2], images) for v in range(3))


def test_random_negatives_avoid_sampled_locations():
    g = torch.Generator().manual_seed(0)
    sampled = torch.tensor([0, 3, 5])
    ids = random_negative_ids(8, sampled, 20, g)
    assert ids.numel() == 20 and not set(ids.tolist()) & {0, 3, 5} and ids.max() < 8
    assert random_negative_ids(3, torch.tensor([0, 1, 2]), 5, g).numel() == 0


def test_negative_count_of_presets():
    S = 256
    assert preset("cut").negatives_per_query == S - 1
    assert preset("mcdut").negatives_per_query == S - 1 + 3 * S
    assert preset("cut", extra_negatives=True).negatives_per_query == S - 1 + 3 * S


def test_domain_consistency_formula_zero_and_gradient():
    a = torch.tensor([[0.6, 0.8], [1.0, 0.0]], requires_grad=True)
    b = torch.tensor([[0.0, 1.0], [1.0, 0.0]], requires_grad=True)
    loss = domain_consistency_loss(a, b, weight=10.0)
    assert loss.item() == pytest.approx(10.0 * (0.6 + 0.2 + 0.0 + 0.0) / 4)
    loss.backward()
    assert a.grad is not None and b.grad is None  # e(y) is a target
    assert domain_consistency_loss(b.detach(), b.detach()).item() == 0.0
    # a batch-1 mean embedding of several real images broadcasts
    assert domain_consistency_loss(a.detach(), b.detach().mean(0, keepdim=True), 1.0).item() == pytest.approx(
        (abs(0.6 - 0.5) + abs(0.8 - 0.5) + 0.5 + 0.5) / 4)


def test_lsgan_terms():
    real = torch.tensor([0.5, 1.5])
    fake = torch.tensor([0.2, -0.4])
    assert discriminator_loss(real, fake).item() == pytest.approx(0.5 * ((0.25 + 0.25) / 2 + (0.04 + 0.16) / 2))
    assert generator_gan_loss(fake).item() == pytest.approx((0.64 + 1.96) / 2)


def test_config_round_trip_and_presets():
    for name in ("cut", "fastcut", "mcdut"):
        config = preset(name, ngf=8)
        again = TranslationConfig.from_json(config.to_json())
        assert again == config and again.differences(config) == {}
    fast = preset("fastcut")
    assert (fast.nce_idt, fast.lambda_nce, fast.flip_equivariance, fast.n_epochs, fast.n_epochs_decay) == (False, 10.0, True, 150, 50)
    mcdut = preset("mcdut")
    assert mcdut.multi_crop and mcdut.domain_consistency and mcdut.dca and mcdut.lambda_dc == 10.0
    assert preset("cut").differences(mcdut).keys() == {"name", "multi_crop", "domain_consistency", "dca"}
    with pytest.raises(ConfigError, match="unknown preset"):
        preset("cyclegan")
    with pytest.raises(ConfigError, match="res5"):
        TranslationConfig(n_blocks=2)  # the default taps read res5
    with pytest.raises(ConfigError, match="unknown translation config keys"):
        TranslationConfig.from_dict({"ngf": 8, "bogus": 1})
    with pytest.raises(ConfigError, match="alternatives"):
        preset("mcdut", extra_negatives=True)
