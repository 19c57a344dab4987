"""Balancing switches beyond the reference (strength of the exponent, relative scores, weight cap, late start),
against the formulas."""

import pytest
import torch

from anagram import AnagramPipeline
from anagram.method import MultiTask
from anagram.method.balancing import balance_exponent, balance_weights, cap_weights, relative_scores, score_matrix
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


def test_cap_weights_mixes_with_uniform_just_enough():
    w = torch.tensor([[0.9999, 0.0001], [0.6, 0.4]])
    capped = cap_weights(w, 0.75)
    torch.testing.assert_close(capped, torch.tensor([[0.75, 0.25], [0.6, 0.4]]))
    three = cap_weights(torch.tensor([[0.8, 0.15, 0.05]]), 0.5)
    assert three.max().item() == pytest.approx(0.5) and three.sum().item() == pytest.approx(1.0)
    assert three[0, 1] > three[0, 2]  # the order of the views is kept
    assert torch.equal(cap_weights(w, None), w)
    torch.testing.assert_close(cap_weights(w, 0.5), torch.full_like(w, 0.5))
    with pytest.raises(ValueError):
        cap_weights(w, 0.3)  # below 1/N: no weights can satisfy it


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
    capped = MultiTask(balance_max_weight=0.75, balance_start=0.5)
    assert MultiTask(**capped.to_dict()) == capped
    assert MultiTask().balance_max_weight is None and MultiTask().balance_start == 0.0
    for bad in (dict(balance_max_weight=0.0), dict(balance_max_weight=1.5), dict(balance_start=1.0),
                dict(balance_start=-0.1)):
        with pytest.raises(ValueError):
            MultiTask(**bad)


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


def test_late_start_and_cap_in_the_pipeline(sd):
    steps = []

    def lopsided(inputs):  # view 1 at the clamp floor: uncapped, it takes almost the whole estimate
        steps.append(inputs.step_index)
        return torch.tensor([[0.9, 1e-4]]).expand(inputs.x0_views.shape[1], 2)

    base = dict(OFF, balance=True, scorer=lopsided)
    reference = _run(sd, MultiTask(**base))
    assert steps == [0, 1, 2]
    steps.clear()
    late = _run(sd, MultiTask(**base, balance_start=0.5))
    assert steps == [2]  # round(0.5 * 3) = 2: plain averaging (no scorer call) on steps 0 and 1
    capped = _run(sd, MultiTask(**base, balance_max_weight=0.5))  # a cap of 1/N is plain averaging
    averaged = _run(sd, MultiTask(**OFF))
    torch.testing.assert_close(capped, averaged)
    assert (late - reference).abs().max() > 1e-3
