"""The offline task digits-to-typeset: unpaired, deterministic domains; its measurements on constructed
cases; the CLI's built-in task; the shipped ``typeset`` translator loads offline and translates fast."""

from __future__ import annotations

import json
import time
from functools import lru_cache

import pytest
import torch
from typer.testing import CliRunner

from anagram.cli import app
from anagram.translate import task_evaluation
from anagram.translate.data import TensorDomain
from anagram.translate.digits_task import DigitsTask, TypesetDigits, is_task, load_task, task_domains
from anagram.translate.evaluation import evaluate_translation
from anagram.translate.task_evaluation import DOMAIN_CLASSIFIER_DIR, DomainFeatures, evaluate_task


def test_typeset_digits_are_deterministic_balanced_and_rendered_on_demand():
    one, two, other = TypesetDigits(30, seed=5), TypesetDigits(30, seed=5), TypesetDigits(30, seed=6)
    assert torch.equal(one.images(range(6)), two.images(range(6)))
    assert not torch.equal(one.images(range(6)), other.images(range(6)))
    assert sorted(one.labels.tolist()) == sorted(list(range(10)) * 3)
    image = one.load(3, 1)
    assert image.shape == (1, 32, 32) and image.min() >= -1 and image.max() <= 1 and image.max() > 0
    assert len(one._rendered) == 6  # only what was asked for
    assert one.load(3, 3).shape == (3, 32, 32)


def test_the_task_is_unpaired_and_fixed():
    task = load_task()
    assert (len(task.train_a), len(task.train_b), len(task.test_a), len(task.test_b)) == (1437, 1437, 360, 360)
    # image i of A and image i of B show unrelated digits (chance agreement ~0.1), B's splits differ
    agreement = (task.train_labels_a == task.train_labels_b).float().mean()
    assert agreement < 0.2
    assert not torch.equal(task.train_b.images(range(4)), task.test_b.images(range(4)))
    assert load_task() is task and torch.equal(task.test_b.images(range(3)), TypesetDigits(
        360, task.test_b.seed).images(range(3)))
    assert is_task(["digits-to-typeset"]) and not is_task(["some/folder"])
    a, b = task_domains(["digits-to-typeset"], split="test")
    assert a is task.test_a and b is task.test_b
    assert task_domains(["some/folder"]) is None
    # the translator's domains hold images only
    assert not hasattr(task.train_a, "labels") and task.train_a.load(0, 1).shape == (1, 32, 32)


@lru_cache(maxsize=None)
def small_task(count=40):
    """The task with its first ``count`` test images (one object per count: its renders are made once
    for every test that measures on it)."""
    task = load_task()
    picks = torch.arange(count)
    test_b = TypesetDigits(count, task.test_b.seed)
    return DigitsTask(train_a=task.train_a, train_b=task.train_b,
                      test_a=TensorDomain(task.test_a.images[picks], "digits-to-typeset: handwritten test subset"),
                      test_b=test_b, train_labels_a=task.train_labels_a, train_labels_b=task.train_labels_b,
                      test_labels_a=task.test_labels_a[picks], test_labels_b=test_b.labels)


needs_measures = pytest.mark.skipif(not (DOMAIN_CLASSIFIER_DIR / "model.safetensors").is_file(),
                                    reason="the task's domain classifier is not trained yet")


@needs_measures
def test_identical_sets_give_kid_about_zero_and_copying_scores_low_realism():
    task = small_task()
    b = task.test_b.images()
    same = evaluate_translation(lambda x: x, TensorDomain(b), TensorDomain(b), features=DomainFeatures(), channels=1)
    assert same.fid < 1e-2
    copy = evaluate_task(lambda x: x, task=task)
    assert copy.copying and copy.identity_distance < 1e-6
    assert copy.domain_rate < 0.2 < 0.8 < copy.domain_rate_real_b  # the copy is not taken for typeset
    # KID's unbiased estimate of identical sets is 0 up to its small-sample bias (one diagonal term in n)
    assert abs(same.kid_mean) < 0.01 * copy.kid_mean and copy.fid > 100 * same.fid + 1.0
    assert copy.content_accuracy_real_b > 0.8  # the content reader reads typeset digits


