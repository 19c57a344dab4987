"""Data-parallel training for real: two processes on this CPU (gloo), the same `train` as one process.

Two processes are spawned with the environment ``torchrun`` gives (RANK, WORLD_SIZE, MASTER_ADDR...);
the trainer sees it (no GPU: data parallel on the CPU) and accelerate joins them in a gloo group. In each process three runs of a tiny
MCDUT config train on the same four images: an uninterrupted run, a run stopped half-way, and that
run resumed. Each process records which images it loaded and digests every parameter it ends with.
Checked here: the two ranks loaded different images at every step and together every image of an
epoch; their parameters are identical after training (the gradients were averaged: with different
data and no synchronisation they would differ) and differ from the initial ones; the stopped and
resumed run ends with the weights and the loss log of the uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch

from anagram.translate.checkpoint import latest_checkpoint, read_checkpoint
from anagram.translate.config import preset
from anagram.translate.data import TensorDomain
from anagram.translate.networks import build_networks
from anagram.translate.trainer import TrainOptions, train
from ports import free_port

WORLD = 2
TINY = dict(ngf=4, n_blocks=2, ndf=4, n_layers_d=2, head_units=8, dc_units=8, num_patches=16,
            nce_layers=("input", "down1", "down2", "res1", "res2"), crop_size=16, load_size=20,
            n_epochs=2, n_epochs_decay=2)
IMAGES = 4  # per domain: 2 steps an epoch on 2 ranks, 8 steps in all


class RecordingDomain(TensorDomain):
    """A tensor domain that remembers the index of every image it loads."""

    def __init__(self, images, name):
        super().__init__(images, name)
        self.loaded: list[int] = []

    def load(self, index, channels):
        self.loaded.append(int(index))
        return super().load(index, channels)


def domains():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(IMAGES, 3, 20, 20, generator=g) * 2 - 1
    b = (torch.rand(IMAGES, 3, 20, 20, generator=g) * 2 - 1).clamp(-1, 0)
    return RecordingDomain(a, "A"), RecordingDomain(b, "B")


def digest(module: torch.nn.Module) -> dict[str, str]:
    return {k: hashlib.sha256(v.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]
            for k, v in module.state_dict().items()}


def worker(rank: int, port: int, folder: str) -> None:
    """One process of the data-parallel group (spawned by the test)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(WORLD), LOCAL_WORLD_SIZE=str(WORLD))
    torch.set_num_threads(1)
    from accelerate import Accelerator

    folder = Path(folder)
    config = preset("mcdut", **TINY)
    report = {"rank": rank}
    for name, options in (("full", {}), ("part", {"max_steps": 4}), ("part", {"resume": True})):
        a, b = domains()
        events = []
        # the first two runs let the trainer make its own Accelerator, as `torchrun -m anagram.cli translate
        # train` does (no GPU here: it must join the gloo group, not train alone); the last one is handed one,
        # so that this rank's trained networks can be read back
        accelerator = Accelerator(cpu=True) if options.get("resume") else None
        result = train(a, b, config, TrainOptions(out=folder / name, log_every=1, checkpoint_every=2, sample_count=0,
                                                  **options), progress=events.append, accelerator=accelerator)
        entry = {"loaded_a": a.loaded, "loaded_b": b.loaded, "step": result.step, "finished": result.finished,
                 "start": next(e.message for e in events if e.kind == "start"),
                 "backend": torch.distributed.get_backend()}
        if accelerator is not None:
            assert accelerator.num_processes == WORLD and accelerator.process_index == rank
            entry["weights"] = digest(accelerator.unwrap_model(accelerator._models[0]))  # generator + heads
            entry["discriminator"] = digest(accelerator.unwrap_model(accelerator._models[1]))
        report[f"{name}{'-resumed' if options.get('resume') else ''}"] = entry
    (folder / f"rank{rank}.json").write_text(json.dumps(report))


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory):
    import torch.multiprocessing as mp

    folder = tmp_path_factory.mktemp("ddp")
    mp.spawn(worker, args=(free_port(), str(folder)), nprocs=WORLD, join=True)
    return folder, [json.loads((folder / f"rank{r}.json").read_text()) for r in range(WORLD)]


def test_two_processes_train_on_different_shards(ddp_runs):
    folder, ranks = ddp_runs
    full = [r["full"] for r in ranks]
    assert all(f["finished"] and f["step"] == 8 for f in full)  # 4 images / (batch 1 x 2 ranks) x 4 epochs
    assert [(f["start"].split(" on ")[0], f["backend"]) for f in full] == [("2 process(es)", "gloo")] * 2
    a0, a1 = full[0]["loaded_a"], full[1]["loaded_a"]
    assert len(a0) == len(a1) == 8
    assert all(x != y for x, y in zip(a0, a1)), "the ranks loaded the same image at some step"
    for epoch in range(4):  # an epoch is 2 steps: together the ranks see each of the 4 images once
        assert sorted(a0[2 * epoch: 2 * epoch + 2] + a1[2 * epoch: 2 * epoch + 2]) == [0, 1, 2, 3]
    assert (folder / "full" / "model" / "model_index.json").is_file()
    log = [json.loads(line) for line in (folder / "full" / "losses.jsonl").read_text().splitlines()]
    assert [row["step"] for row in log] == list(range(1, 9))  # one writer: the main process


def checkpoint_digest(path: Path, network: str) -> dict[str, str]:
    tensors = read_checkpoint(latest_checkpoint(path)).tensors
    prefix = f"net/{network}/"
    return {k[len(prefix):]: hashlib.sha256(v.contiguous().numpy().tobytes()).hexdigest()[:16]
            for k, v in tensors.items() if k.startswith(prefix)}


def test_gradients_are_synchronised(ddp_runs):
    folder, ranks = ddp_runs
    resumed = [r["part-resumed"] for r in ranks]
    for key in ("weights", "discriminator"):
        assert resumed[0][key] == resumed[1][key], f"the ranks' {key} differ after training on different images"
    written = {f"{net}.{k}": v for net in ("generator", "heads", "domain_heads")
               for k, v in checkpoint_digest(folder / "full", net).items()}
    assert resumed[0]["weights"] == written  # what rank 0 saved for the uninterrupted run
    assert resumed[0]["discriminator"] == checkpoint_digest(folder / "full", "discriminator")
    initial = digest(torch.nn.ModuleDict({k: v for k, v in build_networks(preset("mcdut", **TINY)).items()
                                          if k != "discriminator"}))
    changed = [k for k in written if written[k] != initial[k]]
    assert any(k.startswith("generator.") for k in changed), "training changed nothing"


def test_a_data_parallel_checkpoint_resumes_exactly(ddp_runs):
    folder, ranks = ddp_runs
    assert all(r["part"]["step"] == 4 and not r["part"]["finished"] for r in ranks)
    assert all(r["part-resumed"]["step"] == 8 and r["part-resumed"]["finished"] for r in ranks)
    for rank in ranks:
        assert rank["part"]["loaded_a"] + rank["part-resumed"]["loaded_a"] == rank["full"]["loaded_a"]
    full, part = (read_checkpoint(latest_checkpoint(folder / n)) for n in ("full", "part"))
    assert full.step == part.step == 8
    for key in full.tensors:
        if key.startswith(("net/", "optim/")):
            assert torch.equal(full.tensors[key], part.tensors[key]), key
    assert (folder / "full" / "losses.jsonl").read_text() == (folder / "part" / "losses.jsonl").read_text()
