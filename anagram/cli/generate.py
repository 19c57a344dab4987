"""`anagram generate`: anagrams from prompts and views, each an image, a strip of its views and a record.

    anagram generate "a digit six" "a digit nine" --views identity,rotate_180 --num-samples 4
    anagram generate --from-json outputs/....json      # or the .png: it carries the same record

Every file name holds a short hash of the parameters (`anagram.runs.request.sample_name`), so runs that
differ in anything never share a name; an existing sample is replaced only with --overwrite. The output
folder, the device and every parameter are checked before any model loads.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import typer

from .terminal import console, fail, progress_bar, quiet_library_progress_bars, warn

REGENERATED = "regenerated"  # --from-json without --out writes here, beside the record, never over it


def generate(
    prompts: List[str] = typer.Argument(None, help="One prompt per view (the subjects, when --style is given)."),
    views: Optional[str] = typer.Option(None, "--views", help="Comma-separated views, e.g. identity,rotate_180 "
                                        "or identity,jigsaw:4,seed=3 (see `anagram views`)."),
    style: Optional[str] = typer.Option(None, help='Prefix shared by every prompt, e.g. "an oil painting of".'),
    negative: Optional[str] = typer.Option(None, "--negative", help="Negative prompt (unconditional branch)."),
    model: str = typer.Option("digits", help="'digits' (built in, offline), a hub id or a local folder."),
    revision: Optional[str] = typer.Option(None, help="Hub revision (branch, tag or commit)."),
    steps: Optional[int] = typer.Option(None, help="Denoising steps (default: the model's)."),
    guidance: Optional[float] = typer.Option(None, help="Classifier-free guidance scale (default: the model's)."),
    seed: int = typer.Option(0, help="Seed of the first sample; sample k uses seed + k."),
    num_samples: int = typer.Option(1, "--num-samples", "-n", min=1, help="Number of anagrams."),
    batch_size: int = typer.Option(8, min=1, help="Samples denoised together."),
    size: Optional[int] = typer.Option(None, help="Image size in pixels (square; default: the model's)."),
    dtype: str = typer.Option("fp32", help="fp32, fp16 or bf16."),
    method: str = typer.Option("baseline", help="baseline (plain averaging) or mtl (the full multi-task method); "
                               "the switches below change single components."),
    share_uncond: bool = typer.Option(False, "--share-uncond", help="One unconditional UNet evaluation per step, "
                                      "shared by the views (faster, approximate)."),
    balance: Optional[bool] = typer.Option(None, "--balance/--no-balance", help="Noise vector balancing."),
    scorer: Optional[str] = typer.Option(None, help="Balancing scorer: auto (the default: the one the model "
                                         "declares, else CLIP openai/clip-vit-base-patch32 from the hub), attention, "
                                         "clip:<id or folder>, or a registered name."),
    rectify: Optional[str] = typer.Option(None, help="Variance rectification: bounded (the "
                                          "default of mtl: a scale between 1 and sqrt(N)), product (the reference "
                                          "formula, unbounded), correlation or none."),
    anti_seg: Optional[bool] = typer.Option(None, "--anti-seg/--no-anti-seg", help="Anti-segregation."),
    anti_seg_step_size: Optional[float] = typer.Option(None, help="Anti-segregation gradient step (default 5)."),
    anti_seg_fraction: Optional[float] = typer.Option(None, help="Share of steps with anti-segregation (26/30)."),
    anti_seg_resolution: Optional[int] = typer.Option(None, help="Attention map side (default: auto)."),
    anti_seg_layers: Optional[str] = typer.Option(None, help="UNet blocks for the maps: down (default) or down,up (the reference)."),
    anti_seg_interval: Optional[int] = typer.Option(None, help="Anti-segregation on every k-th step only."),
    upscaler: Optional[str] = typer.Option(None, help="DeepFloyd IF stage II id/folder, or 'none'."),
    cpu_offload: bool = typer.Option(False, "--cpu-offload", help="Model CPU offload (accelerate)."),
    device: Optional[str] = typer.Option(None, help="Device, e.g. cuda (default: cuda if available, else cpu)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default: outputs; with --from-json: "
                                       f"a '{REGENERATED}' folder beside the record)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace samples of the same name (same parameters "
                                   "and seed) that are already in --out."),
    from_json: Optional[Path] = typer.Option(None, "--from-json", help="Regenerate a sample from its JSON sidecar "
                                             "or its PNG (which embeds the same record)."),
):
    """Generate anagrams: an image, a strip of its views and a JSON sidecar for every sample."""
    from ..method import method_from_switches
    from ..outputs.records import RecordError, read_record, sample_files
    from ..pipelines.loading import ModelLoadError
    from ..runs.model import LoadedModel, check_device, dtype_warning
    from ..runs.request import Request, request_from_record, sample_name
    from ..runs.sizes import check_view_sizes, folder_grid
    from ..views import split_views

    try:
        kept_name = None
        if from_json is not None:
            ignored = [name for name, value, default in (
                ("prompts", prompts, None), ("--views", views, None), ("--style", style, None),
                ("--negative", negative, None), ("--model", model, "digits"), ("--revision", revision, None),
                ("--steps", steps, None), ("--guidance", guidance, None), ("--seed", seed, 0),
                ("--num-samples", num_samples, 1), ("--size", size, None), ("--dtype", dtype, "fp32"),
                ("--method", method, "baseline"), ("--share-uncond", share_uncond, False),
                ("--balance/--no-balance", balance, None), ("--scorer", scorer, None), ("--rectify", rectify, None),
                ("--anti-seg/--no-anti-seg", anti_seg, None), ("--anti-seg-step-size", anti_seg_step_size, None),
                ("--anti-seg-fraction", anti_seg_fraction, None), ("--anti-seg-resolution", anti_seg_resolution, None),
                ("--anti-seg-layers", anti_seg_layers, None), ("--anti-seg-interval", anti_seg_interval, None),
                ("--upscaler", upscaler, None)) if value not in (default, [], ())]
            if ignored:  # they used to be dropped without a word: the record alone says what is made
                fail(f"--from-json remakes the recorded sample exactly, so {', '.join(ignored)} cannot be used with "
                     "it; leave them out, or run without --from-json (the record's parameters are in the JSON)")
            record = read_record(from_json)
            request, seed = request_from_record(record)
            num_samples = 1
            out = out or from_json.parent / REGENERATED
            kept_name = Path(record.files["image"]).stem if record.files.get("image") else None
        else:
            if not prompts:
                fail("give one prompt per view, e.g. anagram generate \"a digit six\" \"a digit nine\"")
            if views is not None and any(not part.strip() for part in views.split(",")):
                shell = (f" (the shell cut '--views {views} {prompts[-1]}' at the space: the last prompt "
                         f"{prompts[-1]!r} was meant as a view?)" if views.rstrip().endswith(",") else "")
                fail(f"--views {views!r} holds an empty view name{shell}: separate the views with commas and no "
                     "spaces, e.g. --views identity,rotate_180, or quote the list")
            method_spec = method_from_switches(
                method, balance=balance, scorer=scorer, rectify=rectify, anti_seg=anti_seg,
                step_size=anti_seg_step_size, fraction=anti_seg_fraction, resolution=anti_seg_resolution,
                layers=anti_seg_layers, interval=anti_seg_interval)
            request = Request.build(list(prompts), split_views(views), method=method_spec, style=style,
                                    negative_prompt=negative, model=model, revision=revision, steps=steps,
                                    guidance_scale=guidance, size=size, dtype=dtype, upscaler=upscaler,
                                    share_unconditional=share_uncond)
            out = out or Path("outputs")
        check_view_sizes(request, folder_grid(request.model))  # a model folder says its size: before loading
        seeds = list(range(seed, seed + num_samples))
        names = {s: kept_name or sample_name(request, s) for s in seeds}  # a regenerated sample keeps its name
        prepare_output_folder(out, list(names.values()), overwrite, sample_files,
                              other="--out" if from_json is not None else "--out or --seed")
        device = check_device(device)
        for line in filter(None, [dtype_warning(request.dtype, device)]):
            warn(line)
        quiet_library_progress_bars()
        with console.status(f"loading {request.model}"):
            loaded = LoadedModel.for_request(request, device=device, cpu_offload=cpu_offload)
        for line in loaded.warnings(request):
            warn(line)
        for line in filter(None, [loaded.check_scorer(request)]):  # a hub CLIP offline: fails here, before sampling
            warn(line)
        with progress_bar() as progress:
            batches = -(-num_samples // batch_size)  # the steps of one batch advance the bar once each
            task = progress.add_task("denoising", total=loaded.total_steps(request, batches))
            for start in range(0, num_samples, batch_size):
                for sample in loaded.generate(request, seeds[start : start + batch_size],
                                              on_step=lambda: progress.advance(task)):
                    files = loaded.save_sample(out, request, sample, stem=names[sample.seed])
                    progress.console.print(f"wrote {out / files['image']}", highlight=False, soft_wrap=True)
    except (ModelLoadError, RecordError, ValueError) as error:
        fail(str(error))


def prepare_output_folder(out: Path, stems: list[str], overwrite: bool, files_of,
                          other: str = "--out or --seed") -> None:
    """Make sure `out` is a writable folder and holds none of these samples (unless `overwrite`),
    before any model loads: a mistake here must not cost a finished sampling run."""
    if out.exists() and not out.is_dir():
        fail(f"--out {out} is a file, not a folder: give a folder (it is created if missing)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        fail(f"cannot create the output folder {out}: {error.strerror or error}")
    if not os.access(out, os.W_OK | os.X_OK):
        fail(f"cannot write into the output folder {out} (permission denied): choose another --out")
    taken = [out / name for stem in stems for name in files_of(stem).values() if (out / name).exists()]
    if taken and not overwrite:
        shown = ", ".join(str(path) for path in taken[:3]) + (f" and {len(taken) - 3} more" if len(taken) > 3 else "")
        fail(f"{shown} already exist: a sample with these parameters and seed was generated before. Pass --overwrite "
             f"to replace it, or choose another {other}")
