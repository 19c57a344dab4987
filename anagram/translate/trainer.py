"""Training a translator (spec §2): the same code on a CPU, one GPU or several (accelerate).

    result = train(FolderDomain("h2z/trainA"), FolderDomain("h2z/trainB"), preset("mcdut"),
                   TrainOptions(out="runs/h2z"), progress=callback)

One iteration is "D step, then G step", as CUT's: the generator objective (one module: generator,
patch heads, domain heads; `anagram.translate.objective`) makes G(x) and its non-adversarial
losses; the discriminator takes a step on ``0.5 (MSE(D(y), 1) + MSE(D(G(x).detach()), 0))``; then
the generator and heads take a step on ``lambda_GAN MSE(D(G(x)), 1) + NCE (+ DC)`` with D frozen.
Adam(lr 2e-4, betas 0.5 / 0.999) for both; the learning rate is constant for ``n_epochs`` and
decays linearly towards 0 over ``n_epochs_decay`` (per iteration). Losses stay on the device and
are read (one transfer) only every ``log_every`` steps.

Several processes (``accelerate launch`` / ``torchrun``): the networks are wrapped for data
parallelism by accelerate, each rank takes its own images of every step
(`anagram.translate.data.UnpairedBatches`), so an epoch has ``1 / world`` of the iterations.

The run folder (``options.out``)::

    run.json                     the config, the data and the options (written first)
    losses.jsonl                 one line of losses every log_every steps
    samples/step-00000500.png    source | translated, every sample_every steps
    checkpoints/step-*.safetensors   the full state (`anagram.translate.checkpoint`), every checkpoint_every steps
    model/                       the final `TranslationPipeline` (save_pretrained)

``resume=True`` continues from the newest checkpoint exactly (the batches and every random draw
of an iteration are functions of the seed and the step; optimisers, schedules and RNG states are
restored): a run stopped and resumed ends with the weights of an uninterrupted run. Every check
(data, sizes, config, the run folder) happens before anything is written.

The progress callback gets `TrainEvent` s; nothing here prints.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn

from ..outputs.atomic import atomic_write_bytes, remove_stale_temporaries, write_json, write_png
from .checkpoint import (
    CheckpointError, checkpoint_path, latest_checkpoint, list_checkpoints, read_checkpoint, restore_training_state,
    save_training_state,
)
from .config import TranslationConfig
from .data import (
    DataError, Domain, StepBatches, UnpairedBatches, check_domain, output_size, preprocess, seed_for, tensor_to_image,
)
from .losses import crop_boxes, discriminator_loss, generator_gan_loss
from .networks import build_networks
from .objective import GeneratorObjective

RUN_FILE = "run.json"
LOG_FILE = "losses.jsonl"
MODEL_DIR = "model"
SAMPLES_DIR = "samples"
IDENTITY_WARNING = 0.02  # mean |G(x) - x| in [-1, 1] units below which the generator is copying its input

__all__ = ["IDENTITY_WARNING", "LinearDecay", "RunError", "TrainEvent", "TrainOptions", "TrainResult", "train"]


class RunError(ValueError):
    """A run folder that cannot be used as asked (another run's, or nothing to resume)."""


@dataclass
class TrainOptions:
    """How a run is carried out (not part of the recipe, so a resume may change them).

    ``max_steps`` stops early (the schedule still follows the config's epochs, so a run stopped
    at k and resumed is the uninterrupted run); ``mixed_precision`` is accelerate's ("no",
    "fp16", "bf16"); ``mixed_channels="convert"`` accepts domains that mix gray and colour images.
    """

    out: str | Path
    max_steps: int | None = None
    log_every: int = 10
    sample_every: int = 500
    sample_count: int = 4
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    resume: bool = False
    mixed_precision: str = "no"
    cpu: bool = False
    num_workers: int = 0
    mixed_channels: str = "error"


@dataclass
class TrainEvent:
    """What the trainer reports: ``kind`` is "start", "step", "log", "sample", "checkpoint",
    "warning" or "done"; ``losses`` on "log" events."""

    kind: str
    step: int
    total: int
    losses: dict[str, float] | None = None
    path: Path | None = None
    message: str = ""


@dataclass
class TrainResult:
    out: Path
    step: int
    total_steps: int
    finished: bool
    losses: dict[str, float]
    model_dir: Path | None
    checkpoint: Path | None
    seconds: float
    warnings: list[str] = field(default_factory=list)


class LinearDecay:
    """LR factor per iteration: 1 for ``constant`` iterations, then linear towards 0 over ``decay``.
    A class (not a lambda) so the scheduler's state_dict records it."""

    def __init__(self, constant: int, decay: int):
        self.constant, self.decay = int(constant), int(decay)

    def __call__(self, step: int) -> float:
        if step < self.constant or self.decay <= 0:
            return 1.0
        return max(0.0, 1.0 - (step - self.constant) / self.decay)


# ---------------------------------------------------------------------- the run folder
def _run_record(config: TranslationConfig, domain_a: Domain, domain_b: Domain, options: TrainOptions) -> dict:
    opts = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()}
    return {"kind": "anagram-translate-run", "config": config.to_dict(),
            "data": {"A": domain_a.describe(), "B": domain_b.describe(), "A_count": len(domain_a), "B_count": len(domain_b)},
            "options": {k: v for k, v in opts.items() if k not in ("out", "resume")}}