@needs_measures
def test_the_realism_network_is_not_fooled_by_sharp_strokes():
    """What a person would separate, the realism network separates: handwritten test digits made crisp
    (binarised, the shortcut a translator can take without drawing typeset glyphs) and typeset test
    digits warped by hand are not typeset; the renders are. The first measure, trained on
    handwritten vs typeset alone, took every sharp-stroked image for typeset."""
    from anagram.testbed.classifier import classify
    from anagram.translate.hard_negatives import binarise, elastic_typeset, sharpened_handwriting

    task, generator = small_task(), torch.Generator().manual_seed(7)
    domain = task_evaluation.load_domain_classifier()
    a, b = task.test_a.images, task.test_b.images()

    def typeset(images):
        return float((classify(images, domain)[:, 1] > 0.5).float().mean())

    assert typeset(b) > 0.9
    assert typeset(binarise(a, 0.5)) < 0.2           # the plainest sharpening: a threshold, nothing else
    assert typeset(sharpened_handwriting(a, generator)) < 0.2
    assert typeset(elastic_typeset(b, generator)) < typeset(b) - 0.3  # mild warps can still look typeset
    # and in FID/KID terms, crisp handwriting stays far from the renders
    features = DomainFeatures(domain)
    crisp = evaluate_translation(lambda x: binarise(x, 0.5), TensorDomain(a), TensorDomain(b), features=features,
                                 channels=1)
    same = evaluate_translation(lambda x: x, TensorDomain(b), TensorDomain(b), features=features, channels=1)
    assert crisp.kid_mean > 0.2 * crisp.kid_source_mean and crisp.kid_mean > 100 * abs(same.kid_mean) + 1e-2


def test_the_realism_networks_batches_hold_real_train_images_and_their_hard_negatives():
    from anagram.translate.task_evaluation import NEGATIVE_MIX, domain_batch

    task = load_task()
    a, b = task.train_a.images, task.train_b
    images, labels = domain_batch(a, b.images, b.count, 16, torch.Generator().manual_seed(0))
    again, _ = domain_batch(a, b.images, b.count, 16, torch.Generator().manual_seed(0))
    assert torch.equal(images, again) and images.shape == (16, 1, 32, 32)
    assert labels.tolist() == [0] * 8 + [1] * 8 and images.min() >= -1 and images.max() <= 1
    assert abs(sum(NEGATIVE_MIX.values()) - 0.5) < 1e-9  # half the batch is "not typeset"
    plain, _ = domain_batch(a, b.images, b.count, 16, torch.Generator().manual_seed(0), hard_negatives=False)
    assert any(torch.equal(plain[i], a[j]) for i in range(8) for j in range(len(a)))  # real handwritten digits


def test_the_realism_network_is_a_function_of_its_seed():
    """Whatever the process drew before, the same call trains the same network (its initial weights
    were once taken from the process's random state, so another script shipped another network)."""
    from anagram.translate.task_evaluation import train_domain_classifier

    first = train_domain_classifier(None, steps=2, batch=8)[0].state_dict()
    torch.rand(1000)
    again = train_domain_classifier(None, steps=2, batch=8)[0].state_dict()
    assert all(torch.equal(first[k], again[k]) for k in first)


def test_cli_trains_on_the_builtin_task(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["translate", "train", "digits-to-typeset", "--out", str(tmp_path / "run"),
                                 "--preset", "cut", "--max-steps", "2", "--ngf", "4", "--ndf", "4",
                                 "--num-patches", "8", "--set", "head_units=8"])
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "run" / "run.json").read_text())["config"]
    assert config["channels"] == 1 and config["preprocess"] == "none" and not config["flip"]
    assert config["ngf"] == 4 and config["n_blocks"] == 4  # the flags on top of the task's recipe


@needs_measures
def test_cli_evaluates_the_builtin_task(tmp_path, monkeypatch):
    monkeypatch.setattr(task_evaluation, "load_task", lambda: small_task())
    from anagram.translate.config import preset
    from anagram.translate.networks import generator_from_config
    from anagram.translate.pipeline import TranslationPipeline

    generator = generator_from_config(preset("cut", channels=1, ngf=4, n_blocks=1, nce_layers=("input",))).eval()
    TranslationPipeline(generator).save_pretrained(tmp_path / "model")
    result = CliRunner().invoke(app, ["translate", "evaluate", str(tmp_path / "model"), "digits-to-typeset",
                                      "--json", str(tmp_path / "report.json")])
    assert result.exit_code == 0, result.output
    assert "content" in result.output and "taken for typeset" in result.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["n_source"] == 40 and 0 <= report["content_accuracy"] <= 1


def test_the_shipped_translator_loads_offline_and_translates_in_under_a_second():
    from anagram.translate.apply import BUILTIN_TRANSLATORS, load_translator

    if not (BUILTIN_TRANSLATORS["typeset"] / "model_index.json").is_file():
        pytest.skip("the typeset translator is not shipped yet")
    pipe = load_translator("typeset")
    record = pipe.record
    assert record["config"]["channels"] == 1 and record["step"] == record["total_steps"]
    size = sum(p.stat().st_size for p in BUILTIN_TRANSLATORS["typeset"].rglob("*") if p.is_file())
    assert size < 8 * 2**20
    x = (load_task().test_a.images[:8] + 1) / 2
    started = time.perf_counter()
    out = pipe(x, output_type="pt").images
    assert time.perf_counter() - started < 1.0
    assert out.shape == x.shape and (out - x).abs().mean() > 0.02  # it translates, it does not copy
