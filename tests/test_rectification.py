"""Variance rectification (spec §4) on synthetic Gaussian estimates of known correlation."""

import math

import pytest
import torch

from anagram.method.rectification import pairwise_correlation, rectification_scale, rectify

ESTIMATORS = ["product", "correlation"]


def correlated_noises(corr: torch.Tensor, batch=3, shape=(4, 48, 48), seed=0):
    """(N, B, C, H, W) unit-variance Gaussians whose correlation matrix is ``corr``."""
    g = torch.Generator().manual_seed(seed)
    n = corr.shape[0]
    # a PSD square root (eigh) also handles the singular rho = 1 case
    vals, vecs = torch.linalg.eigh(corr.double())
    root = vecs @ torch.diag(vals.clamp_min(0).sqrt()) @ vecs.T
    z = torch.randn(n, batch, *shape, generator=g, dtype=torch.float64)
    return torch.einsum("ij,j...->i...", root, z).float()


def equicorrelated(n, rho):
    return torch.full((n, n), rho).fill_diagonal_(1.0)


def random_correlation(n, seed):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, n + 2, generator=g, dtype=torch.float64)
    cov = a @ a.T
    d = cov.diag().rsqrt()
    return (d[:, None] * cov * d[None]).float()


UNEQUAL = {2: [0.7, 0.3], 3: [0.5, 0.3, 0.2], 4: [0.4, 0.3, 0.2, 0.1]}


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("n", [2, 3, 4])
@pytest.mark.parametrize("rho", [0.0, 0.3, 0.7, 1.0])
def test_rectified_combination_has_unit_variance(estimator, n, rho):
    noises = correlated_noises(equicorrelated(n, rho), seed=n * 10 + int(rho * 10))
    weights = torch.tensor(UNEQUAL[n])
    combined = torch.einsum("n,nb...->b...", weights, noises)
    c = rectification_scale(noises, weights, estimator)
    assert c.shape == (noises.shape[1],)
    variance = (c.view(-1, 1, 1, 1) * combined).flatten(1).var(-1)
    # 9216 elements per sample: the sampling error of a variance is ~sqrt(2/D) = 0.015
    torch.testing.assert_close(variance, torch.ones_like(variance), atol=0.06, rtol=0)
    # and the scale is the theoretical one 1 / sqrt(a^T R a)
    expected = 1 / math.sqrt(weights @ equicorrelated(n, rho) @ weights)
    torch.testing.assert_close(c, torch.full_like(c, expected), atol=0.04, rtol=0)


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("n", [3, 4])
def test_general_correlation_and_per_sample_weights(estimator, n):
    corr = random_correlation(n, seed=n)
    noises = correlated_noises(corr, batch=2, seed=n)
    weights = torch.softmax(torch.randn(2, n, generator=torch.Generator().manual_seed(1)), -1)
    c = rectification_scale(noises, weights, estimator)
    combined = torch.einsum("bn,nb...->b...", weights, noises)
    variance = (c.view(-1, 1, 1, 1) * combined).flatten(1).var(-1)
    torch.testing.assert_close(variance, torch.ones(2), atol=0.06, rtol=0)
    torch.testing.assert_close(pairwise_correlation(noises, estimator), corr.expand(2, n, n), atol=0.04, rtol=0)


def test_identical_estimates_need_no_rescaling():
    e = torch.randn(1, 2, 4, 16, 16)
    e = e / e.pow(2).flatten(2).mean(-1).sqrt()[..., None, None, None]  # exactly unit mean square
    noises = e.expand(3, -1, -1, -1, -1)
    weights = torch.tensor([0.5, 0.3, 0.2])
    for estimator in ESTIMATORS:
        torch.testing.assert_close(rectification_scale(noises, weights, estimator), torch.ones(2), atol=1e-5, rtol=0)
    # raw Gaussians: the product estimator measures rho = sample variance ~ 1
    raw = torch.randn(1, 2, 4, 32, 32).expand(2, -1, -1, -1, -1)
    torch.testing.assert_close(rectification_scale(raw, torch.tensor([0.5, 0.5])), torch.ones(2), atol=0.03, rtol=0)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_independent_pair_gets_sqrt_two(estimator):
    noises = torch.randn(2, 4, 4, 32, 32, generator=torch.Generator().manual_seed(3))
    c = rectification_scale(noises, torch.tensor([0.5, 0.5]), estimator)
    torch.testing.assert_close(c, torch.full((4,), math.sqrt(2)), atol=0.03, rtol=0)


def test_shared_and_per_sample_weights_agree():
    noises = torch.randn(3, 2, 4, 8, 8)
    w = torch.tensor([0.2, 0.5, 0.3])
    torch.testing.assert_close(rectification_scale(noises, w), rectification_scale(noises, w.expand(2, 3)))


