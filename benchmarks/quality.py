"""Anagram quality: baseline averaging against each multi-task component, on the testbeds.

**Glyph testbed** (``--model glyphs``, the default). Every method makes the same anagrams (same
seeds) of a list of (glyph pair, view) cases with the shipped glyph model; each sample is judged by
the glyph judge (a CNN that no scorer uses) and the segregation detector, and by a CLIP model on
alignment / concealment. A sample *fails* when some view is not read as its prompt's glyph, or when
it is segregated (each prompt drawn as its own glyph in its own region). How the case list was
chosen from measured baseline failure rates, and its tuning / held-out split, is in
``benchmarks/glyph_quality_cases.py``; the screen that chose them is ``--screen``.

    python benchmarks/quality.py --threads 2                      # the glyph table in README (about 30 minutes)
    python benchmarks/quality.py --screen --threads 2             # re-measure the candidates, rewrite glyph_cases.json
    python benchmarks/quality.py --cases tuning --methods "baseline,full (glyph CLIP)" --seeds 4   # a quick look
    python benchmarks/quality.py --methods "baseline,mtl (default),full (down-block maps)" --versus "mtl (default)"
    python benchmarks/quality.py --model digits --threads 1       # the digits table

Printed per method and per group of cases (tuning, held-out, easy): failure rate, its paired change
against the baseline, the share of samples with a misread view and the segregation rate, the judge's
alignment (the weaker view's probability) and concealment, CLIP alignment and concealment, seconds
per sample; standard errors (``±``) are over samples. ``--json`` writes every number per case.

**The rule**: the network that judges a table is never the network that scored inside the sampler.
The glyph judge is no scorer at all (asserted for every row); the CLIP column is left out ("-") of
a row whose balancing scorer is the CLIP that would judge it (pass ``--clip-judge`` a separately
trained CLIP to judge every row).

**Digits testbed** (``--model digits``): 11 digit pairs x views, judged by the second digit
classifier (``anagram/models/digit_judge``, the default, no scorer), by the shipped one
(``--judge digits``, which is also a scorer: its classifier-scorer rows then measure their own
scorer, marked) or by any classifier folder (``--judge FOLDER``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from glyph_quality_cases import CANDIDATES, CASES_FILE, SCREEN_SEEDS, Case, choose_cases, load_cases  # noqa: E402

from anagram import AnagramPipeline  # noqa: E402
from anagram.evaluation.metrics import alignment, concealment, success  # noqa: E402
from anagram.method import AntiSegregation, MultiTask  # noqa: E402
from anagram.method.scorers import resolve_scorer  # noqa: E402
from anagram.testbed import DIGIT_WORDS, DIGITS_MODEL_DIR, MODELS_DIR  # noqa: E402
from anagram.views import parse_view  # noqa: E402

OFF = dict(balance=False, rectify=None, anti_segregation=None)
GLYPH_CLIP_DIR = MODELS_DIR / "glyph_clip"
GLYPH_CLIP = f"clip:{GLYPH_CLIP_DIR}"

# -- digits ---------------------------------------------------------------------------------------------

# (view, first digit, second digit): the image reads as the first as it is, the second under the view.
DIGIT_CASES = [
    ("rotate_180", 0, 8), ("rotate_180", 6, 9), ("rotate_180", 1, 7),
    ("flip", 3, 5), ("flip", 2, 7),
    ("rotate_cw", 1, 4), ("rotate_cw", 7, 2),
    ("jigsaw", 3, 8), ("jigsaw", 4, 9),
    ("inner_circle", 0, 6), ("inner_circle", 5, 2),
]
DIGIT_METHODS = {
    "baseline": "baseline",
    "balancing (attention)": MultiTask(**{**OFF, "balance": True, "scorer": "attention"}),
    "balancing (classifier)": MultiTask(**{**OFF, "balance": True, "scorer": "digits"}),
    "rectification": MultiTask(**{**OFF, "rectify": "product"}),
    "anti-segregation": MultiTask(**{**OFF, "anti_segregation": AntiSegregation.reference()}),
    "anti-segregation (step 500)": MultiTask(**{**OFF, "anti_segregation": AntiSegregation.reference(step_size=500.0)}),
    "full (attention scorer)": MultiTask(scorer="attention", anti_segregation=AntiSegregation.reference()),
    "full (classifier scorer)": MultiTask(scorer="digits", anti_segregation=AntiSegregation.reference()),
    "full (down-block maps)": MultiTask(scorer="attention", anti_segregation=AntiSegregation(layers=("down",))),
    "full (anti-seg every 2nd step)": MultiTask(scorer="attention", anti_segregation=AntiSegregation.reference(interval=2)),
    "baseline (shared uncond)": ("baseline", True),
}

# -- glyphs ---------------------------------------------------------------------------------------------

def glyph_methods(clip: str = GLYPH_CLIP) -> dict:
    """The glyph rows by name; ``clip`` is the ``clip:<folder>`` scorer of the rows named "glyph CLIP" (the
    shipped one; ``--glyph-clip`` measures a candidate). "mtl (default)" is always what the model declares."""
    GLYPH_CLIP = clip  # noqa: N806 - the rows below read as the module's constant
    return {
        "baseline": "baseline",
        "balancing (attention)": MultiTask(**{**OFF, "balance": True, "scorer": "attention"}),
        "balancing (glyph CLIP)": MultiTask(**{**OFF, "balance": True, "scorer": GLYPH_CLIP}),
        "rectification (bounded)": MultiTask(**{**OFF, "rectify": "bounded"}),
        "rectification (product)": MultiTask(**{**OFF, "rectify": "product"}),
        "anti-segregation": MultiTask(**{**OFF, "anti_segregation": AntiSegregation.reference()}),
        "full (attention)": MultiTask(scorer="attention", anti_segregation=AntiSegregation.reference()),
        "full (glyph CLIP)": MultiTask(scorer=GLYPH_CLIP, anti_segregation=AntiSegregation.reference()),
        "mtl (default)": "mtl",  # since record version 2: anti-segregation maps from the down blocks
        "mtl (reference maps)": MultiTask(anti_segregation=AntiSegregation.reference()),  # the default until then
        # variants measured against the reference formula on the tuning cases, confirmed on the held-out ones
        "balancing (glyph CLIP relative)": MultiTask(**{**OFF, "balance": True, "scorer": GLYPH_CLIP},
                                                     balance_scores="relative"),
        "balancing (glyph CLIP strength 2)": MultiTask(**{**OFF, "balance": True, "scorer": GLYPH_CLIP},
                                                       balance_strength=2.0),
        "balancing (glyph CLIP strength 4)": MultiTask(**{**OFF, "balance": True, "scorer": GLYPH_CLIP},
                                                       balance_strength=4.0),
        "anti-segregation (step 50)": MultiTask(**{**OFF, "anti_segregation": AntiSegregation.reference(step_size=50.0)}),
        "anti-segregation (step 500)": MultiTask(**{**OFF, "anti_segregation": AntiSegregation.reference(step_size=500.0)}),
        "full (no anti-seg)": MultiTask(scorer=GLYPH_CLIP, anti_segregation=None),
        "full (no rectification)": MultiTask(scorer=GLYPH_CLIP, rectify=None, anti_segregation=AntiSegregation.reference()),
        "full (relative scores)": MultiTask(scorer=GLYPH_CLIP, balance_scores="relative",
                                            anti_segregation=AntiSegregation.reference()),
        "full (strength 2)": MultiTask(scorer=GLYPH_CLIP, balance_strength=2.0, anti_segregation=AntiSegregation.reference()),
        "full (anti-seg step 50)": MultiTask(scorer=GLYPH_CLIP, anti_segregation=AntiSegregation.reference(step_size=50.0)),
        # balancing with its weights bounded: capped, tempered, or only later in the trajectory
        "balancing (glyph CLIP cap 0.75)": MultiTask(**{**OFF, "balance": True, "scorer": GLYPH_CLIP},
                                                     balance_max_weight=0.75),
        "balancing (glyph CLIP strength 0.5)": MultiTask(**{**OFF, "balance": True, "scorer": GLYPH_CLIP},
                                                         balance_strength=0.5),
        "balancing (glyph CLIP from 1/2)": MultiTask(**{**OFF, "balance": True, "scorer": GLYPH_CLIP},
                                                     balance_start=0.5),
        "full (cap 0.75)": MultiTask(scorer=GLYPH_CLIP, balance_max_weight=0.75, anti_segregation=AntiSegregation.reference()),
        # the cheaper anti-segregation: maps from the down blocks only (the extra pass stops after them)
        "full (down-block maps)": MultiTask(anti_segregation=AntiSegregation(layers=("down",))),
        "full (down-block maps with glyph CLIP)": MultiTask(scorer=GLYPH_CLIP,
                                                        anti_segregation=AntiSegregation(layers=("down",))),
    }


GLYPH_METHODS = glyph_methods()
# The rows of the README table (the others are measured by name with --methods).
GLYPH_TABLE = ["baseline", "balancing (attention)", "balancing (glyph CLIP)", "rectification (bounded)",
               "anti-segregation", "full (attention)", "mtl (reference maps)", "mtl (default)"]


def method_record(method) -> object:
    """What identifies a method in the cache key and the JSON."""
    if isinstance(method, MultiTask):
        return method.to_dict()
    return method


def scorer_of(method, declared) -> str | None:
    """The balancing scorer a method runs (resolved as the sampler resolves it), None without balancing."""
    if method == "baseline" or isinstance(method, tuple):
        return None
    settings = MultiTask() if method == "mtl" else method
    if not settings.balance:
        return None
    spec = resolve_scorer(settings.scorer, declared)
    return spec if isinstance(spec, str) else repr(spec)


def same_network(scorer: str | None, judge: str) -> bool:
    """Whether a scorer spec and a judge spec name one network (``clip:<folder>`` compared by resolved path)."""
    if scorer is None:
        return False

    def norm(spec: str) -> str:
        prefix, sep, arg = spec.partition(":")
        if sep and prefix == "clip":  # a folder, however spelled (a hub id is compared as written)
            path = Path(arg).expanduser()
            return "clip:" + (str(path.resolve()) if path.is_absolute() or path.exists() else arg.strip())
        return spec.strip().lower()

    return norm(scorer) == norm(judge)


# -- generation (with an optional cache of finished samples) ---------------------------------------------


def fingerprint(spec: str | None) -> str | None:
    """A short hash of a ``clip:<folder>`` scorer's weights (so a retrained scorer never reuses a cached sample)."""
    if not spec or not spec.startswith("clip:"):
        return None
    weights = Path(spec[5:]) / "model.safetensors"
    if not weights.is_file():
        return None
    return hashlib.sha1(weights.read_bytes()).hexdigest()[:16]


