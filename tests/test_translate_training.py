"""Training: a few iterations lower the NCE loss; stop-and-resume equals an uninterrupted run; every
bad input is refused before anything is written; the pipeline round-trips."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from anagram.translate.checkpoint import CheckpointError, latest_checkpoint, read_checkpoint
from anagram.translate.config import preset
from anagram.translate.data import DataError, FolderDomain, TensorDomain, UnpairedBatches, find_domains
from anagram.translate.pipeline import SizeError, TranslationPipeline
from anagram.translate.trainer import RunError, TrainOptions, train

TINY = dict(ngf=4, n_blocks=2, ndf=4, n_layers_d=2, head_units=8, dc_units=8, num_patches=16,
            nce_layers=("input", "down1", "down2", "res1", "res2"), crop_size=16, load_size=20,
            n_epochs=2, n_epochs_decay=2)


def tiny(name="cut", **overrides):
    return preset(name, **{**TINY, **overrides})


def domains(channels=3, n=4, size=20):
    g = torch.Generator().manual_seed(0)
    a = torch.rand(n, channels, size, size, generator=g) * 2 - 1
    b = (torch.rand(n, channels, size, size, generator=g) * 2 - 1).clamp(-1, 0)
    return TensorDomain(a, "A"), TensorDomain(b, "B")


def weights(run):
    return read_checkpoint(latest_checkpoint(run)).tensors


def log(run):
    return [json.loads(line) for line in (run / "losses.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("name", ["cut", "mcdut"])
def test_stop_and_resume_equals_uninterrupted_run(tmp_path, name):
    a, b = domains()
    config = tiny(name)
    full = train(a, b, config, TrainOptions(out=tmp_path / "full", log_every=1, checkpoint_every=100))
    part = train(a, b, config, TrainOptions(out=tmp_path / "part", log_every=1, max_steps=6, checkpoint_every=100))
    assert part.step == 6 and not part.finished
    torch.manual_seed(1234)  # the global RNG does not steer training
    resumed = train(a, b, config, TrainOptions(out=tmp_path / "part", log_every=1, resume=True, checkpoint_every=100))
    assert resumed.step == full.step == 16 and resumed.finished
    wa, wb = weights(tmp_path / "full"), weights(tmp_path / "part")
    assert wa.keys() == wb.keys()
    for key in wa:
        if not key.startswith("rng/"):
            assert torch.equal(wa[key], wb[key]), key
    assert log(tmp_path / "full") == log(tmp_path / "part")


def test_killed_run_resumes_from_its_checkpoint(tmp_path):
    a, b = domains()
    config = tiny("cut")
    full = train(a, b, config, TrainOptions(out=tmp_path / "full", log_every=1))

    def kill(event):
        if event.kind == "step" and event.step == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(a, b, config, TrainOptions(out=tmp_path / "killed", log_every=1, checkpoint_every=4), progress=kill)
    assert read_checkpoint(latest_checkpoint(tmp_path / "killed")).step == 4
    train(a, b, config, TrainOptions(out=tmp_path / "killed", log_every=1, checkpoint_every=4, resume=True))
    assert log(tmp_path / "killed") == log(tmp_path / "full")  # the log past step 4 was rewritten, not doubled
    wa, wb = weights(tmp_path / "full"), weights(tmp_path / "killed")
    assert all(torch.equal(wa[k], wb[k]) for k in wa if k.startswith("net/"))


def test_a_few_iterations_lower_the_nce_loss(tmp_path):
    g = torch.Generator().manual_seed(0)
    a = TensorDomain(torch.rand(1, 3, 16, 16, generator=g) * 2 - 1, "A")
    b = TensorDomain(torch.rand(1, 3, 16, 16, generator=g) * 2 - 1, "B")
    config = tiny("cut", n_epochs=30, n_epochs_decay=0, flip=False, preprocess="none", lr=2e-3, nce_idt=False,
                  lambda_gan=0.0)
    result = train(a, b, config, TrainOptions(out=tmp_path / "run", log_every=1, checkpoint_every=1000))
    nce = [row["nce"] for row in log(tmp_path / "run")]
    assert sum(nce[-5:]) / 5 < 0.8 * sum(nce[:5]) / 5, nce
    assert (tmp_path / "run" / "samples").is_dir() and result.model_dir.is_dir()


def test_pipeline_round_trip_any_size_and_grayscale(tmp_path):
    a, b = domains(channels=1)
    config = tiny("cut", channels=1)
    result = train(a, b, config, TrainOptions(out=tmp_path / "run", max_steps=2))
    pipe = TranslationPipeline.from_pretrained(result.model_dir)
    assert pipe.record["config"]["channels"] == 1 and pipe.generator.config.in_channels == 1
    image = Image.new("RGB", (13, 10), (200, 30, 30))  # colour in, a gray translator: converted
    out = pipe([image, image], output_type="pil").images
    assert out[0].size == (13, 10) and out[0].mode == "L"
    x = torch.rand(2, 1, 12, 16)
    direct = pipe.generator(x * 2 - 1)
    assert torch.allclose(pipe(x, output_type="pt").images, ((direct + 1) / 2).clamp(0, 1), atol=1e-6)
    with pytest.raises(SizeError, match="multiples of 4"):
        pipe(image, size_rule="refuse")
    pipe.save_pretrained(tmp_path / "again")
    again = TranslationPipeline.from_pretrained(tmp_path / "again")
    assert torch.equal(again(x, output_type="pt").images, pipe(x, output_type="pt").images)


def test_sharding_gives_each_rank_its_own_images():
    a, b = domains(n=8)
    config = tiny("cut", batch_size=2)
    ranks = [UnpairedBatches(a, b, config, world_size=2, rank=r) for r in range(2)]
    single = UnpairedBatches(a, b, config)
    assert ranks[0].steps_per_epoch == 2 and single.steps_per_epoch == 4
    seen = [ranks[r].indices(p)[0] for step in range(2) for r in range(2) for p in ranks[r].positions(step)]
    assert sorted(seen) == list(range(8))  # one epoch across the two ranks: every A image once
    assert not set(ranks[0].positions(0)) & set(ranks[1].positions(0))
    x, y = ranks[1].batch(3)
    assert x.shape == (2, 3, 16, 16) and torch.equal(ranks[1].batch(3)[0], x)  # a function of (seed, step)


def write_images(folder, count, mode="RGB", size=(20, 20)):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.new(mode, size, (i * 40) if mode == "L" else (i * 40, 10, 200)).save(folder / f"{i}.png")


def test_bad_inputs_are_refused_before_anything_is_written(tmp_path):
    write_images(tmp_path / "d" / "trainA", 3)
    write_images(tmp_path / "d" / "trainB", 3)
    a, b = find_domains([tmp_path / "d"])
    config = tiny("cut")
    with pytest.raises(DataError, match="does not exist"):
        find_domains([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="has no images"):
        FolderDomain(tmp_path / "empty")
    (tmp_path / "d" / "trainA" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="not images.*notes.txt"):
        FolderDomain(tmp_path / "d" / "trainA")
    (tmp_path / "d" / "trainA" / "notes.txt").unlink()
    (tmp_path / "d" / "trainA" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot read.*broken.png"):
        FolderDomain(tmp_path / "d" / "trainA")
    (tmp_path / "d" / "trainA" / "broken.png").unlink()
    write_images(tmp_path / "mixed", 2)
    Image.new("L", (20, 20), 5).save(tmp_path / "mixed" / "gray.png")
    with pytest.raises(DataError, match="mixes grayscale"):
        train(FolderDomain(tmp_path / "mixed"), b, config, TrainOptions(out=tmp_path / "r0"))
    assert not (tmp_path / "r0").exists()
    with pytest.raises(DataError, match="discriminator"):
        train(a, b, tiny("cut", n_layers_d=3), TrainOptions(out=tmp_path / "r1"))
    assert not (tmp_path / "r1").exists()
    # a folder of another run, a config change on resume, a corrupt checkpoint
    train(a, b, config, TrainOptions(out=tmp_path / "run", max_steps=2))
    before = sorted(p.name for p in (tmp_path / "run").rglob("*"))
    with pytest.raises(RunError, match="already holds a training run"):
        train(a, b, config, TrainOptions(out=tmp_path / "run"))
    with pytest.raises(RunError, match="another config.*lambda_nce"):
        train(a, b, tiny("cut", lambda_nce=2.0), TrainOptions(out=tmp_path / "run", resume=True))
    checkpoint = latest_checkpoint(tmp_path / "run")
    data = bytearray(checkpoint.read_bytes())
    data[-5] ^= 0xFF
    checkpoint.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt"):
        train(a, b, config, TrainOptions(out=tmp_path / "run", resume=True))
    checkpoint.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(CheckpointError, match="unreadable"):
        train(a, b, config, TrainOptions(out=tmp_path / "run", resume=True))
    assert sorted(p.name for p in (tmp_path / "run").rglob("*")) == before
    with pytest.raises(RunError, match="no training run to resume"):
        train(a, b, config, TrainOptions(out=tmp_path / "nothing", resume=True))
