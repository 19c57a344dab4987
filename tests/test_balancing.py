"""Noise vector balancing weights (spec §3) against a direct evaluation of the formula."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from anagram.method.balancing import balance_exponent, balance_weights


def direct(scores, i, n):
    """alpha_k = c_k^-(1+i/n) / sum_j c_j^-(1+i/n), in float64 without any trick."""
    powered = scores.double() ** -(1 + i / n)
    return powered / powered.sum(-1, keepdim=True)


@pytest.mark.parametrize("i", [0, 7, 29])
def test_weights_follow_the_formula_and_sum_to_one(i):
    g = torch.Generator().manual_seed(i)
    scores = torch.rand(5, 4, generator=g) * 0.9 + 0.05
    alpha = balance_weights(scores, i, 30)
    assert alpha.shape == scores.shape and alpha.dtype == torch.float32
    torch.testing.assert_close(alpha.double(), direct(scores, i, 30), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(alpha.sum(-1), torch.ones(5))


def test_first_step_weights_are_inverse_scores():
    alpha = balance_weights(torch.tensor([[0.2, 0.4]]), 0, 30)
    torch.testing.assert_close(alpha, torch.tensor([[2 / 3, 1 / 3]]))


def test_lagging_view_gets_more_weight():
    scores = torch.tensor([[0.9, 0.3, 0.6]])
    alpha = balance_weights(scores, 10, 30)
    # weights are in the reverse order of the scores
    assert torch.equal(alpha.argsort(-1), scores.argsort(-1, descending=True))


def test_weighting_sharpens_with_the_step():
    scores = torch.tensor([[0.8, 0.4]])
    ratios = [(lambda a: (a[0, 1] / a[0, 0]).item())(balance_weights(scores, i, 30)) for i in range(0, 30, 5)]
    assert all(b > a for a, b in zip(ratios, ratios[1:]))
    assert ratios[0] == pytest.approx(2.0)
    assert balance_exponent(29, 30) == pytest.approx(1 + 29 / 30)


def test_equal_scores_give_equal_weights():
    torch.testing.assert_close(balance_weights(torch.full((2, 4), 0.37), 12, 30), torch.full((2, 4), 0.25))


@pytest.mark.parametrize("bad", [0.0, -0.5, float("nan"), float("-inf")])
def test_degenerate_scores_stay_finite(bad):
    scores = torch.tensor([[bad, 0.5, 0.9]])
    alpha = balance_weights(scores, 15, 30, eps=1e-4)
    assert torch.isfinite(alpha).all()
    torch.testing.assert_close(alpha.sum(-1), torch.ones(1))
    assert alpha[0, 0] == alpha.max()  # a score at the floor is the most lagging view
    torch.testing.assert_close(alpha.double(), direct(torch.tensor([[1e-4, 0.5, 0.9]]), 15, 30), rtol=1e-5, atol=1e-9)


def test_half_precision_tiny_scores_do_not_overflow():
    scores = torch.tensor([[1e-4, 1e-3, 1.0]], dtype=torch.float16)
    alpha = balance_weights(scores, 29, 30)
    assert torch.isfinite(alpha).all() and alpha.dtype == torch.float32
    torch.testing.assert_close(alpha.sum(-1), torch.ones(1))


def test_bad_schedule_is_an_error():
    with pytest.raises(ValueError, match="num_steps"):
        balance_weights(torch.ones(1, 2), 0, 0)
    with pytest.raises(ValueError, match="step_index"):
        balance_weights(torch.ones(1, 2), 31, 30)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-2, 3, allow_nan=False), min_size=2, max_size=6), st.integers(0, 49))
def test_property_finite_normalised_and_order_reversing(values, i):
    scores = torch.tensor([values])
    alpha = balance_weights(scores, i, 50)
    assert torch.isfinite(alpha).all()
    assert math.isclose(alpha.sum().item(), 1.0, rel_tol=1e-5)
    clamped = scores.clamp_min(1e-4)
    lo, hi = clamped.argmin(), clamped.argmax()
    assert alpha[0, lo] >= alpha[0, hi]
