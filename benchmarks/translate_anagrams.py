"""Do translated anagrams stay anagrams? The digits model's anagrams, translated to typeset, with and
without ``--keep-views``, each view judged in domain B.

    flock /tmp/anagram-train.lock nice -n 5 .venv/bin/python benchmarks/translate_anagrams.py --out runs/anagrams

1. `anagram generate --model digits` makes ``--samples`` anagrams for each pair of `PAIRS`
   (flip and rotation views; seeds 0..n-1; the model's default method and steps), into
   ``OUT/samples/<pair>`` (kept: a second run reuses them).
2. `anagram translate apply typeset` translates every sample, plainly and with ``--keep-views``
   (``OUT/plain``, ``OUT/kept``), through the same code the command line runs (`apply_to_paths`).
3. Every view of every image is read: the source anagram by the digit testbed's judge (domain A),
   the translations by the task's content reader (the glyph judge's digits: domain B). A view is
   right when it is read as its prompt's digit; a sample is right when all its views are.
   The equivariance error ``max |v(T(x)) - T(v(x))|`` (in [0, 1] pixel units) is measured on each
   sample's non-identity view, where T is the translation used.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: (name, first prompt, second prompt, second view); the first view is the identity.
PAIRS = (
    ("six-nine-rotate_180", "a digit six", "a digit nine", "rotate_180"),
    ("two-five-rotate_180", "a digit two", "a digit five", "rotate_180"),
    ("three-eight-flip", "a digit three", "a digit eight", "flip"),
    ("one-seven-rotate_cw", "a digit one", "a digit seven", "rotate_cw"),
)


def generate(out: Path, samples: int) -> None:
    for name, first, second, view in PAIRS:
        folder = out / "samples" / name
        if folder.is_dir() and len(list(folder.glob("*.json"))) >= samples:
            continue
        command = [str(ROOT / ".venv" / "bin" / "anagram"), "generate", first, second, "--views", f"identity,{view}",
                   "--model", "digits", "-n", str(samples), "--seed", "0", "--out", str(folder)]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)


def read_views(folder: Path, reader) -> list[dict]:
    """Per sample: which of its views the reader reads as the prompt's digit."""
    from anagram.outputs.records import find_samples
    from anagram.testbed.judge import digit_of_prompt

    rows = []
    for sample in find_samples(folder):
        image = sample.image_tensor()
        views = sample.views()
        seen = torch.stack([view.view_image(image) for view in views])  # (V, 1, H, W) in [0, 1]
        digits = torch.tensor([digit_of_prompt(p) for p in sample.record.prompts])
        predicted = reader(seen * 2 - 1).argmax(-1)
        rows.append({"stem": sample.stem, "right": (predicted == digits).tolist(), "read": predicted.tolist()})
    return rows


def summary(rows: list[dict]) -> dict:
    views = [r for row in rows for r in row["right"]]
    return {"views_right": statistics.fmean(views), "samples_all_right": statistics.fmean(all(r["right"]) for r in rows),
            "n_samples": len(rows)}


def main(argv: list[str] | None = None) -> None:
    from anagram.outputs.records import find_samples
    from anagram.testbed.classifier import classify
    from anagram.translate.apply import apply_to_paths, load_translator
    from anagram.translate.keep_views import translate_keeping_views
    from anagram.translate.task_evaluation import content_reader

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "translate_anagrams")
    parser.add_argument("--samples", type=int, default=16, help="anagrams per pair")
    parser.add_argument("--model", default="typeset", help="the translator (a name, a run or a model folder)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    generate(args.out, args.samples)
    pipe = load_translator(args.model)
    read_b, reader_name = content_reader()
    results = {"model": str(args.model), "content_reader": reader_name, "samples_per_pair": args.samples, "pairs": {}}
    for name, *_ in PAIRS:
        source = args.out / "samples" / name
        entry = {"source (digit judge, domain A)": summary(read_views(source, lambda x: classify(x)))}
        for mode, keep in (("plain", False), ("keep-views", True)):
            target = args.out / mode / name
            apply_to_paths(pipe, [source], target, keep_views=keep)
            entry[mode] = summary(read_views(target, read_b))

            def translate(image, keep=keep, views=None):
                return (translate_keeping_views(pipe, image, views)[0] if keep else
                        pipe(image, output_type="pt").images[0])

            errors = []
            for sample in find_samples(source):
                image, views = sample.image_tensor(), sample.views()
                view = views[-1]
                errors.append(float((view.view_image(translate(image, views=views)) -
                                     translate(view.view_image(image), views=views)).abs().max()))
            entry[mode]["equivariance_error_max"] = max(errors)
        results["pairs"][name] = entry
        print(name, json.dumps(entry), flush=True)
    totals = {}
    for mode in ("source (digit judge, domain A)", "plain", "keep-views"):
        rows = [results["pairs"][n][mode] for n, *_ in PAIRS]
        count = sum(r["n_samples"] for r in rows)
        totals[mode] = {"views_right": sum(r["views_right"] * r["n_samples"] for r in rows) / count,
                        "samples_all_right": sum(r["samples_all_right"] * r["n_samples"] for r in rows) / count,
                        "n_samples": count}
    results["all"] = totals
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = ["| translation | views read as their digit | anagrams with every view right | max equivariance error |",
             "|---|---|---|---|"]
    for mode in ("source (digit judge, domain A)", "plain", "keep-views"):
        t = totals[mode]
        error = max((results["pairs"][n][mode].get("equivariance_error_max", float("nan")) for n, *_ in PAIRS),
                    default=float("nan")) if mode != "source (digit judge, domain A)" else float("nan")
        lines.append(f"| {mode} | {t['views_right']:.3f} | {t['samples_all_right']:.3f} | "
                     f"{'-' if error != error else f'{error:.2g}'} |")
    text = "\n".join(lines) + f"\n\n{totals['plain']['n_samples']} anagrams ({args.samples} per pair: " + \
        ", ".join(n for n, *_ in PAIRS) + f"); domain-B reader: {reader_name}; translator: {args.model}."
    (args.out / "table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
