"""Full-state training checkpoints: one safetensors file, written atomically, verified when read.

A checkpoint holds every network (generator, discriminator, heads, domain heads), every optimiser
(moments and step counts), every learning-rate schedule, the RNG states (torch, CUDA, NumPy,
Python), the step, and the `TranslationConfig` it was made with. Tensors go in the safetensors
body; everything else is JSON in its metadata (key ``anagram_translate``), with a SHA-256 of the
tensors so a corrupted file is refused instead of resuming from damaged weights. Nothing is
pickled. Files are written through `anagram.outputs.atomic`: a reader sees a whole checkpoint or
none, so a run killed while saving resumes from the previous one.

Names: ``RUN/checkpoints/step-00001000.safetensors``; `latest_checkpoint` finds the newest.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes

from ..outputs.atomic import atomic_write_bytes
from .config import TranslationConfig

FORMAT = "anagram-translate-checkpoint"
FORMAT_VERSION = 1
METADATA_KEY = "anagram_translate"
CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^step-(\d+)\.safetensors$")

__all__ = ["Checkpoint", "CheckpointError", "checkpoint_path", "latest_checkpoint", "list_checkpoints",
           "read_checkpoint", "restore_training_state", "save_training_state"]


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from (corrupt, of another config, not a checkpoint)."""


@dataclass
class Checkpoint:
    path: Path
    step: int
    config: TranslationConfig
    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any]


def checkpoint_path(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / f"step-{step:08d}.safetensors"


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    folder = Path(run_dir) / CHECKPOINT_DIR
    found = [(int(m.group(1)), p) for p in folder.glob("step-*.safetensors") if (m := _NAME.match(p.name))]
    return sorted(found)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def _digest(tensors: Mapping[str, torch.Tensor]) -> str:
    sha = hashlib.sha256()
    for name in sorted(tensors):
        sha.update(name.encode())
        tensor = tensors[name]
        if tensor.numel():
            sha.update(tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return sha.hexdigest()


def _flatten_optimizer(prefix: str, state: dict, tensors: dict, meta: dict) -> None:
    scalars: dict[str, dict[str, Any]] = {}
    for param_id, values in state["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{prefix}/{param_id}/{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(param_id), {})[key] = value
    meta[prefix] = {"param_groups": state["param_groups"], "scalars": scalars,
                    "ids": [str(i) for i in state["state"]]}


def _unflatten_optimizer(prefix: str, tensors: Mapping[str, torch.Tensor], meta: dict) -> dict:
    info = meta[prefix]
    state: dict[int, dict[str, Any]] = {int(i): dict(info["scalars"].get(i, {})) for i in info["ids"]}
    for name, value in tensors.items():
        if name.startswith(prefix + "/"):
            param_id, key = name[len(prefix) + 1:].split("/", 1)
            state[int(param_id)][key] = value
    return {"state": state, "param_groups": info["param_groups"]}


def _rng_state(tensors: dict, meta: dict) -> None:
    tensors["rng/torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for index, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda/{index}"] = state
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    tensors["rng/numpy"] = torch.from_numpy(np.asarray(keys, dtype=np.uint32).astype(np.int64))
    meta["rng_numpy"] = [kind, int(pos), int(has_gauss), float(gauss)]
    version, internal, python_gauss = random.getstate()
    meta["rng_python"] = [version, list(internal), python_gauss]


def _restore_rng(tensors: Mapping[str, torch.Tensor], meta: dict) -> None:
    torch.set_rng_state(tensors["rng/torch"])
    cuda = sorted((int(k.rsplit("/", 1)[1]), v) for k, v in tensors.items() if k.startswith("rng/cuda/"))
    if cuda and torch.cuda.is_available():
        for index, state in cuda[: torch.cuda.device_count()]:
            torch.cuda.set_rng_state(state, index)
    kind, pos, has_gauss, gauss = meta["rng_numpy"]
    np.random.set_state((kind, tensors["rng/numpy"].numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, python_gauss = meta["rng_python"]
    random.setstate((version, tuple(internal), python_gauss))


def save_training_state(path: str | Path, *, step: int, config: TranslationConfig, networks: Mapping[str, torch.nn.Module],
                        optimizers: Mapping[str, torch.optim.Optimizer], schedulers: Mapping[str, Any],
                        extra: dict[str, Any] | None = None) -> Path:
    """Write the whole training state atomically to ``path`` (a ``.safetensors`` file)."""
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, Any] = {"format": FORMAT, "format_version": FORMAT_VERSION, "step": int(step),
                            "config": config.to_dict(), "networks": sorted(networks), "extra": extra or {}}
    for name, module in networks.items():
        for key, value in module.state_dict().items():
            tensors[f"net/{name}/{key}"] = value.detach().cpu().contiguous().clone()
    for name, optimizer in optimizers.items():
        _flatten_optimizer(f"optim/{name}", optimizer.state_dict(), tensors, meta)
    meta["schedulers"] = {name: scheduler.state_dict() for name, scheduler in schedulers.items()}
    _rng_state(tensors, meta)
    meta["sha256"] = _digest(tensors)
    data = save_safetensors_bytes(tensors, metadata={METADATA_KEY: json.dumps(meta)})
    return atomic_write_bytes(path, data)


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read and verify a checkpoint; `CheckpointError` says what is wrong and what to do."""
    path = Path(path)
    advice = "delete it to resume from the checkpoint before it, or start a new run with another --out"
    try:
        raw = path.read_bytes()
        tensors = load_safetensors_bytes(raw)
        header_length = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8:8 + header_length])
        meta = json.loads(header["__metadata__"][METADATA_KEY])
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except (SafetensorError, ValueError, KeyError, TypeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"checkpoint {path} is unreadable (corrupt or half-written: {error}); {advice}") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an anagram translation checkpoint")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format {meta.get('format_version')}; this anagram reads {FORMAT_VERSION}")
    if _digest(tensors) != meta.get("sha256"):
        raise CheckpointError(f"checkpoint {path} is corrupt (its tensors do not match their checksum); {advice}")
    return Checkpoint(path, int(meta["step"]), TranslationConfig.from_dict(meta["config"]), tensors, meta)


def restore_training_state(checkpoint: Checkpoint, *, config: TranslationConfig, networks: Mapping[str, torch.nn.Module],
                           optimizers: Mapping[str, torch.optim.Optimizer], schedulers: Mapping[str, Any],
                           restore_rng: bool = True) -> int:
    """Load a checkpoint into freshly built objects; returns its step. Refuses another config."""
    differences = checkpoint.config.differences(config)
    if differences:
        shown = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in sorted(differences.items()))
        raise CheckpointError(f"checkpoint {checkpoint.path} was made with another config ({shown}); resume with "
                              "the run's own settings (they are in its run.json) or start a new run with another --out")
    if sorted(networks) != checkpoint.meta["networks"]:
        raise CheckpointError(f"checkpoint {checkpoint.path} holds networks {checkpoint.meta['networks']}, "
                              f"expected {sorted(networks)}")
    for name, module in networks.items():
        prefix = f"net/{name}/"
        state = {k[len(prefix):]: v for k, v in checkpoint.tensors.items() if k.startswith(prefix)}
        module.load_state_dict(state, strict=True)
    for name, optimizer in optimizers.items():
        optimizer.load_state_dict(_unflatten_optimizer(f"optim/{name}", checkpoint.tensors, checkpoint.meta))
    for name, scheduler in schedulers.items():
        scheduler.load_state_dict(checkpoint.meta["schedulers"][name])
    if restore_rng:
        _restore_rng(checkpoint.tensors, checkpoint.meta)
    return checkpoint.step
