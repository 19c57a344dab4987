"""`anagram translate` train / apply / evaluate on tiny folders; FID/KID and the identity guard."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from anagram.cli import app
from anagram.translate.data import TensorDomain
from anagram.translate.evaluation import FeatureError, evaluate_translation, load_features

TINY = ["--ngf", "4", "--n-blocks", "2", "--ndf", "4", "--n-layers-d", "2", "--num-patches", "8",
        "--nce-layers", "input,down1,down2,res1,res2", "--crop-size", "16", "--load-size", "20",
        "--n-epochs", "1", "--n-epochs-decay", "1", "--set", "head_units=8", "--set", "dc_units=8"]


def write_domain(folder, count, shade):
    folder.mkdir(parents=True)
    for i in range(count):
        Image.new("L", (20, 20), shade + 10 * i).save(folder / f"{folder.name}{i}.png")


def test_cli_train_apply_evaluate(tmp_path):
    for split in ("train", "test"):
        write_domain(tmp_path / "data" / f"{split}A", 3, 20)
        write_domain(tmp_path / "data" / f"{split}B", 3, 200)
    runner = CliRunner()
    result = runner.invoke(app, ["translate", "train", str(tmp_path / "data"), "--out", str(tmp_path / "run"),
                                 "--preset", "mcdut", *TINY])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["config"]["channels"] == 1 and record["config"]["multi_crop"] and record["config"]["dca"]
    again = runner.invoke(app, ["translate", "train", str(tmp_path / "data"), "--out", str(tmp_path / "run"), *TINY])
    assert again.exit_code == 2 and "--resume" in again.output

    result = runner.invoke(app, ["translate", "apply", str(tmp_path / "run"), str(tmp_path / "data" / "testA"),
                                 "--out", str(tmp_path / "translated")])
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in (tmp_path / "translated").iterdir())
    assert written == ["testA0.png", "testA1.png", "testA2.png"]
    with Image.open(tmp_path / "translated" / "testA0.png") as image:
        assert image.size == (20, 20) and image.mode == "L"

    result = runner.invoke(app, ["translate", "evaluate", str(tmp_path / "run"), str(tmp_path / "data"),
                                 "--features", "digits", "--json", str(tmp_path / "report.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["n_source"] == 3 and report["kid_subset_size"] == 3 and report["features"].startswith("digits")
    refused = runner.invoke(app, ["translate", "evaluate", str(tmp_path / "run"), str(tmp_path / "data")])
    assert refused.exit_code == 2 and "pickled" in refused.output


def test_identity_guard_and_baseline():
    g = torch.Generator().manual_seed(0)
    a = TensorDomain(torch.rand(5, 1, 32, 32, generator=g) * 2 - 1)
    b = TensorDomain(torch.rand(5, 1, 32, 32, generator=g) - 1)
    copy = evaluate_translation(lambda x: x, a, b, "digits", channels=1)
    assert copy.copying and copy.identity_distance == 0.0
    assert copy.fid == pytest.approx(copy.fid_source) and copy.kid_mean == pytest.approx(copy.kid_source_mean)
    darker = evaluate_translation(lambda x: -x.abs(), a, b, "digits", channels=1)
    assert not darker.copying and darker.fid < darker.fid_source  # moved towards B's statistics
    assert evaluate_translation(lambda x: -x.abs(), a, b, "digits", channels=1).kid_mean == darker.kid_mean  # seeded


def test_feature_networks(tmp_path):
    with pytest.raises(FeatureError, match="pickled"):
        load_features("inception")
    with pytest.raises(FeatureError, match="folder"):
        load_features("no-such-thing")
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(0)
    ViTModel(ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                       image_size=16, patch_size=8)).save_pretrained(tmp_path / "vit")
    network, name = load_features(tmp_path / "vit")
    assert network.num_features == 16 and "backbone" in name
    assert network(torch.rand(3, 3, 20, 24)).shape == (3, 16)


def test_train_prints_from_rank_0_only(tmp_path, monkeypatch):
    """Under torchrun every rank runs the command: only rank 0 draws the progress and the summary."""
    runner = CliRunner()
    args = ["translate", "train", "digits-to-typeset", "--preset", "cut", "--max-steps", "1", "--ngf", "4",
            "--ndf", "4", "--num-patches", "8", "--set", "head_units=8"]
    monkeypatch.setenv("RANK", "1")
    quiet = runner.invoke(app, [*args, "--out", str(tmp_path / "rank1")])
    assert quiet.exit_code == 0, quiet.output
    assert quiet.output.strip() == ""
    monkeypatch.setenv("RANK", "0")
    loud = runner.invoke(app, [*args, "--out", str(tmp_path / "rank0")])
    assert loud.exit_code == 0 and "stopped at 1/" in loud.output
