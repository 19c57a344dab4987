"""Anti-segregation (spec §5): overlap, loss, canonical-frame concept maps and the gradient step."""

import itertools

import pytest
import torch

from anagram.method.anti_segregation import (
    anti_segregation_loss,
    anti_segregation_step,
    concept_maps,
    default_target,
    evaluate_anti_segregation,
    overlap,
)
from anagram.method.attention import capture_cross_attention
from anagram.views.base import View
from tiny_models import if_unet, sd_unet


class Identity(View):
    name = "test_identity"

    def view(self, x):
        return x

    def inverse(self, x, noise_channels=None):
        return x


class Rot180(View):
    """A local exact 180-degree rotation (independent of the view registry)."""

    name = "test_rot180"

    def view(self, x):
        return torch.rot90(x, 2, dims=(-2, -1))

    def inverse(self, x, noise_channels=None):
        return torch.rot90(x, 2, dims=(-2, -1))


class PixelShuffle(View):
    """A seeded pixel permutation built for whatever size it is asked for (maps included)."""

    name = "test_pixel_shuffle"

    def __init__(self, seed=0):
        self.seed = seed
        self._perms = {}

    def _perm(self, h, w):
        if (h, w) not in self._perms:
            self._perms[h, w] = torch.randperm(h * w, generator=torch.Generator().manual_seed(self.seed))
        return self._perms[h, w]

    def view(self, x):
        p = self._perm(*x.shape[-2:])
        return x.flatten(-2)[..., p].view_as(x)

    def inverse(self, x, noise_channels=None):
        p = self._perm(*x.shape[-2:])
        return x.flatten(-2)[..., p.argsort()].view_as(x)


# -- overlap and loss ------------------------------------------------------------------------------


def test_overlap_extremes():
    a = torch.rand(3, 8, 8)
    torch.testing.assert_close(overlap(a, a), torch.full((3,), 0.5))
    left = torch.zeros(1, 4, 4)
    left[..., :2] = 1
    torch.testing.assert_close(overlap(left, 1 - left), torch.zeros(1))
    torch.testing.assert_close(overlap(a, 2 * a), torch.full((3,), 1 / 3))
    assert torch.isfinite(overlap(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2))).all()


def loop_loss(maps, target):
    """The reference formula with explicit pairs."""
    n = maps.shape[0]
    pairs = list(itertools.combinations(range(n), 2))
    r = [overlap(maps[i], maps[j]) for i, j in pairs]
    return sum((target - rij).abs() for rij in r) / len(pairs)


@pytest.mark.parametrize("n", [2, 3, 4])
def test_loss_matches_the_pairwise_formula(n):
    maps = torch.rand(n, 2, 6, 6, generator=torch.Generator().manual_seed(n)) ** 3
    assert default_target(n) == pytest.approx(0.5 - 0.05 * (n - 1))
    torch.testing.assert_close(anti_segregation_loss(maps), loop_loss(maps, 0.5 - 0.05 * (n - 1)))
    torch.testing.assert_close(anti_segregation_loss(maps, target=0.3), loop_loss(maps, 0.3))


def test_loss_on_constructed_maps():
    same = torch.rand(1, 4, 4).expand(3, -1, -1, -1)
    torch.testing.assert_close(anti_segregation_loss(same), torch.tensor([0.1]))  # |0.4 - 0.5|
    left = torch.zeros(1, 4, 4)
    left[..., :2] = 1
    disjoint = torch.stack([left, 1 - left])
    torch.testing.assert_close(anti_segregation_loss(disjoint), torch.tensor([0.45]))
    torch.testing.assert_close(anti_segregation_loss(same[:1]), torch.zeros(1))


def test_concept_maps_sum_tokens_and_invert_each_view():
    n, b, h, w, t = 2, 3, 4, 4, 5
    attn = torch.rand(n * b, h, w, t)
    views = [Identity(), Rot180()]
    maps = concept_maps(attn, [[1], [2, 4]], views)
    assert maps.shape == (n, b, h, w)
    torch.testing.assert_close(maps[0], attn[:b, ..., 1])
    torch.testing.assert_close(maps[1], torch.rot90(attn[b:, ..., 2] + attn[b:, ..., 4], 2, dims=(-2, -1)))
    with pytest.raises(ValueError, match="one view and one token list"):
        concept_maps(attn, [[1]], views)


def test_concept_maps_undo_a_permutation_at_map_resolution():
    shuffle = PixelShuffle(seed=3)
    canonical = torch.rand(2, 1, 6, 6)
    seen = shuffle.view(canonical)  # what the UNet would attend to in the view's frame
    attn = torch.cat([canonical, seen]).permute(0, 2, 3, 1)  # (N*B, h, w, T=1)
    maps = concept_maps(attn, [[0], [0]], [Identity(), shuffle])
    torch.testing.assert_close(maps[1], maps[0])
    torch.testing.assert_close(anti_segregation_loss(maps), torch.full((2,), 0.05))


# -- the gradient step on a tiny real UNet -------------------------------------------------------


@pytest.fixture(scope="module")
def sd():
    return sd_unet().requires_grad_(False)


