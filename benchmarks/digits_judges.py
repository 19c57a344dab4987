"""The digits table judged by both digit classifiers, from samples already generated.

``benchmarks/quality.py --model digits --cache DIR`` keeps every row's samples; this reads them back
(it generates nothing: a row whose samples are not all in ``DIR`` is left out) and judges each with
the second digit classifier (``anagram/models/digit_judge``, never a scorer) and the shipped one
(``anagram/models/digit_classifier``, also the ``--scorer digits`` balancing scorer). Per row and
judge: success, alignment and concealment, the paired change in success against the baseline
(sample by sample, same seeds), and how often the two judges agree on a sample's success. On the
rows that balance with the shipped classifier, its verdict measures its scorer; the gap between the
two columns is what the scorer's steering is worth to another network::

    python benchmarks/quality.py --model digits --judge anagram/models/digit_judge --cache /tmp/dq --threads 1
    python benchmarks/digits_judges.py /tmp/dq --json /tmp/dq.json

± is one standard error over the samples (176 a row).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import quality  # noqa: E402

from anagram.testbed import CLASSIFIER_DIR, DIGIT_WORDS, DIGITS_MODEL_DIR, MODELS_DIR  # noqa: E402
from anagram.testbed.classifier import load_classifier  # noqa: E402

JUDGES = {"second classifier": MODELS_DIR / "digit_judge", "shipped classifier (scorer)": CLASSIFIER_DIR}


class _CachedOnly:
    """A pipeline stand-in for `quality.generate`: a sample missing from the cache is an error, never made."""

    declared_scorer = None

    def __call__(self, *args, **kwargs):
        raise LookupError("not in the cache")


def mean_se(values: torch.Tensor) -> tuple[float, float]:
    values = values.double()
    return values.mean().item(), (values.std() / len(values) ** 0.5).item() if len(values) > 1 else 0.0


def judge_row(entry, cache: Path, classifiers: dict, seeds: list[int], steps: int, guidance: float) -> dict | None:
    """Per judge, per-sample success / alignment / concealment of one row's cached samples (None if missing)."""
    method, share = entry if isinstance(entry, tuple) else (entry, False)
    rows = {name: defaultdict(list) for name in classifiers}
    for view, first, second in quality.DIGIT_CASES:
        prompts = [f"a digit {DIGIT_WORDS[first]}", f"a digit {DIGIT_WORDS[second]}"]
        views = ["identity", view]
        try:
            images, _ = quality.generate(_CachedOnly(), "digits", prompts, views, method, seeds, steps, guidance,
                                         cache, share)
        except LookupError:
            return None
        for name, classifier in classifiers.items():
            scores = quality.judge_digit_batch(quality._DigitPairJudge(classifier, (first, second)), images, views)
            for key, values in scores.items():
                rows[name][key].append(values)
    return {name: {k: torch.cat(v) for k, v in r.items()} for name, r in rows.items()}


def summarize_rows(per_row: dict) -> dict:
    """Means ± standard errors, paired changes against the baseline and the judges' agreement."""
    base = per_row.get("baseline")
    out = {}
    for row, judged in per_row.items():
        entry = {}
        for name, values in judged.items():
            entry[name] = {k: mean_se(values[k]) for k in ("success", "alignment", "concealment")}
            if base is not None:
                entry[name]["vs_baseline"] = mean_se(values["success"] - base[name]["success"])
        first, second = (judged[name]["success"] for name in JUDGES)
        entry["agreement"] = (first == second).double().mean().item()
        out[row] = entry
    return out


def print_table(summary: dict) -> None:
    names = list(JUDGES)
    print(f"{'method':32s} " + " ".join(f"{n[:28]:>30s} {'vs baseline':>16s}" for n in names) + f" {'agree':>6s}")
    for row, entry in summary.items():
        cells = []
        for name in names:
            s, d = entry[name]["success"], entry[name].get("vs_baseline", (float("nan"), float("nan")))
            cells.append(f"{s[0]:22.3f} ± {s[1]:.3f} {d[0]:+8.3f} ± {d[1]:.3f}")
        print(f"{row:32s} " + " ".join(cells) + f" {entry['agreement']:6.3f}")
    print("\nsuccess: every view read as its digit; vs baseline: paired change (same seeds); agree: share of samples "
          "on whose success the two judges agree; ± one standard error")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cache", type=Path, help="the --cache folder of a benchmarks/quality.py --model digits run")
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--guidance", type=float, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    defaults = json.loads((DIGITS_MODEL_DIR / "anagram_defaults.json").read_text())
    steps = args.steps or defaults["num_inference_steps"]
    guidance = args.guidance if args.guidance is not None else defaults["guidance_scale"]
    classifiers = {name: load_classifier(folder) for name, folder in JUDGES.items()}
    per_row = {}
    for row, entry in quality.DIGIT_METHODS.items():
        judged = judge_row(entry, args.cache, classifiers, list(range(args.seeds)), steps, guidance)
        if judged is not None:
            per_row[row] = judged
    if not per_row:
        raise SystemExit(f"no complete row of samples in {args.cache}")
    summary = summarize_rows(per_row)
    print_table(summary)
    if args.json:
        from anagram.outputs.atomic import write_json

        write_json(args.json, summary)


if __name__ == "__main__":
    main()
