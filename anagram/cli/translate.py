"""`anagram translate`: train, apply and evaluate an unpaired image translator (`anagram.translate`).

    anagram translate train DATA --preset mcdut --out RUN       # DATA with trainA/ trainB/, or two folders
    anagram translate apply RUN INPUTS... --out DIR             # images, folders, anagram output folders
    anagram translate evaluate RUN DATA --features digits       # FID / KID on testA -> testB
    anagram translate train digits-to-typeset --out RUN         # the built-in offline task (no download)
    anagram translate evaluate RUN digits-to-typeset            # its content / realism / domain numbers

Every config switch has a flag (None keeps the preset's value); ``--set key=value`` reaches any
field of `TranslationConfig`. The engines report through callbacks; this module draws.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

from .terminal import console, fail, progress_bar, warn

translate_app = typer.Typer(add_completion=False, no_args_is_help=True,
                            help="Unpaired image-to-image translation (MCDUT; CUT and FastCUT as controls).")

_SWITCHES = {  # flag name -> config field (None: keep the preset's value)
    "ngf": "ngf", "n_blocks": "n_blocks", "channels": "channels", "ndf": "ndf", "n_layers_d": "n_layers_d",
    "num_patches": "num_patches", "lambda_nce": "lambda_nce", "lambda_gan": "lambda_gan", "nce_idt": "nce_idt",
    "multi_crop": "multi_crop", "crop_count": "crop_count", "extra_negatives": "extra_negatives",
    "domain_consistency": "domain_consistency", "lambda_dc": "lambda_dc", "dc_head": "dc_head",
    "dca": "dca", "dca_placement": "dca_placement", "batch_size": "batch_size", "n_epochs": "n_epochs",
    "n_epochs_decay": "n_epochs_decay", "preprocess": "preprocess", "load_size": "load_size",
    "crop_size": "crop_size", "lr": "lr", "seed": "seed", "flip": "flip",
}


def _main_process() -> bool:
    """Whether this process speaks: rank 0 of ``torchrun`` / ``accelerate launch`` (their RANK variable;
    every rank runs this command, and N copies of each line helped no one), or a process started alone."""
    try:
        return int(os.environ.get("RANK", "0")) == 0
    except ValueError:
        return True


def _parse_set(items: List[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            fail(f"--set takes key=value, got {item!r}")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


@translate_app.command("train")
def train_command(
    data: List[Path] = typer.Argument(..., help="DATA (with trainA/ and trainB/, CUT's layout), two image folders A B, "
                                      "or the built-in offline task digits-to-typeset."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder (must be empty unless --resume)."),
    preset_name: str = typer.Option("mcdut", "--preset", help="cut, fastcut or mcdut."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out exactly where it stopped."),
    max_steps: Optional[int] = typer.Option(None, help="Stop after this many iterations (the schedule is unchanged)."),
    log_every: int = typer.Option(10, help="Log the losses every N iterations."),
    sample_every: int = typer.Option(500, help="Write a source | translated grid every N iterations."),
    checkpoint_every: int = typer.Option(1000, help="Write a full-state checkpoint every N iterations."),
    mixed_precision: str = typer.Option("no", help="no, fp16 or bf16 (accelerate)."),
    mixed_channels: str = typer.Option("error", help="error, or convert: accept domains mixing gray and colour."),
    num_workers: int = typer.Option(0, help="Data loading processes."),
    crop_scale: Optional[str] = typer.Option(None, help="Multi-crop scale range MIN,MAX (each < 1)."),
    nce_layers: Optional[str] = typer.Option(None, help="Feature taps, comma separated (input,down1,down2,res1,res5)."),
    set_: List[str] = typer.Option([], "--set", help="Any config field: key=value (JSON values)."),
    ngf: Optional[int] = typer.Option(None), n_blocks: Optional[int] = typer.Option(None),
    channels: Optional[int] = typer.Option(None, help="1 or 3; default: 1 when every image is grayscale."),
    ndf: Optional[int] = typer.Option(None), n_layers_d: Optional[int] = typer.Option(None),
    num_patches: Optional[int] = typer.Option(None), lambda_nce: Optional[float] = typer.Option(None),
    lambda_gan: Optional[float] = typer.Option(None), nce_idt: Optional[bool] = typer.Option(None, "--nce-idt/--no-nce-idt"),
    multi_crop: Optional[bool] = typer.Option(None, "--multi-crop/--no-multi-crop"),
    crop_count: Optional[int] = typer.Option(None),
    extra_negatives: Optional[bool] = typer.Option(None, "--extra-negatives/--no-extra-negatives",
                                                   help="The multi-crop control: as many random extra negatives."),
    domain_consistency: Optional[bool] = typer.Option(None, "--domain-consistency/--no-domain-consistency"),
    lambda_dc: Optional[float] = typer.Option(None), dc_head: Optional[str] = typer.Option(None, help="shared, random, random_pair."),
    dca: Optional[bool] = typer.Option(None, "--dca/--no-dca"),
    dca_placement: Optional[str] = typer.Option(None, help="stem or resblocks."),
    batch_size: Optional[int] = typer.Option(None), n_epochs: Optional[int] = typer.Option(None),
    n_epochs_decay: Optional[int] = typer.Option(None),
    preprocess: Optional[str] = typer.Option(None, help="resize_crop, none, scale_width, scale_width_crop."),
    load_size: Optional[int] = typer.Option(None), crop_size: Optional[int] = typer.Option(None),
    lr: Optional[float] = typer.Option(None), seed: Optional[int] = typer.Option(None),
    flip: Optional[bool] = typer.Option(None, "--flip/--no-flip"),
):
    """Train a translator from domain A to domain B (resumable; multi-GPU with `accelerate launch -m anagram.cli`)."""
    from ..translate.config import ConfigError, preset
    from ..translate.data import DataError, find_domains, infer_channels
    from ..translate.digits_task import TASK_OVERRIDES, task_domains
    from ..translate.trainer import RunError, TrainOptions, train
    from ..translate.checkpoint import CheckpointError
    from ..translate.losses import CropError

    values = dict(locals())
    overrides = {field: values[flag] for flag, field in _SWITCHES.items() if values[flag] is not None}
    if crop_scale:
        overrides["crop_scale"] = tuple(float(v) for v in crop_scale.split(","))
    if nce_layers:
        overrides["nce_layers"] = tuple(v.strip() for v in nce_layers.split(","))
    overrides.update(_parse_set(set_))
    try:
        builtin = task_domains(data)  # the offline task: its recipe (32x32 gray, small networks) under the flags
        domain_a, domain_b = builtin or find_domains(data)
        overrides.setdefault("channels", infer_channels(domain_a, domain_b))
        config = preset(preset_name, **({**TASK_OVERRIDES, **overrides} if builtin else overrides))
        options = TrainOptions(out=out, max_steps=max_steps, log_every=log_every, sample_every=sample_every,
                               checkpoint_every=checkpoint_every, resume=resume, mixed_precision=mixed_precision,
                               num_workers=num_workers, mixed_channels=mixed_channels)
        speaks = _main_process()
        bar = progress_bar()
        bar.disable = not speaks  # the other ranks train silently
        with bar:
            task = bar.add_task("training", total=None)

            def report(event):
                if not speaks:
                    return
                if event.kind == "start":
                    bar.update(task, completed=event.step, total=event.total)
                    console.print(f"{escape(config.name)}: {escape(event.message)}, steps {event.step}..{event.total}")
                elif event.kind == "step":
                    bar.update(task, completed=event.step)
                elif event.kind == "log" and event.losses:
                    shown = " ".join(f"{k}={v:.3g}" for k, v in event.losses.items())
                    bar.update(task, description=f"training {shown}")
                elif event.kind == "warning":
                    warn(event.message)

            result = train(domain_a, domain_b, config, options, progress=report)
    except (ConfigError, DataError, RunError, CheckpointError, CropError, ValueError) as error:
        fail(str(error))
    if not speaks:
        return
    state = "finished" if result.finished else f"stopped at {result.step}/{result.total_steps} (resume with --resume)"
    console.print(f"{state} in {result.seconds:.1f} s; model: {result.model_dir}; checkpoint: {result.checkpoint}")


@translate_app.command("apply")
def apply_command(
    model: Path = typer.Argument(..., help="A run folder (with model/) or a model folder."),
    inputs: List[Path] = typer.Argument(..., help="Images, folders of images, or anagram output folders."),
    out: Path = typer.Option(..., "--out", "-o", help="Where the translated images go."),
    batch_size: int = typer.Option(8),
    device: Optional[str] = typer.Option(None, help="cpu, cuda... (default: cpu)"),
    keep_views: bool = typer.Option(False, "--keep-views", help="Keep each anagram: make the translation equivariant "
                                    "to the sample's views where they form a finite group (flips, rotations); "
                                    "views that cannot be kept (jigsaw, patch permutations) are named in a warning."),
):
    """Translate images (an anagram output folder gives translated samples with views strips and records)."""
    from ..translate.apply import apply_to_paths, load_translator

    try:
        pipe = load_translator(model, device)
        with progress_bar() as bar:
            task = bar.add_task("translating", total=None)
            result = apply_to_paths(pipe, inputs, out, batch_size=batch_size, keep_views=keep_views,
                                    progress=lambda done, total: bar.update(task, completed=done, total=total))
    except (FileNotFoundError, ValueError, TypeError) as error:
        fail(str(error))
    for note in result.warnings:
        warn(note)
    console.print(f"wrote {result.images} image(s) and {result.samples} sample(s) to {out}")


@translate_app.command("evaluate")
def evaluate_command(
    model: Path = typer.Argument(..., help="A run folder (with model/) or a model folder."),
    data: List[Path] = typer.Argument(..., help="DATA (with testA/ and testB/), two folders A B, or the built-in task "
                                      "digits-to-typeset (content, realism and domain rate on its test split)."),
    features: str = typer.Option("inception", help="inception (refused: pickled weights), digits, or a folder "
                                 "with a transformers vision backbone (safetensors)."),
    split: str = typer.Option("test", help="Which split of DATA: test or train."),
    seed: int = typer.Option(0, help="Seed of KID's subsets."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the report as JSON."),
):
    """FID and KID of translated A against B (and of untranslated A: the do-nothing baseline)."""
    from ..outputs.atomic import write_json
    from ..translate.apply import load_translator
    from ..translate.config import TranslationConfig
    from ..translate.data import DataError, find_domains
    from ..translate.digits_task import is_task
    from ..translate.evaluation import FeatureError, evaluate_translation

    if is_task(data):
        from ..translate.task_evaluation import evaluate_task, pipeline_translator

        try:
            task_report = evaluate_task(pipeline_translator(load_translator(model)), seed=seed)
        except (FileNotFoundError, ValueError) as error:
            fail(str(error))
        for line in task_report.lines():
            console.print(escape(line))
        if task_report.copying:
            warn("the generator is close to copying its input: it has not learned a translation")
        if json_out:
            write_json(json_out, task_report.to_dict())
            console.print(f"wrote {json_out}")
        return
    try:
        pipe = load_translator(model)
        config = TranslationConfig.from_dict(pipe.record["config"]) if pipe.record.get("config") else None
        if config is not None and config.preprocess == "resize_crop":
            config = None  # test images are translated at their own size (rounded by the pipeline's padding)
        domain_a, domain_b = find_domains(data, split=split)
        generator = pipe.generator.eval()

        def translate(x):
            return pipe(((x + 1) / 2), output_type="pt").images * 2 - 1

        report = evaluate_translation(translate, domain_a, domain_b, features, channels=generator.config.in_channels,
                                      config=config, seed=seed)
    except (FeatureError, DataError, FileNotFoundError, ValueError) as error:
        fail(str(error))
    console.print(f"features: {escape(report.features)}; {report.n_source} -> {report.n_target} images, "
                  f"KID subsets of {report.kid_subset_size}, seed {report.seed}")
    console.print(f"FID {report.fid:.2f}  KID {report.kid_mean:.4f} +- {report.kid_std:.4f}   "
                  f"(untranslated A: FID {report.fid_source:.2f}, KID {report.kid_source_mean:.4f})")
    console.print(f"mean |G(x) - x| = {report.identity_distance:.4f}")
    if report.copying:
        warn("the generator is close to copying its input: it has not learned a translation")
    if json_out:
        write_json(json_out, report.to_dict())
        console.print(f"wrote {json_out}")
