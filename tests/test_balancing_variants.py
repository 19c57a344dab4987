"""Balancing switches beyond the reference (strength of the exponent, relative scores), against the formulas."""

import pytest
import torch

from anagram import AnagramPipeline
from anagram.method import MultiTask
from anagram.method.balancing import balance_exponent, balance_weights, relative_scores, score_matrix
from anagram.method.scorers import ScoreInputs
from tiny_models import sd_components

PROMPTS = ["a painting of a red fox", "a painting of a duck"]
OFF = dict(balance=False, rectify=None, anti_segregation=None)


def test_strength_multiplies_the_exponent():
    scores = torch.tensor([[0.2, 0.5, 0.9]])
    for i, strength in [(0, 1.0), (12, 2.5), (29, 0.5)]:
        powered = scores.double() ** -(strength * (1 + i / 30))
        torch.testing.assert_close(balance_weights(scores, i, 30, strength=strength).double(),
                                   powered / powered.sum(-1, keepdim=True), rtol=1e-5, atol=1e-7)
    assert torch.equal(balance_weights(scores, 7, 30), balance_weights(scores, 7, 30, strength=1.0))
    assert balance_exponent(15, 30, 3.0) == pytest.approx(4.5)
    with pytest.raises(ValueError):
        balance_exponent(1, 30, 0.0)


def test_relative_scores_are_the_own_prompt_share():
    m = torch.tensor([[[0.6, 0.2], [0.6, 0.3]]])  # view 1 matches prompt 0 better than its own prompt 1
    torch.testing.assert_close(relative_scores(m), torch.tensor([[0.75, 1 / 3]]))
    # negative similarities are clamped, NaN is the floor: finite scores in (0, 1]
    r = relative_scores(torch.tensor([[[-0.5, 0.4], [float("nan"), 0.8]]]))
    assert torch.isfinite(r).all() and (r > 0).all() and (r <= 1).all()


def test_score_matrix_from_rotated_prompts():
    table = {"a": 0, "b": 1, "c": 2}
    truth = torch.tensor([[0.9, 0.1, 0.3], [0.2, 0.8, 0.4], [0.5, 0.6, 0.7]])  # S[view, prompt]

    def scorer(inputs):
        cols = [table[p] for p in inputs.prompts]
        return torch.stack([truth[k, cols[k]] for k in range(3)])[None].expand(2, 3)

    inputs = ScoreInputs(x0_views=torch.zeros(3, 2, 1, 4, 4), prompts=["a", "b", "c"])
    m = score_matrix(scorer, inputs)
    assert m.shape == (2, 3, 3)
    torch.testing.assert_close(m[0], truth)
    torch.testing.assert_close(m[1], truth)


def test_switch_values_are_checked_and_recorded():
    method = MultiTask(balance_strength=2.0, balance_scores="relative")
    assert MultiTask(**method.to_dict()) == method
    assert MultiTask().balance_strength == 1.0 and MultiTask().balance_scores == "raw"
    with pytest.raises(ValueError):
        MultiTask(balance_scores="softmax")
    with pytest.raises(ValueError):
        MultiTask(balance_strength=-1.0)


@pytest.fixture(scope="module")
def sd():
    pipe = AnagramPipeline(**sd_components())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _run(pipe, method):
    return pipe(PROMPTS, views=["identity", "rotate_180"], num_inference_steps=3, method=method, output_type="latent",
                generator=torch.Generator().manual_seed(0)).images


def test_relative_scores_and_strength_in_the_pipeline(sd):
    calls = []

    truth = torch.tensor([[0.8, 0.1], [0.7, 0.5]])  # S[view, prompt]: the duck view also looks like the fox

    def prefers_fox(inputs):  # raw scores (0.8, 0.5); relative (0.89, 0.42): the duck view lags more
        calls.append(list(inputs.prompts))
        row = [truth[k, 0 if "fox" in p else 1] for k, p in enumerate(inputs.prompts)]
        return torch.stack(row)[None].expand(inputs.x0_views.shape[1], 2)

    base = dict(OFF, balance=True, scorer=prefers_fox)
    raw = _run(sd, MultiTask(**base))
    assert len(calls) == 3
    relative = _run(sd, MultiTask(**base, balance_scores="relative"))
    assert len(calls) == 3 + 3 * 2 and calls[4] == PROMPTS[::-1]  # one call per rotation of the prompts
    stronger = _run(sd, MultiTask(**base, balance_strength=3.0))
    assert torch.isfinite(relative).all() and torch.isfinite(stronger).all()
    assert (raw - stronger).abs().max() > 1e-3 and (raw - relative).abs().max() > 1e-3
    with pytest.raises(ValueError, match="image scorer"):
        _run(sd, MultiTask(**dict(OFF, balance=True, scorer="attention"), balance_scores="relative"))
