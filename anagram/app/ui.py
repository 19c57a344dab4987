"""The page (gradio Blocks): Generate, Browse and Translate tabs over `generation`, `browse`, `translation`
and `results`.

Everything the page does goes through the functions of this package; this file only lays out the
components and wires their events. Every handler turns a mistake (ValueError and its kin: a bad
view, an empty prompt, an unknown model, a path outside the served folders) into `gr.Error`, which
the page shows as a message; anything else is reported the same way, with its traceback printed to
the terminal of the person running the app, and the app keeps serving. Generation runs in gradio's
queue one request at a time (``concurrency_limit=1``), so a second visitor sees their place in the
queue, and the pool's lock keeps the pipeline to one caller besides.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from functools import wraps
from pathlib import Path
from typing import Any, Callable, Sequence

import gradio as gr

from ..method import MultiTask
from ..method.rectification import ESTIMATORS
from ..outputs.print_sheet import DEFAULT_DPI, PAPER_SIZES
from ..outputs.records import StoredSample, read_sample
from ..views import ViewError, available
from .browse import PAGE_SIZE, listing, numeric_scores, sample_folders
from .generation import MAX_SAMPLES, GenerateForm, build_request, random_seed, run, view_specs
from .models import ModelPool
from .results import animation_files, downloads, inside, print_sheet_file
from .thumbnails import catalogue, thumbnail
from .translation import TranslatorPool, translate

MAX_VIEWS = 6
PRESETS = ("jigsaw:3", "patch_permute:4", "square_hinge:4", "inner_circle:0.3")
PAPERS = tuple(name.upper() if name.startswith("a") else name.title() for name in PAPER_SIZES)
DEFAULT_VIEWS = ["identity", "rotate_180"]
EXAMPLES = {
    "digits": [["", ["identity", "rotate_180"], "a digit six", "a digit nine"],
               ["", ["identity", "jigsaw"], "a digit one", "a digit seven"],
               ["", ["identity", "rotate_cw"], "a digit two", "a digit five"]],
    None: [["an oil painting of", ["identity", "flip"], "an old man", "a waterfall"],
           ["a watercolor of", ["identity", "rotate_cw"], "a rabbit", "a duck"],
           ["a photo of", ["identity", "jigsaw"], "a red fox", "a bowl of fruit"]],
}


@dataclass
class AppConfig:
    """What the app serves: its models, its output folder and the folders Browse may open."""

    pool: ModelPool
    out_dir: Path
    browse_roots: list[Path] = field(default_factory=list)
    translators: TranslatorPool | None = None

    @property
    def roots(self) -> list[Path]:
        return [self.out_dir, *self.browse_roots]


def shown_errors(handler: Callable) -> Callable:
    """Report every failure of ``handler`` in the page (its message, never a traceback) and go on."""

    @wraps(handler)
    def wrapped(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except gr.Error:
            raise
        except (ValueError, KeyError, FileNotFoundError) as error:  # the user's to fix: say what
            raise gr.Error(str(error).strip("'\""), print_exception=False) from None
        except Exception as error:  # noqa: BLE001 - the app keeps serving; the operator gets the traceback
            traceback.print_exc()
            raise gr.Error(f"this request failed: {type(error).__name__}: {error}", print_exception=False) from None

    return wrapped


def example_label(style: str, views: Sequence[str], *prompts: str) -> str:
    """One line per example (a table of its values rendered blank cells in Chromium: long headers, empty styles)."""
    shown = " / ".join(f"{style} {p}".strip() for p in prompts)
    return f"{shown} ({', '.join(views)})"


def view_choices() -> list[str]:
    return [*available(), *PRESETS]


def strip_path(sample: StoredSample) -> Path:
    return sample.image_path.parent / sample.record.files.get("views", f"{sample.stem}.views.png")


def caption(sample: StoredSample) -> str:
    views = [config["name"] for config in sample.record.views]
    return f"seed {sample.record.seed}: " + " | ".join(f"{v}: {p}" for v, p in zip(views, sample.prompts()))


# -- Generate ---------------------------------------------------------------------------------------------


def prompt_boxes_for(views: Sequence[str] | None):
    """Prompt boxes shown for the chosen views (one each, labelled with its view) and their thumbnails."""
    specs = view_specs(views) if views else []
    updates = [gr.update(visible=k < len(specs), label=f"Prompt {k + 1}: {specs[k]}" if k < len(specs) else f"Prompt {k + 1}")
               for k in range(MAX_VIEWS)]
    pictures = []
    for spec in specs[:MAX_VIEWS]:
        try:
            pictures.append((thumbnail(spec), spec))
        except (ViewError, ValueError, TypeError) as error:
            gr.Warning(f"view {spec!r}: {error}")
    return [*updates, pictures]


def method_switches(method: str):
    """The component switches of a method, as `anagram generate --method` sets them."""
    full = method == "mtl"
    rectify = MultiTask().rectify if full else None
    return gr.update(value=full), gr.update(value=rectify or "none"), gr.update(value=full)


def sample_detail(sample: StoredSample):
    """The animation (MP4 if it could be made, else the GIF) and the downloads of one sample."""
    animation = animation_files(sample)
    mp4, gif = animation.get("mp4"), animation.get("gif")
    return (gr.update(value=str(mp4) if mp4 else None, visible=mp4 is not None),
            gr.update(value=str(gif) if gif and not mp4 else None, visible=mp4 is None),
            [str(p) for p in downloads(sample)])


def build_generate_tab(config: AppConfig) -> None:
    pool = config.pool
    steps_default, guidance_default = pool.defaults(pool.default)
    with gr.Row():
        with gr.Column(scale=2):
            style = gr.Textbox(label="Style prefix (shared by every prompt)", placeholder="an oil painting of",
                               elem_id="style")
            views = gr.Dropdown(view_choices(), value=DEFAULT_VIEWS, multiselect=True, allow_custom_value=True,
                                label="Views, in order (one prompt each; type e.g. jigsaw:4,seed=3 for parameters)",
                                elem_id="views")
            picked = gr.Gallery(value=[(thumbnail(v), v) for v in DEFAULT_VIEWS], label="What the chosen views do",
                                columns=MAX_VIEWS, rows=1, height=190, allow_preview=False, elem_id="picked-views")
            prompts = [gr.Textbox(label=f"Prompt {k + 1}: {DEFAULT_VIEWS[k]}" if k < 2 else f"Prompt {k + 1}",
                                  visible=k < len(DEFAULT_VIEWS), elem_id=f"prompt-{k + 1}") for k in range(MAX_VIEWS)]
            with gr.Row():
                seed = gr.Number(0, precision=0, minimum=0, label="Seed", elem_id="seed")
                randomize = gr.Button("Randomize seed", elem_id="randomize", scale=0)
                num_samples = gr.Slider(1, MAX_SAMPLES, value=1, step=1, label="Samples", elem_id="num-samples")
            with gr.Accordion("Advanced", open=False, elem_id="advanced"):
                model = gr.Dropdown(pool.names, value=pool.default, allow_custom_value=True, label="Model",
                                    elem_id="model")
                with gr.Row():
                    steps = gr.Number(steps_default, precision=0, minimum=1, label="Steps", elem_id="steps")
                    guidance = gr.Number(guidance_default, label="Guidance scale", elem_id="guidance")
                negative = gr.Textbox(label="Negative prompt", elem_id="negative")
                method = gr.Radio(["baseline", "mtl"], value="baseline", label="Method (baseline: plain averaging; "
                                  "mtl: the full multi-task method)", elem_id="method")
                with gr.Row():
                    balance = gr.Checkbox(False, label="Balancing", elem_id="balance")
                    scorer = gr.Dropdown(["auto", "attention", "digits"], value="auto", allow_custom_value=True,
                                         label="Balancing scorer")
                    rectify = gr.Dropdown(["none", *ESTIMATORS], value="none", label="Rectification")
                with gr.Row():
                    anti_seg = gr.Checkbox(False, label="Anti-segregation", elem_id="anti-seg")
                    step_size = gr.Number(5.0, label="step size")
                    fraction = gr.Number(round(26 / 30, 3), label="fraction of steps")
                    layers = gr.Textbox("down", label="layers (reference: down,up)")
                    interval = gr.Number(1, precision=0, minimum=1, label="every k-th step")
                share_uncond = gr.Checkbox(False, label="Share the unconditional branch (faster, approximate)")
            generate = gr.Button("Generate", variant="primary", elem_id="generate")
            examples = EXAMPLES.get(pool.default, EXAMPLES[None])
            gr.Examples(examples, inputs=[style, views, prompts[0], prompts[1]], label="Examples",
                        example_labels=[example_label(*example) for example in examples])
            with gr.Accordion("Every view", open=False):
                every_view = gr.Gallery(catalogue(), columns=5, height=420, allow_preview=False,
                                        label="Click a view to add it", elem_id="every-view")
        with gr.Column(scale=3):
            status = gr.Markdown(elem_id="status")
            results = gr.Gallery(label="Results: every view of each sample, with its prompt", columns=1,
                                 height="auto", object_fit="contain", elem_id="results")
            video = gr.Video(label="Animation", autoplay=True, loop=True, interactive=False, elem_id="animation")
            gif = gr.Image(label="Animation (GIF)", visible=False, interactive=False, type="filepath",
                           elem_id="animation-gif")
            files = gr.File(label="Downloads: each view, the strip, the JSON record, the image, the animation",
                            file_count="multiple", interactive=False, elem_id="downloads")
            with gr.Row():
                paper = gr.Dropdown(PAPERS, value="A4", label="Paper", elem_id="paper")
                dpi = gr.Number(DEFAULT_DPI, precision=0, minimum=50, maximum=1200, label="DPI", elem_id="dpi")
                make_sheet = gr.Button("Print sheet (PDF)", elem_id="make-sheet")
            sheet = gr.File(label="Print sheet", interactive=False, elem_id="print-sheet")
    result_records = gr.State([])
    selected = gr.State(0)

    views.change(prompt_boxes_for, views, [*prompts, picked], show_progress="hidden")
    randomize.click(random_seed, None, seed, show_progress="hidden")
    method.change(method_switches, method, [balance, rectify, anti_seg], show_progress="hidden")

    @shown_errors
    def model_defaults(name):
        return pool.defaults(name)

    model.change(model_defaults, model, [steps, guidance], show_progress="hidden")

    def add_view(current, event: gr.SelectData):
        name = str(event.value["caption"] if isinstance(event.value, dict) else event.value).split(":")[0]
        return [*(current or []), name]

    every_view.select(add_view, views, views)

    @shown_errors
    def on_generate(style_, views_, *values, progress=gr.Progress()):
        texts = list(values[:MAX_VIEWS])
        (seed_, count, model_, steps_, guidance_, negative_, method_, balance_, scorer_, rectify_, anti_seg_,
         step_size_, fraction_, layers_, interval_, share_) = values[MAX_VIEWS:]
        specs = view_specs(views_)
        form = GenerateForm(prompts=texts[: len(specs)], views=specs, style=style_ or "", seed=int(seed_ or 0),
                            num_samples=int(count or 1), model=model_ or "", steps=int(steps_) if steps_ else None,
                            guidance=guidance_, negative=negative_ or "", method=method_ or "baseline",
                            balance=bool(balance_), scorer=scorer_ or "auto", rectify=rectify_ or "none",
                            anti_seg=bool(anti_seg_), anti_seg_step_size=step_size_, anti_seg_fraction=fraction_,
                            anti_seg_layers=layers_ or "", anti_seg_interval=int(interval_) if interval_ else None,
                            share_uncond=bool(share_))
        request = build_request(form, pool)
        seeds = range(form.seed, form.seed + form.num_samples)
        progress(0, desc=f"loading {request.model}")
        samples = run(request, seeds, pool, config.out_dir,
                      on_progress=lambda done, total: progress((done, total), desc="denoising", unit="steps"))
        progress(1.0, desc="animating")
        video_, gif_, files_ = sample_detail(samples[0])
        names = ", ".join(f"`{s.record_path.name}`" for s in samples)
        message = (f"Wrote {len(samples)} sample(s) to `{config.out_dir}`: {names}. Click a sample for its "
                   "animation and downloads.")
        gallery = [(str(strip_path(s)), caption(s)) for s in samples]
        return message, gallery, video_, gif_, files_, [str(s.record_path) for s in samples], 0, None

    generate.click(on_generate, [style, views, *prompts, seed, num_samples, model, steps, guidance, negative, method,
                                 balance, scorer, rectify, anti_seg, step_size, fraction, layers, interval,
                                 share_uncond],
                   [status, results, video, gif, files, result_records, selected, sheet], concurrency_limit=1,
                   concurrency_id="pipeline")

    def served_sample(path: str) -> StoredSample:
        return read_sample(inside(path, config.roots))

    @shown_errors
    def on_select(records, event: gr.SelectData):
        if not records:
            raise ValueError("generate something first")
        index = min(int(event.index), len(records) - 1)
        return (*sample_detail(served_sample(records[index])), index, None)

    results.select(on_select, result_records, [video, gif, files, selected, sheet])

    @shown_errors
    def on_sheet(records, index, paper_, dpi_):
        if not records:
            raise ValueError("generate a sample first: the print sheet is made of the sample shown")
        return str(print_sheet_file([served_sample(records[int(index)])], paper_, int(dpi_ or DEFAULT_DPI)))

    make_sheet.click(on_sheet, [result_records, selected, paper, dpi], sheet)


# -- Browse -----------------------------------------------------------------------------------------------


def build_browse_tab(config: AppConfig) -> None:
    def folder_names() -> list[str]:
        return [str(p) for p in sample_folders(config.roots)] or [str(config.out_dir)]

    with gr.Row():
        folder = gr.Dropdown(folder_names(), value=None, allow_custom_value=True, label="Output folder",
                             elem_id="browse-folder", scale=4)
        refresh = gr.Button("Refresh the list", scale=0)
        sort_by = gr.Dropdown([], value=None, label="Sort by score (metrics.csv)", elem_id="browse-sort", scale=2)
        ascending = gr.Checkbox(False, label="Lowest first", scale=1)
    with gr.Row():
        previous = gr.Button("Previous page", scale=0)
        page = gr.Number(1, precision=0, minimum=1, label="Page", elem_id="browse-page", scale=0)
        following = gr.Button("Next page", scale=0)
        info = gr.Markdown(elem_id="browse-info")
    strips = gr.Gallery(label="Samples", columns=1, height="auto", object_fit="contain", elem_id="browse-results")
    scores = gr.Dataframe(label="Scores of this page", interactive=False, elem_id="browse-scores")
    chosen = gr.File(label="Files of the chosen sample", file_count="multiple", interactive=False,
                     elem_id="browse-files")
    shown = gr.State([])

    @shown_errors
    def show(folder_, sort_, ascending_, page_):
        if not folder_:
            return gr.update(), "Pick a folder.", [], None, [], gr.update(), 1
        found = listing(folder_, config.roots, sort_ or None, bool(ascending_))
        number = min(max(1, int(page_ or 1)), found.pages())
        rows = found.page(number)
        names = numeric_scores(found.scores)
        table = [{"rank": rank, "seed": s.record.seed, "prompts": " / ".join(s.record.prompts),
                  **{k: found.scores.get(s.stem, {}).get(k) for k in names}} for rank, s in rows]
        text = (f"{len(found.samples)} samples in `{found.folder}`, page {number} of {found.pages()} "
                f"({PAGE_SIZE} a page)" + ("" if names else "; no metrics.csv: `anagram evaluate` the folder to score it"))
        gallery = [(str(strip_path(s)), found.caption(rank, s)) for rank, s in rows]
        sort_update = gr.update(choices=names, value=sort_ if sort_ in names else None)
        import pandas as pd

        return (sort_update, text, gallery, pd.DataFrame(table) if table else None,
                [str(s.record_path) for _, s in rows], None, number)

    outputs = [sort_by, info, strips, scores, shown, chosen, page]
    for trigger in (folder.change, sort_by.change, ascending.change, page.submit):
        trigger(show, [folder, sort_by, ascending, page], outputs)
    previous.click(lambda p: max(1, int(p or 1) - 1), page, page).then(show, [folder, sort_by, ascending, page], outputs)
    following.click(lambda p: int(p or 1) + 1, page, page).then(show, [folder, sort_by, ascending, page], outputs)
    refresh.click(lambda: gr.update(choices=folder_names()), None, folder)

    @shown_errors
    def pick(records, event: gr.SelectData):
        sample = read_sample(inside(records[int(event.index)], config.roots))
        return [str(p) for p in downloads(sample)]

    strips.select(pick, shown, chosen)


# -- Translate --------------------------------------------------------------------------------------------

MAX_SAMPLE_CHOICES = 500


def sample_choices(roots: Sequence[Path]) -> list[tuple[str, str]]:
    """``(label, record path)`` of the samples in the served folders (newest folders' first), for the picker."""
    from ..outputs.records import RecordError, find_samples

    choices: list[tuple[str, str]] = []
    for folder in sample_folders(roots):
        try:
            samples = find_samples(folder)
        except (RecordError, FileNotFoundError):
            continue
        for sample in samples:
            label = f"{folder.name}/{sample.stem}: {' / '.join(sample.prompts())}"
            choices.append((label, str(sample.record_path)))
    return choices[:MAX_SAMPLE_CHOICES]


def build_translate_tab(config: AppConfig) -> None:
    translators = config.translators
    found = translators.choices()
    with gr.Row():
        with gr.Column(scale=2):
            translator = gr.Dropdown(found, value=found[0][1] if found else None, allow_custom_value=True,
                                     label="Translator (one found in the served folders, or the path of a run or "
                                     "model folder there)", elem_id="translator")
            refresh = gr.Button("Refresh the lists", elem_id="translate-refresh", scale=0)
            uploads = gr.File(label="Images to translate", file_count="multiple", type="filepath",
                              elem_id="translate-upload")
            samples = gr.Dropdown(sample_choices(config.roots), value=[], multiselect=True,
                                  label="...or samples from the output folder", elem_id="translate-samples")
            run_it = gr.Button("Translate", variant="primary", elem_id="translate")
        with gr.Column(scale=3):
            status = gr.Markdown(elem_id="translate-status")
            pairs = gr.Gallery(label="Source | translation", columns=2, height="auto", object_fit="contain",
                               elem_id="translate-results")
            files = gr.File(label="Translated images", file_count="multiple", interactive=False,
                            elem_id="translate-files")

    def on_refresh():
        listed = translators.choices()
        return gr.update(choices=listed), gr.update(choices=sample_choices(config.roots))

    refresh.click(on_refresh, None, [translator, samples], show_progress="hidden")

    @shown_errors
    def on_translate(translator_, uploads_, samples_, progress=gr.Progress()):
        progress(0, desc="translating")
        uploaded = [u if isinstance(u, str) else getattr(u, "name", u) for u in (uploads_ or [])]
        done = translate(translators, translator_ or "", uploaded, samples_ or [], config.out_dir, config.roots)
        gallery = []
        for source, translated in done.pairs:
            gallery += [(str(source), f"source: {source.name}"), (str(translated), f"translated: {translated.name}")]
        message = (f"Translated {len(done.pairs)} image(s) with `{done.translator}` into `{done.folder}`.")
        return message, gallery, [str(t) for _, t in done.pairs]

    run_it.click(on_translate, [translator, uploads, samples], [status, pairs, files], concurrency_limit=1,
                 concurrency_id="translate")


def build_blocks(config: AppConfig) -> gr.Blocks:
    """The whole page."""
    with gr.Blocks(title="anagram") as demo:
        gr.Markdown("# anagram\nVisual anagrams: one image that shows a different prompt under each view. "
                    f"Model: **{config.pool.default}**; results go to `{config.out_dir}`.")
        with gr.Tab("Generate", id="generate-tab"):
            build_generate_tab(config)
        with gr.Tab("Browse", id="browse-tab"):
            build_browse_tab(config)
        if config.translators is not None:
            with gr.Tab("Translate", id="translate-tab"):
                build_translate_tab(config)
    return demo


__all__ = ["AppConfig", "MAX_VIEWS", "build_blocks", "shown_errors"]
