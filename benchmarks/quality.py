"""Anagram quality on the digits testbed: baseline averaging against each multi-task component.

For digit pairs x views x seeds, every method generates the same anagrams (same seeds) with the
shipped digits model; the shipped digit classifier judges each view. Printed per method: success
rate (every view recognised as its prompt's digit), mean alignment (the weaker view's probability)
and mean concealment (spec §6), overall and per view, plus seconds per sample.

    python benchmarks/quality.py                 # the table in README.md (about 30 minutes on 2 CPU cores)
    python benchmarks/quality.py --seeds 4       # a quick look
    python benchmarks/quality.py --methods "baseline,full (down-block maps)"

The pairs include hard cases where plain averaging usually fails (one digit dominates both views).
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import torch

from anagram import AnagramPipeline
from anagram.evaluation import DigitJudge
from anagram.method import AntiSegregation, MultiTask
from anagram.evaluation.metrics import alignment, concealment, success
from anagram.testbed import DIGIT_WORDS, DIGITS_MODEL_DIR

# (view, first digit, second digit): the image reads as the first as it is, the second under the view.
CASES = [
    ("rotate_180", 0, 8), ("rotate_180", 6, 9), ("rotate_180", 1, 7),
    ("flip", 3, 5), ("flip", 2, 7),
    ("rotate_cw", 1, 4), ("rotate_cw", 7, 2),
    ("jigsaw", 3, 8), ("jigsaw", 4, 9),
    ("inner_circle", 0, 6), ("inner_circle", 5, 2),
]
OFF = dict(balance=False, rectify=None, anti_segregation=None)
METHODS = {
    "baseline": "baseline",
    "balancing (attention)": MultiTask(**{**OFF, "balance": True, "scorer": "attention"}),
    "balancing (classifier)": MultiTask(**{**OFF, "balance": True, "scorer": "digits"}),
    "rectification": MultiTask(**{**OFF, "rectify": "product"}),
    "anti-segregation": MultiTask(**{**OFF, "anti_segregation": AntiSegregation()}),
    "anti-segregation (step 500)": MultiTask(**{**OFF, "anti_segregation": AntiSegregation(step_size=500.0)}),
    "full (attention scorer)": MultiTask(scorer="attention"),
    "full (classifier scorer)": MultiTask(scorer="digits"),
    "full (down-block maps)": MultiTask(scorer="attention", anti_segregation=AntiSegregation(layers=("down",))),
    "full (anti-seg every 2nd step)": MultiTask(scorer="attention", anti_segregation=AntiSegregation(interval=2)),
    "baseline (shared uncond)": ("baseline", True),
}


def judge_batch(judge, out) -> dict[str, torch.Tensor]:
    rows = defaultdict(list)
    for views in out.views:
        judged = judge(torch.stack(list(views)), out.prompts)
        rows["success"].append(success(judged["predicted"], judged["targets"]).float())
        rows["alignment"].append(alignment(judged["scores"]))
        rows["concealment"].append(concealment(judged["logits"])["mean"])
    return {k: torch.stack(v) for k, v in rows.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=16, help="seeds per case (all denoised in one batch)")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's)")
    parser.add_argument("--guidance", type=float, default=None, help="guidance scale (default: the model's)")
    parser.add_argument("--methods", default=None, help="comma-separated subset of: " + ", ".join(METHODS))
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    import json

    defaults = json.loads((DIGITS_MODEL_DIR / "anagram_defaults.json").read_text())
    steps = args.steps or defaults["num_inference_steps"]
    guidance = args.guidance if args.guidance is not None else defaults["guidance_scale"]
    pipe = AnagramPipeline.from_pretrained(DIGITS_MODEL_DIR)
    pipe.set_progress_bar_config(disable=True)
    judge = DigitJudge()
    chosen = [m.strip() for m in args.methods.split(",")] if args.methods else list(METHODS)
    unknown = [m for m in chosen if m not in METHODS]
    if unknown:
        parser.error(f"unknown method(s) {unknown}; choose among: {', '.join(METHODS)}")
    print(f"digits testbed: {len(CASES)} cases x {args.seeds} seeds, {steps} steps, guidance {guidance}")
    results, per_view, seconds = {}, defaultdict(dict), {}
    for name in chosen:
        method, share = METHODS[name] if isinstance(METHODS[name], tuple) else (METHODS[name], False)
        totals = defaultdict(list)
        start = time.perf_counter()
        for view, first, second in CASES:
            prompts = [f"a digit {DIGIT_WORDS[first]}", f"a digit {DIGIT_WORDS[second]}"]
            out = pipe(prompts, views=["identity", view], method=method, share_unconditional=share,
                       num_inference_steps=steps, guidance_scale=guidance, output_type="pt",
                       num_images_per_prompt=args.seeds,
                       generator=[torch.Generator().manual_seed(s) for s in range(args.seeds)])
            scores = judge_batch(judge, out)
            for key, values in scores.items():
                totals[key].append(values)
            per_view[name][view] = per_view[name].get(view, []) + [scores["success"]]
        seconds[name] = (time.perf_counter() - start) / (len(CASES) * args.seeds)
        results[name] = {k: torch.cat(v).mean().item() for k, v in totals.items()}
        print(f"  done: {name}", flush=True)

    views = list(dict.fromkeys(v for v, _, _ in CASES))
    header = f"{'method':31s} {'success':>8s} {'align':>6s} {'conceal':>8s} {'s/img':>6s}  " + " ".join(
        f"{v[:12]:>12s}" for v in views)
    print("\n" + header + "\n" + "-" * len(header))
    for name in chosen:
        r = results[name]
        by_view = " ".join(f"{torch.cat(per_view[name][v]).mean().item():12.2f}" for v in views)
        print(f"{name:31s} {r['success']:8.3f} {r['alignment']:6.3f} {r['concealment']:8.3f} {seconds[name]:6.2f}  "
              f"{by_view}")
    print("\nsuccess: every view classified as its digit; align: mean probability of the weaker view; conceal: "
          "mean concealment (row/column average); per-view columns: success rate by view")


if __name__ == "__main__":
    main()
