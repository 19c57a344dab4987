"""The views library: exactness, orthogonality, animation ends, serialisation, registry, errors.

Property tests (hypothesis, derandomised so CI is reproducible) run over every registered view and
a few parameter variants, on every size among `SIZES` that the view accepts.
"""

from __future__ import annotations

import importlib.metadata
import json
import sys
import textwrap
import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import anagram.views as V
import anagram.views.registry as registry
from anagram.views import (
    IndexPermutationView,
    View,
    ViewError,
    available,
    coarsen_permutation,
    describe,
    expand_permutation,
    from_config,
    get_view,
    parse_view,
    register_view,
)
from anagram.views.factorized import BandedOperator, blur_matrix, gaussian_blur, mirror_index, motion_kernel

PROPERTY = settings(max_examples=15, deadline=None, derandomize=True)

SIZES = [(4, 4), (6, 6), (8, 8), (9, 9), (12, 12), (16, 16), (18, 18), (24, 24), (32, 32), (36, 36),
         (8, 16), (12, 24), (16, 8), (20, 12)]

SPEC_NAMES = [
    "identity", "flip", "hflip", "rotate_cw", "rotate_ccw", "rotate_180", "transpose", "negate", "skew",
    "patch_permute", "pixel_permute", "jigsaw", "inner_circle", "square_hinge", "permutation", "low_pass",
    "high_pass", "band_low", "band_mid", "band_high", "grayscale", "color", "motion", "motion_residual", "scale",
]


def _random_permutation_view(rows: int, cols: int, seed: int) -> IndexPermutationView:
    perm = torch.randperm(rows * cols, generator=torch.Generator().manual_seed(seed))
    return IndexPermutationView(perm.view(rows, cols).tolist())


def _make_views() -> dict[str, View]:
    views: dict[str, View] = {}
    for name in available():
        if name == "permutation":
            views[name] = _random_permutation_view(4, 4, seed=1)
        elif name == "pixel_permute":
            views[name] = get_view(name, size=4)  # the default (64) only fits 64, 128, ...
        else:
            views[name] = get_view(name)
    views.update({
        "patch_permute:4,seed=1": parse_view("patch_permute:4,seed=1"),
        "patch_permute:3": parse_view("patch_permute:3"),
        "jigsaw:3,seed=2": parse_view("jigsaw:3,seed=2"),
        "jigsaw:2": parse_view("jigsaw:2"),
        "skew:-0.7": parse_view("skew:-0.7"),
        "inner_circle:0.45": parse_view("inner_circle:0.45"),
        "square_hinge:4": parse_view("square_hinge:4"),
        "permutation 2x4": _random_permutation_view(2, 4, seed=2),
        "low_pass:1": parse_view("low_pass:1"),
        "motion:5,0": parse_view("motion:5,0"),
        "scale:2": parse_view("scale:2"),
    })
    return views


VIEWS = _make_views()
VALID = {key: [hw for hw in SIZES if view.size_problem(*hw) is None] for key, view in VIEWS.items()}
INVERTIBLE = sorted(k for k, v in VIEWS.items() if v.invertible)
ORTHOGONAL = sorted(k for k, v in VIEWS.items() if v.orthogonal)
FACTORIZED = sorted(k for k, v in VIEWS.items() if v.factorized)
SPATIAL = sorted(k for k, v in VIEWS.items() if not v.factorized and k != "negate")


def test_every_view_has_sizes_to_test():
    assert all(VALID.values()), [k for k, sizes in VALID.items() if not sizes]


def test_every_named_family_is_registered():
    assert set(SPEC_NAMES) <= set(available())
    assert len(available()) == len(set(available()))
    assert "vflip" not in available() and "rotate_90" not in available()  # aliases stay hidden
    assert type(get_view("vflip")) is type(get_view("flip"))
    assert type(get_view("rotate_90")) is type(get_view("rotate_cw"))


@st.composite
def batches(draw, key, dtype=torch.float64, extra_channels=0):
    """A random batch ``(B, C + extra, H, W)`` of a size the view accepts, and C."""
    height, width = draw(st.sampled_from(VALID[key]))
    batch, channels = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**16))
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, channels + extra_channels, height, width, generator=generator, dtype=torch.float64)
    return x.to(dtype), channels


