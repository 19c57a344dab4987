"""DIAGNOSTIC, not a method row (its scorer is the judge): does noise vector balancing help the glyph
testbed when its scorer is good? Balances with an oracle-ish scorer, the glyph judge's probability of view k's glyph on
view k of x0_hat (so the judge columns of these rows are biased: it steered; the CLIP A/C columns,
the shipped glyph CLIP that did not steer, are the independent read). Also traces, per step, the
scores and weights, and how often the glyph CLIP and the judge agree on which view lags.

    python benchmarks/glyph_balancing_diagnostic.py --out /tmp/diag --tag 1 --rows "baseline,oracle,clip,oracle s3"
    python benchmarks/glyph_balancing_diagnostic.py --out /tmp/diag --tag 2 --rows "baseline,oracle cap0.75,oracle from0.5"

Rows: ``baseline``; ``clip`` (balancing with the shipped glyph CLIP, traced); ``oracle`` with optional words
``sN`` (strength), ``capW`` (weight cap), ``fromF`` (balancing start). Never a README table row: the judge
columns of an oracle row are judged by its own scorer. Writes ``diag_<tag>.json`` (per-row numbers, per-step
traces) and each row's images (``.pt``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from glyph_quality_cases import CASES_FILE  # noqa: E402
from quality import GLYPH_CLIP_DIR, generate, glyph_groups, judge_glyph_samples, mean_se  # noqa: E402

from anagram import AnagramPipeline  # noqa: E402
from anagram.evaluation.judges import CLIPJudge, GlyphJudge  # noqa: E402
from anagram.method import MultiTask  # noqa: E402
from anagram.method.balancing import balance_weights, cap_weights  # noqa: E402
from anagram.method.scorers import CLIPScorer, CallableScorer  # noqa: E402
from anagram.testbed.glyph_judge import glyph_of_prompt, glyph_probabilities  # noqa: E402

OFF = dict(rectify=None, anti_segregation=None)


def judge_scores(inputs):
    """(B, N): the glyph judge's p(glyph of prompt k | view k of x0_hat)."""
    n, b = inputs.x0_views.shape[:2]
    targets = [glyph_of_prompt(p) for p in inputs.prompts]
    probs = glyph_probabilities(inputs.x0_views.flatten(0, 1).clamp(-1, 1), value_range=(-1.0, 1.0)).view(n, b, -1)
    return torch.stack([probs[k, :, targets[k]] for k in range(n)], -1)


class Recorder:
    """Steers with ``steer`` (scores -> weights as the sampler does) and logs other scorers on the same x0."""

    needs_images = True

    def __init__(self, steer, name, others, strength=1.0, cap=None):
        self.steer, self.name, self.others, self.strength, self.cap = steer, name, others, strength, cap
        self.log = []

    def __repr__(self):
        return f"Recorder({self.name})"

    def __call__(self, inputs):
        s = self.steer(inputs)
        entry = {"step": inputs.step_index, "steer": s.clone()}
        for key, fn in self.others.items():
            entry[key] = fn(inputs).float().clamp(1e-4, 1)
        entry["alpha"] = cap_weights(balance_weights(s, inputs.step_index, inputs.num_steps, strength=self.strength),
                                     self.cap)
        self.log.append(entry)
        return s


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--cache", default="/tmp/gq_cache")
    p.add_argument("--seeds", type=int, default=16)
    p.add_argument("--rows", default="baseline,oracle,oracle s3,clip")
    p.add_argument("--tag", default="1")
    args = p.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    pipe = AnagramPipeline.from_pretrained("glyphs")
    pipe.set_progress_bar_config(disable=True)
    judge, clip_judge = GlyphJudge(), CLIPJudge(str(GLYPH_CLIP_DIR))
    clip = CLIPScorer(str(GLYPH_CLIP_DIR))
    ns = argparse.Namespace(case=None, cases_file=CASES_FILE, cases="tuning")
    cases = glyph_groups(ns)["tuning"]
    seeds = list(range(args.seeds))
    results, traces = {}, {}
    for row in [r.strip() for r in args.rows.split(",")]:
        per = []
        for case in cases:
            rec = None
            if row == "baseline":
                method = "baseline"
            elif row.startswith("oracle"):
                words = row.split()[1:]  # "oracle", "oracle s3", "oracle cap0.75", "oracle from0.5"
                opts = {w.rstrip("0123456789."): float(w.lstrip("scapfrom")) for w in words}
                strength = opts.get("s", 1.0)
                rec = Recorder(CallableScorer(judge_scores), row, {"clip": clip}, strength, opts.get("cap"))
                method = MultiTask(balance=True, scorer=rec, balance_strength=strength,
                                   balance_max_weight=opts.get("cap"), balance_start=opts.get("from", 0.0), **OFF)
            elif row == "clip":
                rec = Recorder(clip, row, {"judge": CallableScorer(judge_scores)})
                method = MultiTask(balance=True, scorer=rec, **OFF)
            images, _ = generate(pipe, "glyphs", case.prompts, case.views, method, seeds, 30, 3.0,
                                 Path(args.cache) if rec is None else None)
            torch.save(images, args.out / f"{row.replace(' ', '_')}_{case.name.replace(':', '_').replace('/', '')}.pt")
            s = judge_glyph_samples(images, case.views, case.prompts, judge, clip_judge)
            per.append(s)
            if rec is not None:
                traces[(row, case.name)] = rec.log
        s = {k: torch.cat([x[k] for x in per]) for k in per[0]}
        results[row] = {k: mean_se(v) for k, v in s.items()}
        if row != "baseline" and "baseline" in results:
            results[row]["failure_vs_baseline"] = mean_se(s["failure"] - base["failure"])
            results[row]["clip_alignment_vs_baseline"] = mean_se(s["clip_alignment"] - base["clip_alignment"])
        if row == "baseline":
            base = s
        print(row, {k: f"{v[0]:.3f}±{v[1]:.3f}" for k, v in results[row].items()}, flush=True)
    # trace summaries: per step, mean min/max alpha, and agreement of the lagging view between scorers
    summary = {}
    for (row, case), log in traces.items():
        steps = []
        for e in log:
            other = e.get("clip", e.get("judge"))
            lag_steer = e["steer"].argmin(-1)
            lag_other = other.argmin(-1)
            steps.append({"step": e["step"], "alpha_max": round(e["alpha"].max(-1).values.mean().item(), 3),
                          "alpha_sat": round((e["alpha"].max(-1).values > 0.9).float().mean().item(), 3),
                          "agree_lag": round((lag_steer == lag_other).float().mean().item(), 3),
                          "steer_mean": [round(x, 3) for x in e["steer"].mean(0).tolist()],
                          "other_mean": [round(x, 3) for x in other.mean(0).tolist()],
                          "sample0_steer": [round(x, 3) for x in e["steer"][0].tolist()],
                          "sample0_other": [round(x, 3) for x in other[0].tolist()],
                          "sample0_log_alpha": [round(x, 3) for x in e["alpha"][0].log().tolist()]})
        summary[f"{row} | {case}"] = steps
    (args.out / f"diag_{args.tag}.json").write_text(json.dumps({"results": results, "traces": summary}, indent=1))
    print("wrote", args.out / f"diag_{args.tag}.json")


if __name__ == "__main__":
    main()