def _check_run_folder(out: Path, config: TranslationConfig, resume: bool):
    """The checkpoint to resume from (or None); raises before anything is written."""
    record_path = out / RUN_FILE
    if resume:
        if not record_path.is_file():
            raise RunError(f"{out} holds no training run to resume ({RUN_FILE} missing); drop --resume to start one")
        try:
            record = json.loads(record_path.read_text())
            theirs = TranslationConfig.from_dict(record["config"])
        except (ValueError, KeyError) as error:
            raise RunError(f"{record_path} is unreadable ({error}); this is not a run folder anagram can resume") from None
        differences = theirs.differences(config)
        if differences:
            shown = ", ".join(f"{k}: run {a!r} vs now {b!r}" for k, (a, b) in sorted(differences.items()))
            raise RunError(f"{out} is a run of another config ({shown}); resume it with its own settings "
                           f"(use the same preset and flags) or choose another --out")
        latest = latest_checkpoint(out)
        if latest is None:
            return None  # stopped before its first checkpoint: start again from step 0 in the same folder
        return read_checkpoint(latest)  # CheckpointError when it is corrupt
    if out.exists() and any(out.iterdir()):
        kind = "a training run" if record_path.is_file() else "files"
        raise RunError(f"{out} already holds {kind}; pass --resume to continue it, or choose an empty --out "
                       "(nothing there is overwritten)")
    return None


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines past ``step`` (written after the checkpoint a resumed run restarts from)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (ValueError, KeyError):
            continue  # a line cut by a kill
    atomic_write_bytes(path, ("\n".join(kept) + ("\n" if kept else "")).encode())


def _check_shapes(config: TranslationConfig, batches: UnpairedBatches, discriminator: nn.Module) -> None:
    """Every image size training will see works for G, D and the crops; raises `DataError` now."""
    sizes = {output_size(h, w, config) for d in (batches.domain_a, batches.domain_b) for h, w in d.sizes}
    for height, width in sizes:
        if height % 4 or width % 4 or min(height, width) < 8:
            raise DataError(f"training images of {height}x{width} after preprocessing do not fit the generator "
                            "(multiples of 4, at least 8)")
        if min(height, width) < discriminator.min_size():
            raise DataError(f"training images of {height}x{width} are smaller than the discriminator's "
                            f"{discriminator.min_size()} px (n_layers_d={config.n_layers_d}); lower n_layers_d or "
                            "train larger crops")
        if config.multi_crop:
            crop_boxes(height, width, config.crop_count, config.crop_scale, config.centre_crop_scale)  # CropError


# ---------------------------------------------------------------------- sample grids
def _sample_grid(generator: nn.Module, sources: torch.Tensor) -> torch.Tensor:
    """Rows of source | translated, ``(C, rows * H, 2 W)`` in [-1, 1]."""
    was_training = generator.training
    generator.eval()
    with torch.no_grad():
        parameter = next(generator.parameters())
        translated = generator(sources.to(parameter.device, parameter.dtype)).float().cpu()
    generator.train(was_training)
    rows = [torch.cat([s, t], dim=-1) for s, t in zip(sources.float(), translated)]
    return torch.cat(rows, dim=-2)


def _fixed_sources(domain: Domain, config: TranslationConfig, count: int) -> torch.Tensor | None:
    images = [preprocess(domain.load(i, config.channels), config, train=False) for i in range(min(count, len(domain)))]
    shapes = {tuple(i.shape) for i in images}
    if not images:
        return None
    if len(shapes) > 1:  # a grid needs one size: the first image's
        images = [i for i in images if tuple(i.shape) == tuple(images[0].shape)]
    return torch.stack(images)


