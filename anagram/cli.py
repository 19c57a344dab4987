"""The `anagram` command line (typer): generate anagrams, list views.

    anagram generate "a digit zero" "a digit eight" --views identity,rotate_180 --num-samples 4
    anagram generate --from-json out/....json
    anagram views
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Visual anagrams with diffusion models.")
console = Console(stderr=True)


def fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code=2)


def split_views(views: Optional[str]) -> Optional[list[str]]:
    """``"identity,patch_permute:8"`` -> names/specs; a spec's own commas are kept (``jigsaw:4,seed=3``)."""
    if not views:
        return None
    from .views import available

    names = set(available())
    parts: list[str] = []
    for token in views.split(","):
        token = token.strip()
        head = token.split(":", 1)[0]
        if parts and ":" in parts[-1] and head not in names:
            parts[-1] += "," + token  # a parameter of the previous spec
        else:
            parts.append(token)
    return parts


def method_settings(method, balance, scorer, rectify, anti_seg, step_size, fraction, resolution, layers,
                    interval=None):
    """The method as recorded in the sidecar: "baseline", "mtl", or a dict of component settings."""
    from .method import AntiSegregation, MultiTask

    if method not in ("baseline", "mtl"):
        fail(f"--method must be baseline or mtl, got {method!r}")
    switches = (balance, scorer, rectify, anti_seg, step_size, fraction, resolution, layers, interval)
    if all(value is None for value in switches):
        return method
    settings = MultiTask() if method == "mtl" else MultiTask(balance=False, rectify=None, anti_segregation=None)
    if balance is not None or scorer is not None:
        settings.balance = balance if balance is not None else True
        settings.scorer = scorer or settings.scorer
    if rectify is not None:
        if rectify not in ("product", "correlation", "none"):
            fail(f"--rectify must be product, correlation or none, got {rectify!r}")
        settings.rectify = None if rectify == "none" else rectify
    tuning = {k: v for k, v in dict(step_size=step_size, fraction=fraction, resolution=resolution, interval=interval,
                                    layers=tuple(layers.split(",")) if layers else None).items() if v is not None}
    if anti_seg is False:
        settings.anti_segregation = None
    elif anti_seg or tuning:
        base = settings.anti_segregation or AntiSegregation()
        settings.anti_segregation = AntiSegregation(**{**base.__dict__, **tuning})
    return settings.to_dict()