def generate(pipe, model_name, prompts, views, method, seeds, steps, guidance, cache: Path | None,
             share=False) -> tuple[torch.Tensor, float]:
    """``(B, C, H, W)`` images in [0, 1], quantised to 8 bits as a saved PNG is, and seconds per sample
    (0 when read from the cache)."""
    key = None
    if cache is not None:
        record = {"model": model_name, "prompts": prompts, "views": views, "method": method_record(method),
                  "share": share, "seeds": list(seeds), "steps": steps, "guidance": guidance}
        scorer_weights = fingerprint(scorer_of(method, getattr(pipe, "declared_scorer", None)))
        if scorer_weights:
            record["scorer_weights"] = scorer_weights
        key = hashlib.sha1(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()[:20]
        path = cache / f"{key}.safetensors"
        if path.exists():
            from safetensors.torch import load_file

            return load_file(path)["images"].float() / 255.0, 0.0
    start = time.perf_counter()
    out = pipe(prompts, views=views, method=method, share_unconditional=share, num_inference_steps=steps,
               guidance_scale=guidance, output_type="pt", num_images_per_prompt=len(seeds),
               generator=[torch.Generator().manual_seed(s) for s in seeds])
    seconds = (time.perf_counter() - start) / len(seeds)
    images = (out.images.float().clamp(0, 1) * 255).round()
    if cache is not None:
        from safetensors.torch import save_file

        from anagram.outputs.atomic import temporary_path

        cache.mkdir(parents=True, exist_ok=True)
        with temporary_path(cache / f"{key}.safetensors") as tmp:
            save_file({"images": images.to(torch.uint8).contiguous()}, str(tmp))
    return images / 255.0, seconds


# -- judging -----------------------------------------------------------------------------------------


def judge_glyph_samples(images, views, prompts, judge, clip_judge=None) -> dict[str, torch.Tensor]:
    """Per sample: success, misread, segregated, failure, alignment, concealment (glyph judge) and
    clip_alignment, clip_concealment (when a CLIP judge is given)."""
    view_objects = [parse_view(v) for v in views]
    rows = defaultdict(list)
    for image in images:
        rendered = torch.stack([v.view_image(image) for v in view_objects])
        judged = judge(rendered, prompts)
        ok = bool(success(judged["predicted"], judged["targets"]))
        segregated = bool(judge.segregation(image, view_objects, prompts).segregated)
        rows["success"].append(float(ok and not segregated))
        rows["failure"].append(float(not ok or segregated))
        rows["misread"].append(float(not ok))
        rows["segregated"].append(float(segregated))
        rows["alignment"].append(float(alignment(judged["scores"])))
        rows["concealment"].append(float(concealment(judged["logits"])["mean"]))
        if clip_judge is not None:
            clipped = clip_judge(rendered, prompts)
            rows["clip_alignment"].append(float(alignment(clipped["scores"])))
            rows["clip_concealment"].append(float(concealment(clipped["logits"])["mean"]))
    return {k: torch.tensor(v) for k, v in rows.items()}


def mean_se(values: torch.Tensor) -> tuple[float, float]:
    values = values.double()
    n = values.numel()
    if n == 0:
        return math.nan, math.nan
    se = values.std(unbiased=True).item() / math.sqrt(n) if n > 1 else math.nan
    return values.mean().item(), se


# -- the glyph table ---------------------------------------------------------------------------------------


def glyph_groups(args) -> dict[str, list[Case]]:
    if args.case:
        return {"chosen": [Case.parse(c) for c in args.case]}
    chosen = load_cases(args.cases_file)
    names = {"tuning": "tuning", "heldout": "heldout", "easy": "easy_used"}
    groups = {}
    for group in args.cases.split(","):
        group = group.strip()
        if group not in names:
            raise SystemExit(f"--cases takes tuning, heldout, easy (comma-separated), got {group!r}")
        groups[group] = [Case.parse(c) for c in chosen[names[group]]]
    return groups


def run_glyphs(args, parser) -> dict:
    from anagram.evaluation.judges import CLIPJudge, GlyphJudge

    pipe = AnagramPipeline.from_pretrained("glyphs")
    pipe.set_progress_bar_config(disable=True)
    declared_steps, declared_guidance = pipe.declared_call_defaults or (30, 3.0)
    steps = args.steps or declared_steps
    guidance = args.guidance if args.guidance is not None else declared_guidance
    declared = getattr(pipe, "declared_scorer", None)
    judge = GlyphJudge()
    cache = Path(args.cache) if args.cache else None

    if args.screen:
        return screen(args, pipe, judge, steps, guidance, cache)

    chosen = [m.strip() for m in args.methods.split(",")] if args.methods else GLYPH_TABLE
    methods = glyph_methods(f"clip:{Path(args.glyph_clip).resolve()}") if args.glyph_clip else GLYPH_METHODS
    unknown = [m for m in chosen if m not in methods]
    if unknown:
        parser.error(f"unknown method(s) {unknown}; choose among: {', '.join(methods)}")
    clip_spec = f"clip:{Path(args.clip_judge).resolve()}" if args.clip_judge else GLYPH_CLIP
    clip_judge = CLIPJudge(clip_spec[5:]) if Path(clip_spec[5:]).exists() else None
    scorers = {name: scorer_of(methods[name], declared) for name in chosen}
    for name, scorer in scorers.items():  # the rule: the judge is never the scorer
        assert not same_network(scorer, "glyphs") and "glyph_judge" not in str(scorer), \
            f"{name}: the glyph judge cannot be a scorer of the table it judges"
    clip_rows = {name: clip_judge is not None and not same_network(scorer, clip_spec) for name, scorer in scorers.items()}
    for name in chosen:
        if clip_rows[name]:
            assert not same_network(scorers[name], clip_spec)
    groups = glyph_groups(args)
    seeds = list(range(args.seeds))
    n_cases = sum(len(v) for v in groups.values())
    print(f"glyph testbed: {n_cases} cases ({', '.join(f'{g} {len(c)}' for g, c in groups.items())}) x "
          f"{len(seeds)} seeds, {steps} steps, guidance {guidance}; judge: glyphs (+ segregation detector); "
          f"CLIP judge: {clip_spec if clip_judge else 'none'}", flush=True)
    results: dict = {"model": "glyphs", "glyph_clip": args.glyph_clip, "steps": steps, "guidance": guidance,
                     "seeds": seeds, "judge": "glyphs",
                     "glyph_clip_weights": fingerprint(GLYPH_CLIP),
                     "clip_judge": clip_spec if clip_judge else None, "methods": {}, "cases": {}}
    per: dict = {}
    for name in chosen:
        method = methods[name]
        results["methods"][name] = {"method": method_record(method), "scorer": scorers[name],
                                    "clip_column": clip_rows[name]}
        spent, fresh = 0.0, 0
        for group, cases in groups.items():
            for case in cases:
                images, seconds = generate(pipe, "glyphs", case.prompts, case.views, method, seeds, steps, guidance,
                                           cache)
                if args.generate_only:
                    continue
                scores = judge_glyph_samples(images, case.views, case.prompts, judge,
                                             clip_judge if clip_rows[name] else None)
                per[(name, group, case.name)] = scores
                results["cases"].setdefault(case.name, {})[name] = {
                    k: round(mean_se(v)[0], 4) for k, v in scores.items()}
                # per sample (seed order), so any paired difference can be recomputed from the JSON
                results.setdefault("samples", {}).setdefault(case.name, {})[name] = {
                    k: [round(float(x), 4) for x in v] for k, v in scores.items()}
                if seconds:
                    spent, fresh = spent + seconds, fresh + 1
        results["methods"][name]["seconds_per_sample"] = spent / fresh if fresh else None
        print(f"  done: {name}", flush=True)
    if args.generate_only:
        return results
    versus = args.versus if args.versus in chosen else None
    if args.versus and versus is None:
        print(f"--versus {args.versus!r} is not among the methods run: no second paired column")
    print_glyph_table(results, per, groups, chosen, versus)
    return results


def group_scores(per, name, group, cases) -> dict[str, torch.Tensor]:
    keys = per[(name, group, cases[0].name)].keys()
    return {k: torch.cat([per[(name, group, c.name)][k] for c in cases]) for k in keys}


def print_glyph_table(results, per, groups, chosen, versus=None) -> None:
    """The table per group; ``versus`` (a method name) adds a paired failure change against that method."""
    for group, cases in groups.items():
        print(f"\n{group} cases ({len(cases)}: {', '.join(c.name for c in cases)}), "
              f"{len(results['seeds'])} seeds each")
        header = (f"{'method':26s} {'failure':>13s} {'vs baseline':>13s} {'misread':>6s} {'segreg':>6s} "
                  f"{'align':>13s} {'conceal':>7s} {'CLIP A':>6s} {'CLIP C':>6s} {'s/img':>6s}")
        print(header + "\n" + "-" * len(header))
        base = group_scores(per, "baseline", group, cases) if "baseline" in chosen else None
        for name in chosen:
            s = group_scores(per, name, group, cases)
            fail, fail_se = mean_se(s["failure"])
            align, align_se = mean_se(s["alignment"])
            if base is not None and name != "baseline":
                d, d_se = mean_se(s["failure"] - base["failure"])
                vs = f"{d:+.3f}±{d_se:.3f}"
            else:
                vs = ""
            clip_a = f"{mean_se(s['clip_alignment'])[0]:6.3f}" if "clip_alignment" in s else f"{'-':>6s}"
            clip_c = f"{mean_se(s['clip_concealment'])[0]:6.3f}" if "clip_concealment" in s else f"{'-':>6s}"
            sec = results["methods"][name].get("seconds_per_sample")
            extra = ""
            row = {k: [round(x, 4) for x in mean_se(v)] for k, v in s.items()}
            if versus is not None and name != versus:
                other = group_scores(per, versus, group, cases)
                d_fail, d_align = mean_se(s["failure"] - other["failure"]), mean_se(s["alignment"] - other["alignment"])
                extra = f"  vs {versus}: failure {d_fail[0]:+.3f}±{d_fail[1]:.3f}, align {d_align[0]:+.3f}±{d_align[1]:.3f}"
                row[f"failure_vs {versus}"] = [round(x, 4) for x in d_fail]
                row[f"alignment_vs {versus}"] = [round(x, 4) for x in d_align]
                if "clip_alignment" in s and "clip_alignment" in other:
                    d_clip = mean_se(s["clip_alignment"] - other["clip_alignment"])
                    extra += f", CLIP A {d_clip[0]:+.3f}±{d_clip[1]:.3f}"
                    row[f"clip_alignment_vs {versus}"] = [round(x, 4) for x in d_clip]
            if base is not None and name != "baseline":
                row["failure_vs baseline"] = [round(x, 4) for x in mean_se(s["failure"] - base["failure"])]
            print(f"{name:26s} {fail:6.3f}±{fail_se:.3f} {vs:>13s} {mean_se(s['misread'])[0]:6.3f} "
                  f"{mean_se(s['segregated'])[0]:6.3f} {align:6.3f}±{align_se:.3f} {mean_se(s['concealment'])[0]:7.3f} "
                  f"{clip_a} {clip_c} {sec if sec is None else round(sec, 2)!s:>6s}{extra}")
            results.setdefault("groups", {}).setdefault(group, {})[name] = row
        print("per case failure rate:")
        for case in cases:
            print(f"  {case.name:18s} " + " ".join(
                f"{name[:14]}={mean_se(per[(name, group, case.name)]['failure'])[0]:.2f}" for name in chosen))
    print("\nfailure: some view not read as its prompt by the glyph judge, or segregated; vs baseline: paired "
          "change of the failure rate (same seeds); misread: some view misread; segreg: segregated; align: "
          "the weaker view's judge probability; conceal: judge concealment; CLIP A/C: CLIP alignment "
          "(weaker view's cosine) and concealment, '-' where the CLIP judge is the row's scorer; ± one "
          "standard error over samples")


def screen(args, pipe, judge, steps, guidance, cache) -> dict:
    candidates = [Case.parse(c) for c in args.case] if args.case else list(CANDIDATES)
    seeds = list(SCREEN_SEEDS[: args.seeds]) if args.seeds < len(SCREEN_SEEDS) else list(SCREEN_SEEDS)
    print(f"screen: baseline on {len(candidates)} candidates x seeds {seeds[0]}..{seeds[-1]}", flush=True)
    measured = {}
    for case in candidates:
        images, _ = generate(pipe, "glyphs", case.prompts, case.views, "baseline", seeds, steps, guidance, cache)
        if args.generate_only:
            print(f"  {case.name}: generated", flush=True)
            continue
        s = judge_glyph_samples(images, case.views, case.prompts, judge)
        measured[case.name] = {"failures": int(s["failure"].sum()), "misread": int(s["misread"].sum()),
                               "segregated": int(s["segregated"].sum()), "seeds": len(seeds),
                               "alignment": round(float(s["alignment"].mean()), 4)}
        m = measured[case.name]
        print(f"  {case.name:18s} failure {m['failures']:2d}/{m['seeds']} (misread {m['misread']}, "
              f"segregated {m['segregated']}) alignment {m['alignment']:.3f}", flush=True)
    if args.generate_only:
        return {}
    chosen = choose_cases(measured)
    payload = {"screen_seeds": seeds, "steps": steps, "guidance": guidance, "method": "baseline",
               "rule": "hard: baseline failure rate >= 0.5 on the screen seeds; easy: <= 0.25; hard cases "
                       "shuffled with random.Random(13), first half tuning, second half held-out "
                       "(at most 3 each); easy: at most 2, same shuffle",
               "screen": measured, **chosen}
    if not args.case:
        from anagram.outputs.atomic import write_json

        write_json(args.cases_file, payload)
        print(f"wrote {args.cases_file}")
    for key in ("tuning", "heldout", "easy_used"):
        print(f"{key}: {', '.join(chosen[key])}")
    return payload


# -- the digits table ------------------------------------------------------------------------------------


def judge_digit_batch(judge, images, views) -> dict[str, torch.Tensor]:
    view_objects = [parse_view(v) for v in views]
    rows = defaultdict(list)
    for image in images:
        judged = judge(torch.stack([v.view_image(image) for v in view_objects]), None)
        rows["success"].append(success(judged["predicted"], judged["targets"]).float())
        rows["alignment"].append(alignment(judged["scores"]))
        rows["concealment"].append(concealment(judged["logits"])["mean"])
    return {k: torch.stack(v) for k, v in rows.items()}


class _DigitPairJudge:
    """A digit classifier (the shipped one or a separately trained folder) as a judge of a digit pair."""

    def __init__(self, model, digits: tuple[int, int]):
        self.model = model
        self.targets = torch.tensor(digits)

    def __call__(self, views: torch.Tensor, _prompts) -> dict[str, torch.Tensor]:
        from anagram.testbed.classifier import classify

        probs = classify(views, self.model, (0.0, 1.0))
        scores = probs[:, self.targets]
        return {"scores": scores, "logits": scores.clamp_min(1e-12).log(), "predicted": probs.argmax(-1),
                "targets": self.targets}


def run_digits(args, parser) -> dict:
    from anagram.testbed import CLASSIFIER_DIR
    from anagram.testbed.train_digit_judge import DIGIT_JUDGE_DIR
    from anagram.testbed.classifier import load_classifier

    defaults = json.loads((DIGITS_MODEL_DIR / "anagram_defaults.json").read_text())
    steps = args.steps or defaults["num_inference_steps"]
    guidance = args.guidance if args.guidance is not None else defaults["guidance_scale"]
    pipe = AnagramPipeline.from_pretrained(DIGITS_MODEL_DIR)
    pipe.set_progress_bar_config(disable=True)
    # the default judge is the second digit classifier: the shipped one is also a scorer (--scorer digits)
    judge_dir = {None: DIGIT_JUDGE_DIR, "digits": CLASSIFIER_DIR, "digit_judge": DIGIT_JUDGE_DIR}.get(args.judge)
    judge_dir = judge_dir or Path(args.judge)
    own = judge_dir.resolve() == CLASSIFIER_DIR.resolve()
    classifier = load_classifier(judge_dir)
    chosen = [m.strip() for m in args.methods.split(",")] if args.methods else list(DIGIT_METHODS)
    unknown = [m for m in chosen if m not in DIGIT_METHODS]
    if unknown:
        parser.error(f"unknown method(s) {unknown}; choose among: {', '.join(DIGIT_METHODS)}")
    cache = Path(args.cache) if args.cache else None
    seeds = list(range(args.seeds))
    print(f"digits testbed: {len(DIGIT_CASES)} cases x {args.seeds} seeds, {steps} steps, guidance {guidance}; "
          f"judge: {judge_dir}")
    results, per_view, seconds, marked = {}, defaultdict(dict), {}, {}
    for name in chosen:
        entry = DIGIT_METHODS[name]
        method, share = entry if isinstance(entry, tuple) else (entry, False)
        marked[name] = own and scorer_of(method, "attention") == "digits"
        totals = defaultdict(list)
        spent = 0.0
        for view, first, second in DIGIT_CASES:
            prompts = [f"a digit {DIGIT_WORDS[first]}", f"a digit {DIGIT_WORDS[second]}"]
            views = ["identity", view]
            images, sec = generate(pipe, "digits", prompts, views, method, seeds, steps, guidance, cache, share)
            spent += sec
            scores = judge_digit_batch(_DigitPairJudge(classifier, (first, second)), images, views)
            for key, values in scores.items():
                totals[key].append(values)
            per_view[name][view] = per_view[name].get(view, []) + [scores["success"]]
        seconds[name] = spent / len(DIGIT_CASES)
        results[name] = {k: mean_se(torch.cat(v)) for k, v in totals.items()}
        print(f"  done: {name}", flush=True)
    views = list(dict.fromkeys(v for v, _, _ in DIGIT_CASES))
    header = f"{'method':33s} {'success':>13s} {'align':>6s} {'conceal':>8s} {'s/img':>6s}  " + " ".join(
        f"{v[:12]:>12s}" for v in views)
    print("\n" + header + "\n" + "-" * len(header))
    for name in chosen:
        r = results[name]
        by_view = " ".join(f"{torch.cat(per_view[name][v]).mean().item():12.2f}" for v in views)
        label = name + (" *" if marked[name] else "")
        print(f"{label:33s} {r['success'][0]:6.3f}±{r['success'][1]:.3f} {r['alignment'][0]:6.3f} "
              f"{r['concealment'][0]:8.3f} {seconds[name]:6.2f}  {by_view}")
    print("\nsuccess: every view classified as its digit; align: mean probability of the weaker view; conceal: "
          "mean concealment (row/column average); per-view columns: success rate by view; ± one standard error"
          + ("; * judged by its own scorer (the shipped classifier): not a measurement of the images"
             if any(marked.values()) else ""))
    return {"model": "digits", "judge": str(judge_dir), "results": results}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["glyphs", "digits"], default="glyphs")
    parser.add_argument("--seeds", type=int, default=16, help="seeds per case (0..N-1, all denoised in one batch)")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's)")
    parser.add_argument("--guidance", type=float, default=None, help="guidance scale (default: the model's)")
    parser.add_argument("--methods", default=None, help="comma-separated subset of the methods (names in the "
                        "module's GLYPH_METHODS / DIGIT_METHODS)")
    parser.add_argument("--cases", default="tuning,heldout,easy", help="glyphs: groups of glyph_cases.json")
    parser.add_argument("--case", action="append", default=None, help="glyphs: one case 'view:a/b' (repeatable), "
                        "instead of the groups")
    parser.add_argument("--cases-file", type=Path, default=CASES_FILE)
    parser.add_argument("--screen", action="store_true", help="glyphs: measure the baseline on every candidate "
                        "(seeds 1000..1007) and write the case list")
    parser.add_argument("--clip-judge", default=None, help="glyphs: CLIP folder of the CLIP columns (default: the "
                        "shipped glyph CLIP, left out of rows that balance with it)")
    parser.add_argument("--glyph-clip", default=None, help="glyphs: CLIP folder that the rows named 'glyph CLIP' "
                        "balance with (default: the shipped one; 'mtl (default)' always uses the model's declared scorer)")
    parser.add_argument("--judge", default=None, help="digits: 'digit_judge' (default: the second classifier, no scorer), 'digits' (the shipped classifier, also a scorer) or a classifier folder")
    parser.add_argument("--cache", default=None, help="folder of finished samples to reuse (keyed by every parameter)")
    parser.add_argument("--generate-only", action="store_true", help="fill the --cache with samples, judge nothing")
    parser.add_argument("--json", default=None, help="write every number (per case and per sample) as JSON")
    parser.add_argument("--versus", default=None, help="glyphs: also print each row's paired change against this "
                        "method (e.g. 'mtl (default)'), besides the change against the baseline")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    results = run_glyphs(args, parser) if args.model == "glyphs" else run_digits(args, parser)
    if args.json:
        from anagram.outputs.atomic import write_json

        write_json(args.json, results)


if __name__ == "__main__":
    main()
