"""Mixed precision (``TrainOptions(mixed_precision="bf16")``, accelerate's autocast) on this CPU: a tiny
MCDUT run trains with finite losses that differ from the float32 run's (autocast was on), keeps its
weights and checkpoints in float32, and a run stopped and resumed in bf16 equals an uninterrupted one."""

from __future__ import annotations

import json
import math

import torch

from anagram.translate.checkpoint import latest_checkpoint, read_checkpoint
from anagram.translate.config import preset
from anagram.translate.data import TensorDomain
from anagram.translate.pipeline import TranslationPipeline
from anagram.translate.trainer import TrainOptions, train

TINY = dict(ngf=4, n_blocks=2, ndf=4, n_layers_d=2, head_units=8, dc_units=8, num_patches=16,
            nce_layers=("input", "down1", "down2", "res1", "res2"), crop_size=16, load_size=20,
            n_epochs=2, n_epochs_decay=2)


def domains():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(4, 3, 20, 20, generator=g) * 2 - 1
    b = (torch.rand(4, 3, 20, 20, generator=g) * 2 - 1).clamp(-1, 0)
    return TensorDomain(a, "A"), TensorDomain(b, "B")


def log(run):
    return [json.loads(line) for line in (run / "losses.jsonl").read_text().splitlines()]


def test_bf16_trains_keeps_float32_weights_and_resumes_exactly(tmp_path):
    a, b = domains()
    config = preset("mcdut", **TINY)
    common = dict(log_every=1, cpu=True, sample_count=0, checkpoint_every=4)
    full = train(a, b, config, TrainOptions(out=tmp_path / "bf16", mixed_precision="bf16", **common))
    fp32 = train(a, b, config, TrainOptions(out=tmp_path / "fp32", **common))
    assert full.finished and all(math.isfinite(v) for row in log(tmp_path / "bf16") for v in row.values())
    assert log(tmp_path / "bf16")[0]["nce"] != log(tmp_path / "fp32")[0]["nce"], "autocast changed nothing"
    assert fp32.finished
    state = read_checkpoint(latest_checkpoint(tmp_path / "bf16")).tensors
    assert {v.dtype for k, v in state.items() if k.startswith("net/")} == {torch.float32}
    assert next(TranslationPipeline.from_pretrained(full.model_dir).generator.parameters()).dtype == torch.float32

    train(a, b, config, TrainOptions(out=tmp_path / "part", mixed_precision="bf16", max_steps=8, **common))
    train(a, b, config, TrainOptions(out=tmp_path / "part", mixed_precision="bf16", resume=True, **common))
    resumed = read_checkpoint(latest_checkpoint(tmp_path / "part")).tensors
    for key in state:
        if key.startswith(("net/", "optim/")):
            assert torch.equal(state[key], resumed[key]), key
    assert log(tmp_path / "part") == log(tmp_path / "bf16")
