"""Metrics on constructed score matrices with known answers."""

import math

import pytest
import torch

from anagram.evaluation.metrics import alignment, concealment, success, summarize


def test_alignment_is_the_worst_diagonal_entry():
    scores = torch.tensor([[0.30, 0.10], [0.20, 0.25]])
    assert alignment(scores).item() == pytest.approx(0.25)
    batch = torch.stack([scores, torch.tensor([[0.9, 0.0], [0.0, 0.1]])])
    assert alignment(batch).tolist() == pytest.approx([0.25, 0.1])


def test_concealment_of_perfect_confusing_and_uniform_matrices():
    perfect = torch.tensor([[10.0, -10.0], [-10.0, 10.0]])
    assert concealment(perfect)["mean"].item() == pytest.approx(1.0, abs=1e-6)
    uniform = torch.zeros(3, 3)
    assert concealment(uniform)["row"].item() == pytest.approx(1 / 3)
    swapped = torch.tensor([[-10.0, 10.0], [10.0, -10.0]])
    assert concealment(swapped)["column"].item() == pytest.approx(0.0, abs=1e-6)


def test_row_and_column_concealment_differ_when_one_prompt_dominates():
    # Prompt 0 wins in both views: rows say view 1 is confused, columns say prompt 0 is shared.
    logits = torch.log(torch.tensor([[0.8, 0.2], [0.7, 0.3]]))
    c = concealment(logits)
    assert c["row"].item() == pytest.approx((0.8 + 0.3) / 2)
    col0 = 0.8 / (0.8 + 0.7)
    col1 = 0.3 / (0.2 + 0.3)
    assert c["column"].item() == pytest.approx((col0 + col1) / 2)
    assert c["mean"].item() == pytest.approx((c["row"].item() + c["column"].item()) / 2)


def test_success_needs_every_view_right():
    predicted = torch.tensor([[0, 8], [0, 0], [8, 0]])
    targets = torch.tensor([[0, 8], [0, 8], [0, 8]])
    assert success(predicted, targets).tolist() == [True, False, False]


def test_summary_quantiles():
    values = torch.arange(101, dtype=torch.float32)
    s = summarize(values)
    assert s["mean"] == pytest.approx(50) and s["q90"] == pytest.approx(90) and s["q95"] == pytest.approx(95)
    assert not math.isnan(summarize(torch.tensor([0.5]))["q95"])