# -- exactness ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", INVERTIBLE)
@PROPERTY
@given(data=st.data())
def test_inverse_undoes_view_exactly(key, data):
    view, (x, _) = VIEWS[key], data.draw(batches(key))
    assert view.view(x).shape == x.shape
    assert torch.equal(view.inverse(view.view(x)), x)
    assert torch.equal(view.view(view.inverse(x)), x)


@pytest.mark.parametrize("key", INVERTIBLE)
@PROPERTY
@given(data=st.data(), dtype=st.sampled_from([torch.float16, torch.bfloat16, torch.int64]))
def test_exact_in_every_dtype(key, data, dtype):
    view, (x, _) = VIEWS[key], data.draw(batches(key))
    x = (x * 10).to(dtype)
    out = view.view(x)
    assert out.dtype == dtype and torch.equal(view.inverse(out), x)


@pytest.mark.parametrize("key", SPATIAL)
@PROPERTY
@given(data=st.data())
def test_spatial_inverse_moves_every_channel(key, data):
    """A model output with extra (variance) channels is moved as a whole by spatial views."""
    view, (x, channels) = VIEWS[key], data.draw(batches(key, extra_channels=3))
    assert torch.equal(view.inverse(x, noise_channels=channels), view.inverse(x))
    assert torch.equal(view.inverse_map(x), view.inverse(x))


def test_views_work_on_the_meta_device_and_cache_per_device():
    view = get_view("jigsaw")
    x = torch.randn(2, 3, 32, 32, device="meta")
    assert view.view(x).device.type == "meta" and view.inverse(x).shape == x.shape
    assert {(32, 32, "cpu"), (32, 32, "meta")} <= set(view.__dict__["_permutation_cache"])


def test_batch_shapes_are_free():
    view = get_view("patch_permute", num_patches=4)
    x = torch.randn(5, 16, 16)
    assert torch.equal(view.view(x[None])[0], view.view(x))
    assert torch.equal(view.view(x.expand(2, 7, 5, 16, 16))[1, 3], view.view(x))


# -- orthogonality ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ORTHOGONAL)
@PROPERTY
@given(data=st.data())
def test_orthogonal_views_preserve_norms_and_inner_products(key, data):
    view, (x, _) = VIEWS[key], data.draw(batches(key))
    y = torch.randn_like(x)
    assert torch.allclose(view.view(x).norm(), x.norm(), rtol=1e-12)
    assert torch.allclose((view.view(x) * view.view(y)).sum(), (x * y).sum(), rtol=1e-9, atol=1e-9)
    assert torch.allclose(view.view(2 * x - 3 * y), 2 * view.view(x) - 3 * view.view(y), atol=1e-12)
    assert torch.equal(view.view(x).abs().flatten().sort().values, x.abs().flatten().sort().values)


@pytest.mark.parametrize("key", ORTHOGONAL)
def test_orthogonal_view_matrix_is_orthogonal(key):
    """The view's matrix M satisfies M M^T = I, so v(noise) ~ N(0, M M^T) = N(0, I) exactly."""
    view = VIEWS[key]
    height, width = max((hw for hw in VALID[key] if hw[0] * hw[1] <= 400), key=lambda hw: hw[0] * hw[1])
    n = height * width
    basis = torch.eye(n, dtype=torch.float64).view(n, 1, height, width)
    matrix = view.view(basis).reshape(n, n)
    assert torch.equal(matrix @ matrix.T, torch.eye(n, dtype=torch.float64))