def quiet_library_progress_bars() -> None:
    """diffusers/transformers draw their own tqdm bars while loading; ours (rich) is the only one shown."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()


def progress_bar() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), console=console)


@app.command()
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
    scorer: Optional[str] = typer.Option(None, help="Balancing scorer: attention, clip:<id or folder>, or a "
                                         "registered name."),
    rectify: Optional[str] = typer.Option(None, help="Variance rectification: product, correlation or none."),
    anti_seg: Optional[bool] = typer.Option(None, "--anti-seg/--no-anti-seg", help="Anti-segregation."),
    anti_seg_step_size: Optional[float] = typer.Option(None, help="Anti-segregation gradient step (default 5)."),
    anti_seg_fraction: Optional[float] = typer.Option(None, help="Share of steps with anti-segregation (26/30)."),
    anti_seg_resolution: Optional[int] = typer.Option(None, help="Attention map side (default: auto)."),
    anti_seg_layers: Optional[str] = typer.Option(None, help="UNet blocks for the maps, e.g. down,up."),
    anti_seg_interval: Optional[int] = typer.Option(None, help="Anti-segregation on every k-th step only."),
    upscaler: Optional[str] = typer.Option(None, help="DeepFloyd IF stage II id/folder, or 'none'."),
    cpu_offload: bool = typer.Option(False, "--cpu-offload", help="Model CPU offload (accelerate)."),
    device: Optional[str] = typer.Option(None, help="Device, e.g. cuda (default: cuda if available, else cpu)."),
    out: Path = typer.Option(Path("outputs"), "--out", help="Output folder."),
    from_json: Optional[Path] = typer.Option(None, "--from-json", help="Regenerate a sample from its JSON sidecar."),
):
    """Generate anagrams: an image, a strip of its views and a JSON sidecar for every sample."""
    import torch

    from .generate import Generator, Request, request_from_record, save_sample
    from .loading import ModelLoadError
    from .views import ViewError

    if from_json is not None:
        if not from_json.is_file():
            fail(f"no such JSON file: {from_json}")
        request, seed = request_from_record(json.loads(from_json.read_text()))
        num_samples = 1
    else:
        if not prompts:
            fail("give one prompt per view, e.g. anagram generate \"a digit zero\" \"a digit eight\"")
        request = Request(prompts=list(prompts), views=split_views(views), style=style, negative_prompt=negative,
                          model=model, revision=revision, steps=steps, guidance_scale=guidance, size=size,
                          dtype=dtype, upscaler=upscaler, share_unconditional=share_uncond,
                          method=method_settings(method, balance, scorer, rectify, anti_seg, anti_seg_step_size,
                                                 anti_seg_fraction, anti_seg_resolution, anti_seg_layers,
                                                 anti_seg_interval))
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        request.validate()
        quiet_library_progress_bars()
        with console.status(f"loading {request.model}"):
            generator = Generator(request, cpu_offload=cpu_offload, device=device)
        seeds = list(range(seed, seed + num_samples))
        with progress_bar() as progress:
            batches = -(-num_samples // batch_size)  # the steps of one batch advance the bar once each
            task = progress.add_task("denoising", total=generator.total_steps(batches))
            for start in range(0, num_samples, batch_size):
                batch = seeds[start : start + batch_size]
                for sample in generator(batch, on_step=lambda: progress.advance(task)):
                    files = save_sample(out, generator, sample)
                    progress.console.print(f"wrote {out / files['image']}")
    except (ModelLoadError, ViewError, ValueError) as error:
        fail(str(error))


@app.command("views")
def list_views():
    """List every available view and its properties."""
    from .views import describe

    table = Table(title="views")
    for column in ("name", "orthogonal", "spaces", "square only", "factorized", "parameters", "description"):
        table.add_column(column)
    for row in describe():
        params = ", ".join(f"{k}={v!r}" for k, v in (row.get("parameters") or {}).items())
        table.add_row(row["name"], "yes" if row["orthogonal"] else "no", ",".join(row["spaces"]),
                      "yes" if row["square_only"] else "no", "yes" if row["factorized"] else "no", params,
                      row.get("description", ""))
    Console().print(table)


# -- more commands: each lives in its own module and is registered here --------------------------------
# (batch: issue 7; animate and sheet: issue 6; evaluate: issue 5)

from .batch import batch_command  # noqa: E402

app.command("batch")(batch_command)


@app.command()
def animate(
    path: Path = typer.Argument(..., help="An output image (its JSON beside it), its JSON, or an output folder."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for the animations (default: the input's)."),
    formats: str = typer.Option("gif,mp4", "--format", "-f", help="Comma-separated formats: gif, mp4."),
    fps: float = typer.Option(20, min=1, help="Frames per second."),
    hold: float = typer.Option(1.0, min=0, help="Seconds on each view (at least one frame)."),
    transition: float = typer.Option(1.5, min=0, help="Seconds from one view to the next (eased in and out)."),
    size: int = typer.Option(384, min=2, help="Long side of the image in pixels (small images enlarged crisply)."),
    font_size: int = typer.Option(20, min=1, help="Caption font size."),
    font: Optional[Path] = typer.Option(None, help="TrueType font file for the captions."),
    captions: bool = typer.Option(True, "--captions/--no-captions", help="Show each view's prompt."),
    boomerang: bool = typer.Option(True, "--boomerang/--no-boomerang",
                                   help="Travel back to the first view, so the loop is seamless."),
):
    """Animate anagrams: GIF/MP4 of the image turning from view to view, each held with its prompt."""
    from .animate import MissingRecordError, write_animation
    from .views import ViewError

    try:
        write_animation(path, out, formats, show_captions=captions, fps=fps, hold_seconds=hold,
                        transition_seconds=transition, size=size, font_size=font_size,
                        font_path=str(font) if font else None, boomerang=boomerang,
                        on_written=lambda written: console.print(f"wrote {written}"))
    except (MissingRecordError, ViewError, ValueError, OSError) as error:
        fail(str(error))


@app.command()
def sheet(
    directory: Path = typer.Argument(..., help="An output folder (images with their JSON records)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for the sheet (default: DIRECTORY)."),
    metrics: Optional[Path] = typer.Option(None, help="Scores CSV with a 'stem' column (default: DIRECTORY/metrics.csv "
                                           "if present)."),
    columns: Optional[str] = typer.Option(None, help="Comma-separated scores to show (default: all)."),
    sort_by: Optional[str] = typer.Option(None, "--sort-by", help="Order the rows by this score."),
    ascending: bool = typer.Option(False, "--ascending", help="Lowest score first (default: highest first)."),
    rows_per_page: int = typer.Option(50, "--rows-per-page", min=1, help="Samples per page."),
    tile: int = typer.Option(192, min=8, help="Long side of each view's picture in pixels."),
    font_size: int = typer.Option(14, min=1, help="Text font size."),
    font: Optional[Path] = typer.Option(None, help="TrueType font file."),
):
    """Contact sheet of a run: every sample with all its views, prompts, seed and scores."""
    from .sheet import write_contact_sheet
    from .views import ViewError

    if not directory.is_dir():
        fail(f"no such folder: {directory}")
    try:
        pages = write_contact_sheet(directory, out, metrics_path=metrics, sort_by=sort_by, descending=not ascending,
                                    columns=[c.strip() for c in columns.split(",") if c.strip()] if columns else None,
                                    rows_per_page=rows_per_page, tile=tile, font_size=font_size,
                                    font_path=str(font) if font else None)
    except (ViewError, ValueError, OSError) as error:
        fail(str(error))
    for page in pages:
        console.print(f"wrote {page}")


@app.command()
def evaluate(
    directory: Path = typer.Argument(..., help="An output folder of `anagram generate` or `anagram batch`."),
    judge: str = typer.Option("auto", help="auto (the digit classifier for --model digits), digits, or "
                              "clip:<CLIP id or folder> for real models."),
    sheet: bool = typer.Option(False, "--sheet", help="Also write the contact sheet, with the scores."),
):
    """Visual Anagrams metrics (alignment, concealment, success) over every sample; writes metrics.csv."""
    from .evaluate import METRICS_FILE, evaluate_folder

    try:
        result = evaluate_folder(directory, judge)
    except (FileNotFoundError, ValueError) as error:
        fail(str(error))
    table = Table(title=f"{result['samples']} samples, judged by {result['judge']}")
    for column in ("metric", "mean", "q90", "q95"):
        table.add_column(column)
    for key in ("alignment", "concealment", "concealment_row", "concealment_column"):
        values = result[key]
        table.add_row(key, f"{values['mean']:.3f}", f"{values['q90']:.3f}", f"{values['q95']:.3f}")
    table.add_row("success rate", f"{result['success_rate']:.3f}", "", "")
    Console().print(table)
    console.print(f"wrote {directory / METRICS_FILE}")
    if sheet:
        from .sheet import write_contact_sheet

        for page in write_contact_sheet(directory, sort_by="alignment"):
            console.print(f"wrote {page}")


def main() -> None:  # pragma: no cover - console-script entry
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
