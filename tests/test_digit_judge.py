"""The second digit classifier (anagram/models/digit_judge): shipped, loads offline, reads held-out and
generated digits, trained apart from the shipped classifier, and never a balancing scorer."""

import json
import socket
from importlib import metadata

import pytest
import torch

from anagram.testbed import CLASSIFIER_DIR, DIGIT_WORDS, DIGITS_MODEL_DIR
from anagram.testbed.classifier import accuracy, augment, classify, load_classifier
from anagram.testbed.data import load_split
from anagram.testbed.train_digit_judge import DIGIT_JUDGE_DIR, JUDGE_CHANNELS, JUDGE_SEED, train_judge

# Measured on the shipped judge (python -m anagram.testbed.train_digit_judge --threads 1, 40 epochs):
# held-out split 360 of 360 (1.0000); the same images under 5 draws of the training augmentation
# (seed 10007) 0.9989 (the shipped classifier: 0.9972 and 0.9972). The bounds leave room for one or
# two misreads more, not for a worse judge.
CLEAN_BOUND = 0.994
AUGMENTED_BOUND = 0.99


@pytest.fixture(scope="module")
def judge():
    return load_classifier(DIGIT_JUDGE_DIR)


def test_shipped_folder_is_safetensors_and_config_only():
    assert sorted(p.name for p in DIGIT_JUDGE_DIR.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((DIGIT_JUDGE_DIR / "config.json").read_text())
    assert config["role"] == "judge (never a scorer)" and config["num_classes"] == 10
    # trained apart from the shipped classifier: another seed and other widths
    shipped = json.loads((CLASSIFIER_DIR / "config.json").read_text())
    assert config["seed"] == JUDGE_SEED != shipped.get("seed", 0)
    assert config["channels"] == list(JUDGE_CHANNELS) != shipped["channels"]


def test_judge_loads_offline(monkeypatch):
    """Loading touches no network: a socket that cannot connect changes nothing."""

    def no_network(*args, **kwargs):
        raise OSError("no network in this test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    from anagram.evaluation import make_judge

    model = load_classifier(DIGIT_JUDGE_DIR)
    assert not model.training and model.config["channels"] == list(JUDGE_CHANNELS)
    assert make_judge("digit_judge", {"digits"}).name == "digit_judge"


def test_held_out_accuracy_meets_the_measured_bound(judge):
    split = load_split()
    x, y = split.test_images, split.test_labels
    assert accuracy(judge, x, y) >= CLEAN_BOUND
    gen = torch.Generator().manual_seed(10007)
    augmented = torch.cat([augment(x, gen) for _ in range(5)])
    assert accuracy(judge, augmented, y.repeat(5)) >= AUGMENTED_BOUND


def test_judge_reads_the_digits_model_samples(judge):
    """Single-prompt samples of the shipped digits model at its defaults are read as their digit."""
    from anagram.testbed.train_digits import load_model, sample

    model = load_model(DIGITS_MODEL_DIR)
    images = sample(model, [f"a digit {w}" for w in DIGIT_WORDS], None, None, torch.Generator().manual_seed(0))
    assert classify(images, judge).argmax(-1).tolist() == list(range(10))


def test_the_judge_is_never_a_scorer():
    from anagram.method.scorers import ScorerError, make_scorer

    for name in ("digit_judge", "judge", str(DIGIT_JUDGE_DIR)):
        with pytest.raises(ScorerError, match="unknown scorer"):
            make_scorer(name)
    # the classifier scorer takes no folder: "digits:<judge folder>" cannot build a scorer from the judge
    with pytest.raises((ScorerError, TypeError)):
        make_scorer(f"digits:{DIGIT_JUDGE_DIR}")
    values = [e.value for e in metadata.entry_points(group="anagram.scorers")]
    assert not any("digit_judge" in v for v in values)
    declared = json.loads((DIGITS_MODEL_DIR / "anagram_defaults.json").read_text())
    assert declared["judge"] == "digit_judge" and "digit_judge" not in declared.get("scorer", "")


def test_training_script_writes_a_folder_that_loads(tmp_path):
    out = tmp_path / "judge"
    model, acc = train_judge(out, epochs=1, channels=(8, 16, 24))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["judge"]  # the staging folder is gone
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    saved = json.loads((out / "config.json").read_text())
    assert saved["seed"] == JUDGE_SEED and saved["role"] == "judge (never a scorer)" and 0 <= acc <= 1
    x = torch.rand(3, 1, 32, 32) * 2 - 1
    torch.testing.assert_close(load_classifier(out)(x), model.eval()(x))


def test_two_judges_summary_pairs_samples_and_counts_agreement():
    """benchmarks/digits_judges.py: paired changes against the baseline, the judges' agreement."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import digits_judges

    first, second = digits_judges.JUDGES
    ones, zeros = torch.ones(4), torch.zeros(4)
    row = lambda a, b: {first: {"success": a, "alignment": a, "concealment": a},  # noqa: E731
                        second: {"success": b, "alignment": b, "concealment": b}}
    summary = digits_judges.summarize_rows({"baseline": row(zeros, zeros),
                                            "steered": row(torch.tensor([1.0, 0, 0, 0]), ones)})
    assert summary["steered"][first]["vs_baseline"][0] == pytest.approx(0.25)
    assert summary["steered"][second]["vs_baseline"] == (1.0, 0.0)
    assert summary["steered"]["agreement"] == 0.25 and summary["baseline"]["agreement"] == 1.0