# ---------------------------------------------------------------------- training
def train(domain_a: Domain, domain_b: Domain, config: TranslationConfig, options: TrainOptions,
          progress: Callable[[TrainEvent], None] | None = None, sample_domain: Domain | None = None,
          accelerator: Any = None) -> TrainResult:
    """Train (or resume) a translator from A to B; returns a `TrainResult` (see the module docstring)."""
    from accelerate import Accelerator

    started = time.perf_counter()
    report = progress or (lambda event: None)
    out = Path(options.out)
    for domain in (domain_a, domain_b):
        check_domain(domain, config.channels, options.mixed_channels)
    # several processes (torchrun) and no GPU: data parallel on the CPU (gloo), not one lone run per process
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    if accelerator is None:
        from accelerate.state import AcceleratorState

        earlier = AcceleratorState._shared_state  # a run before this one, in this process (a notebook, the app)
        if earlier and earlier.get("_mixed_precision") != options.mixed_precision:
            AcceleratorState._reset_state()  # accelerate refuses another precision otherwise; the process group stays
        accelerator = Accelerator(mixed_precision=options.mixed_precision, cpu=options.cpu or launched)
    world, rank = accelerator.num_processes, accelerator.process_index
    batches = UnpairedBatches(domain_a, domain_b, config, world_size=world, rank=rank)
    total = batches.total_steps
    stop = total if options.max_steps is None else min(total, options.max_steps)

    networks = build_networks(config)
    _check_shapes(config, batches, networks["discriminator"])
    checkpoint = _check_run_folder(out, config, options.resume)

    objective = GeneratorObjective(config, networks["generator"], networks["heads"], networks.get("domain_heads"))
    g_parameters = [p for p in objective.parameters() if p.requires_grad]
    betas = (config.beta1, config.beta2)
    optimizers = {"generator": torch.optim.Adam(g_parameters, lr=config.lr, betas=betas),
                  "discriminator": torch.optim.Adam(networks["discriminator"].parameters(), lr=config.lr, betas=betas)}
    schedule = LinearDecay(batches.steps_per_epoch * config.n_epochs, batches.steps_per_epoch * config.n_epochs_decay)
    schedulers = {name: torch.optim.lr_scheduler.LambdaLR(opt, schedule) for name, opt in optimizers.items()}
    start = 0
    if checkpoint is not None:
        start = restore_training_state(checkpoint, config=config, networks=networks, optimizers=optimizers,
                                       schedulers=schedulers)
    accelerator.wait_for_everyone()  # every rank has checked the folder before the main process writes into it
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(out)
        remove_stale_temporaries(out / "checkpoints") if (out / "checkpoints").is_dir() else None
        if not options.resume or not (out / RUN_FILE).is_file():
            write_json(out / RUN_FILE, _run_record(config, domain_a, domain_b, options))
        _truncate_log(out / LOG_FILE, start)
    accelerator.wait_for_everyone()

    objective, discriminator, opt_g, opt_d = accelerator.prepare(
        objective, networks["discriminator"], optimizers["generator"], optimizers["discriminator"])
    frozen_discriminator = accelerator.unwrap_model(discriminator)
    loader = torch.utils.data.DataLoader(StepBatches(batches, start, stop), batch_size=None, shuffle=False,
                                         num_workers=options.num_workers)
    sources = _fixed_sources(sample_domain or domain_a, config, options.sample_count) if accelerator.is_main_process else None
    report(TrainEvent("start", start, stop, message=f"{world} process(es) on {accelerator.device}"))

    names = ["d", "g_gan", "nce"] + (["nce_idt"] if config.nce_idt else []) + (["dc"] if config.domain_consistency else []) + ["identity_distance"]
    last_losses: dict[str, float] = {}
    warnings: list[str] = []
    saved: Path | None = None
    step = start
    for x, y in loader:
        x = x.to(accelerator.device, non_blocking=True)
        y = y.to(accelerator.device, non_blocking=True)
        draws = torch.Generator().manual_seed(seed_for(config.seed, step, rank, 7))
        out_g = objective(x, y, draws)
        fake = out_g["fake"]

        # D step
        discriminator.requires_grad_(True)
        if fake.shape == y.shape:
            predictions = discriminator(torch.cat([y, fake.detach()]))
            loss_d = discriminator_loss(*predictions.split([y.shape[0], fake.shape[0]]))
        else:
            loss_d = discriminator_loss(discriminator(y), discriminator(fake.detach()))
        opt_d.zero_grad(set_to_none=True)
        accelerator.backward(loss_d)
        opt_d.step()

        # G step (D frozen: its gradients are neither computed nor synchronised)
        discriminator.requires_grad_(False)
        loss_gan = generator_gan_loss(frozen_discriminator(fake))
        loss_g = config.lambda_gan * loss_gan + out_g["loss"]
        opt_g.zero_grad(set_to_none=True)
        accelerator.backward(loss_g)
        opt_g.step()
        lr = schedulers["generator"].get_last_lr()[0]  # the rate this step used
        for scheduler in schedulers.values():
            scheduler.step()
        step += 1

        report(TrainEvent("step", step, stop))
        if step % options.log_every == 0 or step == stop:
            values = {"d": loss_d, "g_gan": loss_gan, **{k: out_g[k] for k in names if k in out_g}}
            stacked = accelerator.reduce(torch.stack([values[k].detach().float() for k in names]), reduction="mean")
            last_losses = dict(zip(names, stacked.tolist()))  # the one host transfer of these steps
            last_losses["lr"] = lr
            if accelerator.is_main_process:
                with open(out / LOG_FILE, "a") as handle:
                    handle.write(json.dumps({"step": step, **last_losses}) + "\n")
            report(TrainEvent("log", step, stop, losses=last_losses))
            if step >= 0.1 * total and last_losses["identity_distance"] < IDENTITY_WARNING:
                message = (f"step {step}: the generator is close to copying its input (mean |G(x) - x| = "
                           f"{last_losses['identity_distance']:.4f}); a translator that learned nothing looks like this")
                if not warnings or warnings[-1].split(":")[0] != message.split(":")[0]:
                    warnings.append(message)
                report(TrainEvent("warning", step, stop, message=message))
        if accelerator.is_main_process and sources is not None and (step % options.sample_every == 0 or step == stop):
            grid = _sample_grid(accelerator.unwrap_model(objective).generator, sources)
            path = out / SAMPLES_DIR / f"step-{step:08d}.png"
            write_png(path, tensor_to_image(grid), {"kind": "translate-samples", "step": step, "config": config.name,
                                                    "layout": "rows of source | translated"})
            report(TrainEvent("sample", step, stop, path=path))
        if step % options.checkpoint_every == 0 or step == stop:
            saved = _save(accelerator, out, step, config, objective, discriminator, optimizers, schedulers,
                          options.keep_checkpoints)
            report(TrainEvent("checkpoint", step, stop, path=saved))

    model_dir = None
    if accelerator.is_main_process:
        model_dir = _save_model(accelerator, out, objective, config, step, total, domain_a, domain_b)
    accelerator.wait_for_everyone()
    result = TrainResult(out=out, step=step, total_steps=total, finished=step >= total, losses=last_losses,
                         model_dir=model_dir if accelerator.is_main_process else None,
                         checkpoint=saved or latest_checkpoint(out), seconds=time.perf_counter() - started,
                         warnings=warnings)
    report(TrainEvent("done", step, stop, losses=last_losses, path=model_dir))
    return result