def test_product_estimator_is_the_mean_of_products():
    noises = torch.randn(2, 1, 3, 5, 5)
    rho = pairwise_correlation(noises, "product")
    torch.testing.assert_close(rho[0, 0, 1], (noises[0] * noises[1]).mean())
    assert torch.allclose(pairwise_correlation(noises, "correlation").diagonal(dim1=1, dim2=2), torch.ones(1, 2))


def test_anticorrelated_estimates_stay_finite():
    e = torch.randn(1, 2, 4, 8, 8)
    noises = torch.cat([e, -e])
    for estimator in ESTIMATORS:
        assert torch.isfinite(rectification_scale(noises, torch.tensor([0.5, 0.5]), estimator)).all()
    # exactly opposite: the quadratic form is 0 and is clamped, not divided by
    c = rectification_scale(noises, torch.tensor([0.5, 0.5]), "correlation", eps=1e-6)
    torch.testing.assert_close(c, torch.full((2,), 1e3))


def test_rectify_combines_and_rescales_in_input_dtype():
    noises = torch.randn(2, 2, 4, 32, 32, dtype=torch.float64)
    out = rectify(noises, torch.tensor([0.5, 0.5]))
    assert out.shape == (2, 4, 32, 32) and out.dtype == torch.float64
    torch.testing.assert_close(out.flatten(1).var(-1), torch.ones(2, dtype=torch.float64), atol=0.08, rtol=0)


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="estimator"):
        pairwise_correlation(torch.randn(2, 1, 4), "cosine")
    with pytest.raises(ValueError, match="weights"):
        rectification_scale(torch.randn(2, 3, 4), torch.ones(3))


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_matches_the_pairwise_formula_even_off_unit_variance(estimator):
    """c = 1/sqrt(sum_k a_k^2 + 2 sum_{i<j} a_i a_j rho_ij), written pair by pair: the a_k^2 terms
    take no measured variance, so estimates of variance 4 must not change the diagonal."""
    noises = 2 * torch.randn(3, 2, 4, 8, 8, generator=torch.Generator().manual_seed(5))
    noises[1] += noises[0]
    a = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
    expected = []
    for b in range(2):
        e = noises[:, b].flatten(1).double()
        de = sum(a[b, k].item() ** 2 for k in range(3))
        for i in range(3):
            for j in range(i + 1, 3):
                if estimator == "product":
                    rho = (e[i] * e[j]).mean()
                else:
                    rho = e[i] @ e[j] / (e[i].norm() * e[j].norm())
                de += 2 * a[b, i].item() * a[b, j].item() * rho.item()
        expected.append(de ** -0.5)
    torch.testing.assert_close(rectification_scale(noises, a, estimator), torch.tensor(expected), rtol=1e-5, atol=0)


# -- the bounded estimator (the default of MultiTask) -------------------------------------------------------


@pytest.mark.parametrize("n", [2, 3, 4])
@pytest.mark.parametrize("rho", [0.0, 0.5, 1.0])
def test_bounded_restores_unit_variance_where_the_premise_holds(n, rho):
    noises = correlated_noises(equicorrelated(n, rho), seed=7 * n + int(rho * 10))
    weights = torch.tensor(UNEQUAL[n])
    c = rectification_scale(noises, weights, "bounded")
    variance = (c.view(-1, 1, 1, 1) * torch.einsum("n,nb...->b...", weights, noises)).flatten(1).var(-1)
    torch.testing.assert_close(variance, torch.ones_like(variance), atol=0.06, rtol=0)


def test_bounded_scale_lies_between_one_and_the_independent_case():
    """Anti-correlated, inflated (guided: second moment 2.5) and opposite estimates: the reference
    formula explodes, the bounded scale stays in [1, 1/|a|_2]."""
    g = torch.Generator().manual_seed(0)
    e = torch.randn(1, 3, 4, 16, 16, generator=g) * 1.6
    opposite = torch.cat([e, -e])
    partly = torch.cat([e, -0.8 * e + 0.6 * torch.randn(e.shape, generator=g) * 1.6])
    weights = torch.tensor([[0.5, 0.5], [0.8, 0.2], [0.3, 0.7]])
    for noises in (opposite, partly):
        c = rectification_scale(noises, weights, "bounded")
        upper = weights.norm(dim=-1).reciprocal()
        assert (c >= 1 - 1e-6).all() and (c <= upper + 1e-5).all()
        torch.testing.assert_close(c, upper)  # negative correlation counts as independence
        assert (rectification_scale(noises, weights, "product") > 2 * upper).any()


def test_bounded_is_the_default_and_the_reference_stays_by_name():
    from anagram.method import MultiTask, method_from_switches

    assert MultiTask().rectify == "bounded" and MultiTask(rectify=True).rectify == "bounded"
    assert MultiTask(rectify="product").rectify == "product"
    assert method_from_switches("mtl", rectify="product")["rectify"] == "product"