def closure(unet, views, emb, timestep=500):
    def predict_cond(x):
        unet(torch.cat([v.view(x) for v in views]), timestep, encoder_hidden_states=emb)

    return predict_cond


def run_step(unet, views, channels, step_size, resolution=16, tokens=(3, 5), seed=0):
    g = torch.Generator().manual_seed(seed)
    sample = torch.randn(1, channels, 16, 16, generator=g)
    emb = torch.randn(len(views), 8, 32, generator=g)
    capture = capture_cross_attention(unet, resolution=resolution, layers=("down", "mid", "up"))
    predict = closure(unet, views, emb)
    token_indices = [[tokens[k % len(tokens)]] for k in range(len(views))]
    processors = dict(unet.attn_processors)
    new, loss = anti_segregation_step(sample, predict, views, token_indices, capture, step_size=step_size)
    assert all(unet.attn_processors[k] is v for k, v in processors.items()) and not capture.active
    after = evaluate_anti_segregation(new, predict, views, token_indices, capture)
    again = evaluate_anti_segregation(sample, predict, views, token_indices, capture)
    torch.testing.assert_close(loss, again)  # loss is the loss *before* the step
    return sample, new, loss, after


def test_step_lowers_the_loss_on_sd(sd):
    sample, new, before, after = run_step(sd, [Identity(), Rot180()], 4, step_size=2000.0)
    assert before.shape == (1,) and before.item() > 0
    assert not new.requires_grad and new.grad_fn is None and new.dtype == sample.dtype
    assert not torch.equal(new, sample)
    # the tiny random UNet's attention barely depends on its input: it needs a large step
    assert (after < 0.95 * before).all(), (before, after)


def test_step_size_zero_is_a_no_op_and_direction_matters(sd):
    views = [Identity(), Rot180()]
    sample, new, before, _ = run_step(sd, views, 4, step_size=0.0)
    torch.testing.assert_close(new, sample)
    # a step uphill (negative size) raises the loss: the gradient really is the loss's
    _, _, before, after = run_step(sd, views, 4, step_size=-2000.0)
    assert (after > before).all()


def test_step_with_a_permutation_view(sd):
    _, _, before, after = run_step(sd, [Identity(), PixelShuffle(seed=1)], 4, step_size=2000.0, resolution=8)
    assert (after < before).all(), (before, after)


def test_step_with_three_views(sd):
    _, _, before, after = run_step(sd, [Identity(), Rot180(), PixelShuffle(2)], 4, step_size=2000.0, tokens=(1, 3, 5))
    assert (after < before).all(), (before, after)


def test_step_on_deepfloyd_if_added_kv_layers():
    unet = if_unet().requires_grad_(False)
    _, _, before, after = run_step(unet, [Identity(), Rot180()], 3, step_size=2000.0, resolution=8)
    assert (after < before).all(), (before, after)


@pytest.mark.parametrize("name", ["jigsaw", "inner_circle"])
def test_step_with_registry_views(sd, name):
    views_module = pytest.importorskip("anagram.views")
    if not hasattr(views_module, "get_view"):
        pytest.skip("view registry not available")
    view = views_module.get_view(name)
    if view.size_problem(8, 8) is not None:
        pytest.skip(f"{name} cannot act on an 8x8 map: {view.size_problem(8, 8)}")
    # the view's inverse_map at the 8x8 map resolution undoes its action at that resolution
    m = torch.rand(2, 1, 8, 8)
    torch.testing.assert_close(view.inverse_map(view.view(m)), m)
    _, _, before, after = run_step(sd, [views_module.get_view("identity"), view], 4, step_size=2000.0, resolution=8)
    assert (after < before).all(), (before, after)


def test_sum_tokens_contiguous_and_scattered():
    from anagram.method.anti_segregation import sum_tokens

    m = torch.rand(2, 3, 3, 7)
    torch.testing.assert_close(sum_tokens(m, [2, 3, 4]), m[..., 2:5].sum(-1))
    torch.testing.assert_close(sum_tokens(m, [1, 5]), m[..., 1] + m[..., 5])
    with pytest.raises(ValueError):
        sum_tokens(m, [])


def test_stopping_after_the_last_captured_layer_gives_the_same_step(sd):
    views = [Identity(), Rot180()]
    g = torch.Generator().manual_seed(3)
    sample, emb = torch.randn(1, 4, 16, 16, generator=g), torch.randn(2, 8, 32, generator=g)
    calls = []
    hook = sd.conv_out.register_forward_hook(lambda *args: calls.append(1))
    results = []
    try:
        for stop in (False, True):
            capture = capture_cross_attention(sd, resolution=8, layers=("down",), stop_when_complete=stop)
            results.append(anti_segregation_step(sample, closure(sd, views, emb), views, [[3], [5]], capture,
                                                 step_size=100.0))
    finally:
        hook.remove()
    assert calls == [1]  # the stopped pass never reached the output layer
    torch.testing.assert_close(results[1][0], results[0][0], rtol=0, atol=0)
    torch.testing.assert_close(results[1][1], results[0][1], rtol=0, atol=0)