@pytest.mark.parametrize("key", ORTHOGONAL)
def test_orthogonal_views_keep_gaussian_noise_standard(key):
    view = VIEWS[key]
    height, width = max(VALID[key], key=lambda hw: hw[0] * hw[1])
    noise = torch.randn(64, 3, height, width, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    z = view.view(noise)
    n = z.numel()
    assert abs(z.mean()) < 5 / n**0.5 and abs(z.var() - 1) < 0.05
    for a, b in ((z[..., 1:, :], z[..., :-1, :]), (z[..., :, 1:], z[..., :, :-1]), (z[:, 1:], z[:, :-1])):
        assert abs((a * b).mean()) < 5 / a.numel() ** 0.5  # no correlation between neighbours/channels


# -- channel policy: negation and factorized views ---------------------------------------------------------


def test_negate_flips_only_the_noise_channels():
    view = get_view("negate")
    noise, variance = torch.randn(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    out = view.inverse(torch.cat([view.view(noise), variance], 1), noise_channels=3)
    assert torch.equal(out, torch.cat([noise, variance], 1))
    assert torch.equal(view.inverse(noise), -noise)
    assert torch.equal(view.inverse_map(variance), variance)  # maps are not negated
    assert view.spaces == ("pixel",)


@pytest.mark.parametrize("key", FACTORIZED)
@PROPERTY
@given(data=st.data())
def test_factorized_views_leave_input_and_variance_alone(key, data):
    view, (x, channels) = VIEWS[key], data.draw(batches(key, extra_channels=2))
    assert view.view(x) is x
    out = view.inverse(x, noise_channels=channels)
    assert torch.equal(out[:, channels:], x[:, channels:])
    assert torch.allclose(out[:, :channels], view.component(x[:, :channels]))
    assert view.inverse_map(x) is x
    assert not view.orthogonal and not view.invertible


FAMILIES = [("low_pass", "high_pass"), ("band_low", "band_mid", "band_high"), ("grayscale", "color"),
            ("motion", "motion_residual"), ("scale", "scale_residual")]


@pytest.mark.parametrize("family", FAMILIES, ids="+".join)
@pytest.mark.parametrize("size", [(16, 16), (64, 64), (32, 48)])
def test_factorized_families_sum_to_the_identity(family, size):
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    total = sum(get_view(name).inverse(x) for name in family)
    assert torch.allclose(total, x, atol=1e-12)
    for name in family:  # and in float32, as the pipeline runs them
        assert get_view(name).inverse(x.float()).dtype == torch.float32


def test_blurs_match_reflect_padded_convolutions_and_scale_with_size():
    x = torch.randn(2, 3, 40, 40, dtype=torch.float64)
    sigma = 2.5
    radius = blur_matrix(40, sigma).gt(0)[20].sum().item() // 2
    taps = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-taps**2 / (2 * sigma**2))
    g /= g.sum()
    padded = F.pad(x.view(6, 1, 40, 40), (radius,) * 4, mode="reflect")
    reference = F.conv2d(F.conv2d(padded, g.view(1, 1, 1, -1)), g.view(1, 1, -1, 1)).view_as(x)
    assert torch.allclose(gaussian_blur(x, sigma), reference, atol=1e-12)
    low = get_view("low_pass", sigma=2.0)
    constant = torch.full((1, 3, 64, 64), 0.3, dtype=torch.float64)
    assert torch.allclose(low.inverse(constant), constant) and get_view("high_pass").inverse(constant).abs().max() < 1e-12
    # sigma is in pixels of a 64-pixel image: the 128-pixel version of a smooth signal blurs alike.
    small = torch.randn(1, 1, 64, 64, dtype=torch.float64)
    big = F.interpolate(small, scale_factor=2, mode="nearest")
    expected = low.inverse(small)
    scaled = (F.avg_pool2d(low.inverse(big), 2) - expected).abs().mean()
    unscaled = (F.avg_pool2d(gaussian_blur(big, 2.0), 2) - expected).abs().mean()
    assert scaled < 0.1 * expected.abs().mean() and scaled < 0.3 * unscaled


@pytest.mark.parametrize("size", [(8, 8), (40, 40), (128, 96), (200, 72)])
@pytest.mark.parametrize("sigma", [0.7, 4.0])
def test_banded_blur_equals_the_dense_matrix_product(size, sigma):
    """The block-banded products skip only exact zeros: same result as the dense separable blur."""
    height, width = size
    x = torch.randn(2, 3, height, width, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    dense = blur_matrix(height, sigma) @ x @ blur_matrix(width, sigma).T
    assert torch.allclose(gaussian_blur(x, sigma), dense, atol=1e-12)
    operator = BandedOperator(blur_matrix(128, 4.0))
    assert len(operator.spans) > 1  # a wide image does get split into blocks
    assert all(c1 - c0 < 128 for _, _, c0, c1 in operator.spans[1:-1])
    half = gaussian_blur(x.half(), sigma)
    assert half.dtype == torch.float16 and torch.allclose(half.double(), dense, atol=2e-2)


@pytest.mark.parametrize("size", [(5, 7), (40, 40), (64, 96)])
@pytest.mark.parametrize("angle", [0.0, 30.0, 90.0, 135.0])
def test_motion_blur_equals_a_mirror_padded_convolution(size, angle):
    height, width = size
    x = torch.randn(2, 3, height, width, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    view = get_view("motion", length=12.0, angle=angle)
    kernel = motion_kernel(round(12.0 * min(size) / 64, 6), angle)
    radius = kernel.shape[-1] // 2
    rows = mirror_index(torch.arange(-radius, height + radius), height)
    cols = mirror_index(torch.arange(-radius, width + radius), width)
    padded = x[..., rows[:, None], cols[None, :]].reshape(6, 1, height + 2 * radius, width + 2 * radius)
    # conv2d correlates: the flipped kernel makes it the convolution.
    reference = F.conv2d(padded, kernel.flip(-2, -1)[None, None]).view_as(x)
    assert torch.allclose(view.inverse(x), reference, atol=1e-12)


def test_motion_kernel_points_along_its_angle():
    horizontal, vertical = motion_kernel(6.0, 0.0), motion_kernel(6.0, 90.0)
    middle = horizontal.shape[0] // 2
    assert torch.allclose(horizontal.sum(), torch.tensor(1.0, dtype=torch.float64))
    assert horizontal[middle].sum() == horizontal.sum() and vertical[:, middle].sum() == vertical.sum()
    diagonal = motion_kernel(6.0, 45.0)  # up-right on screen: rows above the centre hold the right half
    assert diagonal[:middle, middle + 1:].sum() > 0.3 and diagonal[:middle, :middle].sum() == 0


def test_grayscale_and_color_are_pixel_only():
    for name in ("grayscale", "color", "negate", "pixel_permute"):
        with pytest.raises(ViewError, match="latent"):
            get_view(name).check(64, 64, "latent")


# -- animation --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(VIEWS))
@PROPERTY
@given(data=st.data(), s=st.floats(0.01, 0.99))
def test_make_frame_ends_are_exact(key, data, s):
    view, (x, _) = VIEWS[key], data.draw(batches(key, dtype=torch.float32))
    image = x.sigmoid()  # display images live in [0, 1]
    assert torch.equal(view.make_frame(image, 0), image)
    assert torch.equal(view.make_frame(image, 1), view.view_image(image))
    assert torch.allclose(view.make_frame(image[0], 1), view.view_image(image)[0], atol=1e-6)
    frame = view.make_frame(image[0], s)
    assert frame.shape == image[0].shape and frame.dtype == image.dtype and frame.isfinite().all()
    if not view.factorized:  # moves and fades stay in the image's range
        assert frame.min() >= -1e-5 and frame.max() <= 1 + 1e-5


@pytest.mark.parametrize("key", sorted(k for k in VIEWS if not VIEWS[k].factorized))
def test_make_frame_moves_continuously_into_the_view(key):
    """Just before the end the motion has (nearly) arrived: checks directions of turns and moves."""
    view = VIEWS[key]
    height, width = max(VALID[key], key=lambda hw: hw[0] * hw[1])
    y = torch.linspace(0, 1, height)[:, None]
    x = torch.linspace(0, 1, width)[None, :]
    image = torch.stack([y * torch.ones_like(x), x * torch.ones_like(y), 0.5 + 0.2 * (y - x)])
    frame, target = view.make_frame(image, 1 - 1e-4), view.view_image(image)
    assert (frame - target).abs().mean() < 0.02


def test_view_image_is_the_view_for_moves_and_readable_for_value_changes():
    image = torch.rand(3, 16, 16)
    assert torch.equal(get_view("rotate_cw").view_image(image), get_view("rotate_cw").view(image[None])[0])
    assert torch.allclose(get_view("negate").view_image(image), 1 - image)
    assert torch.allclose(get_view("grayscale").view_image(image), image.mean(0, keepdim=True).expand(3, -1, -1))


# -- coarser grids (attention maps) ---------------------------------------------------------------------------


def test_patch_permute_rebuilds_at_coarser_sizes_consistently():
    view = get_view("patch_permute", num_patches=4)
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    for size in (32, 16, 8, 4):
        factor = 64 // size
        assert torch.allclose(F.avg_pool2d(view.view(x), factor), view.view(F.avg_pool2d(x, factor)))
        maps = torch.rand(2, 5, size, size)
        assert torch.equal(view.inverse_map(view.view(maps)), maps)
    with pytest.raises(ViewError, match="patch grid"):
        view.permutation(6, 6)


def test_coarsen_permutation_accepts_block_moves_and_refuses_scatter():
    cells = torch.randperm(16, generator=torch.Generator().manual_seed(3))
    fine = expand_permutation(cells, 4, 4, 32, 32)
    assert torch.equal(coarsen_permutation(fine, 32, 32, 4, 4), cells)
    # a block may be turned inside (jigsaw-like) and still coarsen
    turned = torch.rot90(torch.arange(64).view(8, 8), 1).flatten()
    assert torch.equal(coarsen_permutation(turned, 8, 8, 4, 4), torch.rot90(torch.arange(16).view(4, 4), 1).flatten())
    shuffled = torch.randperm(64, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ViewError, match="scatters"):
        coarsen_permutation(shuffled, 8, 8, 4, 4)
    with pytest.raises(ViewError, match="divide"):
        coarsen_permutation(fine, 32, 32, 5, 5)


def test_pixel_permute_moves_blocks_on_multiples_and_refuses_coarser_maps():
    view = get_view("pixel_permute")  # a 64x64 pixel shuffle
    assert view.size_problem(64, 64) is None and view.size_problem(256, 256) is None
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    big = F.interpolate(x, scale_factor=4, mode="nearest")
    assert torch.equal(view.view(big), F.interpolate(view.view(x), scale_factor=4, mode="nearest"))
    assert view.permutation(64, 64).shape == (64 * 64,)  # maps of the 256 stage at 64 work
    with pytest.raises(ViewError, match="scatters"):
        view.inverse_map(torch.rand(1, 2, 16, 16))
    with pytest.raises(ViewError, match="size="):
        view.check(96, 96)


def test_generic_permutation_view_scales_like_a_grid():
    perm = torch.tensor([[3, 2], [1, 0]])  # a 2x2 grid turned by 180 degrees
    view = IndexPermutationView(perm)
    x = torch.randn(1, 1, 8, 8)
    assert torch.equal(view.view(x), get_view("rotate_180").view(x).view(1, 1, 2, 4, 2, 4)
                       .flip(3, 5).reshape(1, 1, 8, 8))  # blocks move, their inside does not turn
    flat = IndexPermutationView([3, 2, 1, 0], height=2, width=2)
    assert flat == view and flat.params()["perm"] == [[3, 2], [1, 0]]
    with pytest.raises(ViewError, match="not a permutation"):
        IndexPermutationView([[0, 0], [1, 2]])
    with pytest.raises(ViewError, match="height"):
        IndexPermutationView([0, 1, 2])


@pytest.mark.parametrize("name", ["skew", "inner_circle", "square_hinge", "jigsaw", "rotate_cw", "flip"])
def test_geometric_views_act_on_maps_at_any_size_they_tile(name):
    view = get_view(name)
    for size in (8, 16, 32, 64):
        if view.size_problem(size, size) is None:
            maps = torch.rand(2, 3, size, size)
            assert torch.equal(view.inverse_map(view.view(maps)), maps)


def test_skew_shift_is_relative_to_the_size():
    view = get_view("skew")
    for size in (16, 64, 256):
        shifts = view.shifts(size, size)
        assert torch.equal(shifts, -shifts.flip(0))  # antisymmetric about the centre column
        assert abs(shifts[-1] / size - 1.5 * (size - 0.5 - size / 2) / size) <= 0.5 / size


def test_inner_circle_turns_only_the_disc():
    view = get_view("inner_circle")
    disc = view.disc(64, 64)
    assert torch.equal(disc, disc.flip(0, 1)) and abs(disc.float().mean() - 3.1416 * 0.375**2) < 0.02
    x = torch.randn(1, 1, 64, 64)
    y = view.view(x)
    assert torch.equal(y[..., ~disc], x[..., ~disc])
    assert torch.equal(y[..., disc], x.flip(-1, -2)[..., disc])


def test_square_hinge_turns_each_square_about_its_centre():
    view = get_view("square_hinge")
    x = torch.randn(1, 1, 64, 64)
    y = view.view(x)
    assert torch.equal(y[..., :21, :21], torch.rot90(x[..., :21, :21], -1, (-2, -1)))
    assert torch.equal(y[..., :21, 21:42], torch.rot90(x[..., :21, 21:42], 1, (-2, -1)))
    assert torch.equal(y[..., 63, :], x[..., 63, :]) and torch.equal(y[..., :, 63], x[..., :, 63])


def test_rotations_turn_the_right_way():
    x = torch.arange(4.0).view(1, 1, 2, 2)  # [[0, 1], [2, 3]]
    assert get_view("rotate_cw").view(x).flatten().tolist() == [2, 0, 3, 1]
    assert get_view("rotate_ccw").view(x).flatten().tolist() == [1, 3, 0, 2]
    assert get_view("flip").view(x).flatten().tolist() == [2, 3, 0, 1]
    assert get_view("hflip").view(x).flatten().tolist() == [1, 0, 3, 2]
    assert get_view("transpose").view(x).flatten().tolist() == [0, 2, 1, 3]


# -- serialisation ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(VIEWS))
def test_config_round_trips(key):
    view = VIEWS[key]
    config = json.loads(json.dumps(view.config()))
    again = from_config(config)
    assert again == view and type(again) is type(view) and again.config() == view.config()
    assert parse_view(config) == view and hash(again) == hash(view)
    height, width = VALID[key][0]
    x = torch.randn(1, 2, height, width)
    assert torch.equal(again.view(x), view.view(x)) and torch.equal(again.inverse(x), view.inverse(x))
    scalars = {k: v for k, v in view.params().items() if not isinstance(v, list)}
    if len(scalars) == len(view.params()):
        spec = view.name + (":" + ",".join(f"{k}={v}" for k, v in scalars.items()) if scalars else "")
        assert parse_view(spec) == view
        assert all(f"{k}={v!r}" in repr(view) for k, v in scalars.items())


# -- registry and string specs -----------------------------------------------------------------------------------


def test_string_specs():
    assert parse_view("patch_permute:8") == get_view("patch_permute", num_patches=8)
    assert parse_view("jigsaw:4,seed=3") == get_view("jigsaw", grid=4, seed=3)
    assert parse_view(" skew : -1.25 ") == get_view("skew", factor=-1.25)
    assert parse_view("motion:angle=30") == get_view("motion", angle=30.0)
    assert parse_view("permutation:[[1,0]],1,2") == IndexPermutationView([[1, 0]])
    assert parse_view(V.JigsawView) == get_view("jigsaw")
    view = get_view("identity")
    assert parse_view(view) is view


@pytest.mark.parametrize("spec, message", [
    ("patch_permute:8,1,2", "too many values"),
    ("patch_permute:size=3", "num_patches"),
    ("jigsaw:seed=1,4", "positional value"),
    ("jigsaw:seed=1,seed=2", "repeated"),
    ("jigsaw:grid=x", "grid"),
])
def test_bad_specs_say_what_is_accepted(spec, message):
    with pytest.raises(ViewError, match=message):
        parse_view(spec)


def test_unknown_names_list_the_views_and_suggest_one():
    with pytest.raises(ViewError) as error:
        get_view("jigsw")
    assert "Did you mean 'jigsaw'" in str(error.value) and all(n in str(error.value) for n in available())
    with pytest.raises(ViewError, match="Did you mean 'flip'"):
        parse_view("vflp:1")
    with pytest.raises(ViewError):
        parse_view(42)
    with pytest.raises(ViewError, match="name"):
        from_config({"seed": 1})


def test_register_view_as_decorator_and_conflicts():
    @register_view
    class TestOnlySpiral(V.PermutationView):
        """A test view (a 180-degree turn, as a permutation)."""

        name = "test_only_spiral"

        def _build_permutation(self, height, width):
            return torch.arange(height * width).flip(0)

    try:
        assert "test_only_spiral" in available()
        view = get_view("test_only_spiral")
        x = torch.randn(1, 1, 5, 7)
        assert torch.equal(view.view(x), x.flip(-1, -2))
        with pytest.raises(ViewError, match="already registered"):
            register_view(V.FlipView, name="test_only_spiral")
        with pytest.raises(ViewError, match="View subclasses"):
            register_view(int)
    finally:
        registry._REGISTRY.pop("test_only_spiral", None)


def test_third_party_views_come_from_entry_points(tmp_path, monkeypatch):
    (tmp_path / "anagram_test_plugin.py").write_text(textwrap.dedent('''
        from anagram.views.simple import FlipView

        class PluginView(FlipView):
            """A plugin's view."""
            name = "plugin_flip"

        NOT_A_VIEW = 3
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    points = [
        importlib.metadata.EntryPoint("plugin_flip", "anagram_test_plugin:PluginView", V.ENTRY_POINT_GROUP),
        importlib.metadata.EntryPoint("broken", "anagram_test_plugin:NOT_A_VIEW", V.ENTRY_POINT_GROUP),
    ]
    calls = []

    def fake_entry_points(group):
        calls.append(group)
        return points

    monkeypatch.setattr(registry.metadata, "entry_points", fake_entry_points)
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            names = available()
        assert "plugin_flip" in names and "broken" not in names
        assert any("broken" in str(w.message) for w in caught)
        assert type(get_view("plugin_flip")).__name__ == "PluginView"
        available()
        assert calls == [V.ENTRY_POINT_GROUP]  # loaded lazily, once
    finally:
        registry._REGISTRY.pop("plugin_flip", None)
        sys.modules.pop("anagram_test_plugin", None)


def test_describe_lists_every_view_with_its_properties():
    rows = describe()
    json.dumps(rows)
    assert [row["name"] for row in rows] == available()
    by_name = {row["name"]: row for row in rows}
    jigsaw = by_name["jigsaw"]
    assert jigsaw["parameters"] == {"grid": 4, "seed": 0} and jigsaw["square_only"] and jigsaw["orthogonal"]
    assert jigsaw["class"] == "anagram.views.jigsaw.JigsawView" and jigsaw["description"]
    assert by_name["negate"]["spaces"] == ["pixel"] and by_name["low_pass"]["factorized"]
    assert by_name["permutation"]["required"] == ["perm"]
    assert by_name["flip"]["aliases"] == ["vflip"]
    assert all(row["description"] for row in rows)


# -- errors ------------------------------------------------------------------------------------------------------


def test_square_only_views_refuse_rectangles():
    for name in ("rotate_cw", "rotate_ccw", "transpose", "jigsaw", "square_hinge"):
        with pytest.raises(ViewError, match="64x32") as error:
            get_view(name).check(64, 32)
        assert "square" in str(error.value) and f"view '{name}" in str(error.value)
    get_view("rotate_180").check(64, 32)


def test_untileable_sizes_say_what_would_work():
    with pytest.raises(ViewError) as error:
        get_view("jigsaw", grid=3).check(64, 64)
    message = str(error.value)
    assert "'jigsaw(grid=3" in message and "64x64" in message and "multiple of 3, e.g. 63 or 66" in message
    with pytest.raises(ViewError, match="multiple of 8"):
        get_view("patch_permute").permutation(60, 64)
    with pytest.raises(ViewError, match="multiple of 4"):
        get_view("scale").check(30, 32)


def test_pixel_only_views_refuse_latent_space():
    with pytest.raises(ViewError, match="pixel"):
        get_view("negate").check(64, 64, "latent")
    for name in ("rotate_cw", "jigsaw", "patch_permute", "flip", "low_pass"):
        get_view(name).check(64, 64, "latent")


def test_bad_parameters_are_view_errors():
    for call in (lambda: get_view("jigsaw", grid=0), lambda: get_view("jigsaw", pieces=3),
                 lambda: get_view("inner_circle", radius=-1), lambda: get_view("scale", factor=0)):
        with pytest.raises(ViewError):
            call()


def test_size_advice_is_a_multiple_of_what_the_model_takes_too():
    """A 5x5 jigsaw on a model (or command line) that takes only multiples of 8: 40, not 30 or 35."""
    from anagram.views.jigsaw import JigsawView

    with pytest.raises(ViewError, match=r"multiple of 40 \(5 for the view, 8 for the image size\), e.g. 40 or 80"):
        get_view("jigsaw", grid=5).check(32, 32, multiple=8)
    with pytest.raises(ViewError, match=r"multiple of 5, e.g. 30 or 35$"):
        get_view("jigsaw", grid=5).check(32, 32)
    with pytest.raises(ViewError, match=r"multiple of 24 \(3 for the view, 8 for the image size\), e.g. 48 or 72"):
        get_view("patch_permute", num_patches=3).check(64, 64, multiple=8)
    get_view("jigsaw", grid=5).check(40, 40, multiple=8)

    class OwnAdvice(JigsawView):  # a view written before `multiple`: its own advice, no TypeError
        def size_problem(self, height, width):
            return super().size_problem(height, width)

    with pytest.raises(ViewError, match="multiple of 5, e.g. 30 or 35"):
        OwnAdvice(5).check(32, 32, multiple=8)