def _save(accelerator, out: Path, step: int, config: TranslationConfig, objective, discriminator,
          optimizers: dict, schedulers: dict, keep: int) -> Path:
    path = checkpoint_path(out, step)
    if accelerator.is_main_process:
        inner = accelerator.unwrap_model(objective)
        networks = {"generator": inner.generator, "discriminator": accelerator.unwrap_model(discriminator),
                    "heads": inner.heads}
        if inner.domain_heads is not None:
            networks["domain_heads"] = inner.domain_heads
        extra = {}
        if getattr(accelerator, "scaler", None) is not None:
            extra["grad_scaler"] = accelerator.scaler.state_dict()
        save_training_state(path, step=step, config=config, networks=networks, optimizers=optimizers,
                            schedulers=schedulers, extra=extra)
        for _, old in list_checkpoints(out)[:-max(1, keep)]:
            old.unlink(missing_ok=True)
    accelerator.wait_for_everyone()
    return path


def _save_model(accelerator, out: Path, objective, config: TranslationConfig, step: int, total: int,
                domain_a: Domain, domain_b: Domain) -> Path:
    from .pipeline import TranslationPipeline

    generator = accelerator.unwrap_model(objective).generator
    pipe = TranslationPipeline(generator)
    pipe.record = {"kind": "anagram-translate-model", "config": config.to_dict(), "step": step, "total_steps": total,
                   "data": {"A": domain_a.describe(), "B": domain_b.describe()}}
    pipe.save_pretrained(out / MODEL_DIR)
    return out / MODEL_DIR
