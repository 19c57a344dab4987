"""The MCDUT ablation on the offline task ``digits-to-typeset``: what each component buys over CUT.

    flock /tmp/anagram-train.lock nice -n 5 .venv/bin/python benchmarks/translate_quality.py --out runs/quality
    .venv/bin/python benchmarks/translate_quality.py --out runs/quality --evaluate-only     # re-measure, no training

Rows (each a switch of `TranslationConfig` on the task's recipe, `digits_task.TASK_OVERRIDES`):
CUT; CUT + the same number of random extra negatives (the multi-crop control); CUT + multi-crop;
CUT + domain consistency with a trained shared head; CUT + domain consistency with two fixed random
heads (the released code's choice); CUT + DCA; full MCDUT (multi-crop + trained-head DC + DCA).
Each row is trained from ``--seeds`` seeds (the networks' initialisation and every draw of the
run), seed-major (every row's seed 0 first), so a cut-short run still has whole seeds.

Budget per run: the task recipe's one epoch of 360 iterations at batch 4 (1,440 source images,
1437 in the train split), learning rate 1e-3 decaying linearly to 0, generator ngf 16 with 4
residual blocks, 32x32 grayscale; one torch thread (under the shared machine's load one thread
ran an iteration 3x faster than two). The final checkpoint is measured
(`anagram.translate.task_evaluation`): content accuracy, FID / KID in the domain classifier's
features, and the rate at which the domain classifier takes G(a) for typeset.

Each finished run is appended to ``OUT/results.jsonl`` and skipped when the script is run again,
so an interrupted ablation resumes; with ``--claim`` several single-thread processes share the
work (on the shared 2-core machine one thread ran an iteration about 3x faster than two, so two
one-thread processes use the two cores better than one two-thread process). The table (mean +- standard error over seeds) is printed and written
to ``OUT/table.md``. ``--epochs N`` trains a longer budget (the same schedule stretched over N
epochs; give it its own ``--out``).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from anagram.translate.digits_task import load_task, task_config  # noqa: E402

ROWS: dict[str, tuple[str, dict]] = {
    "cut": ("cut", {}),
    "cut + extra negatives": ("cut", {"extra_negatives": True}),
    "cut + multi-crop": ("cut", {"multi_crop": True}),
    "cut + DC (trained head)": ("cut", {"domain_consistency": True, "dc_head": "shared"}),
    "cut + DC (fixed random heads)": ("cut", {"domain_consistency": True, "dc_head": "random_pair"}),
    "cut + DCA": ("cut", {"dca": True}),
    "mcdut": ("mcdut", {}),
}
METRICS = (("content_accuracy", "content", 3), ("fid", "FID", 2), ("kid_mean", "KID", 4),
           ("domain_rate", "taken for B", 3), ("train_seconds", "train s", 0))


def slug(row: str, seed: int) -> str:
    return re.sub("-+", "-", "".join(c if c.isalnum() else "-" for c in row)).strip("-") + f"-s{seed}"


def row_config(row: str, seed: int, epochs: int = 1):
    """The row's config on the task recipe; ``epochs`` > 1 stretches the schedule (the learning rate
    still decays linearly from 1e-3 to 0, now over ``epochs`` epochs)."""
    name, overrides = ROWS[row]
    budget = {} if epochs == 1 else {"n_epochs": 0, "n_epochs_decay": epochs}
    return task_config(name, seed=seed, **overrides, **budget)


def train_run(row: str, seed: int, out: Path, max_steps: int | None, epochs: int = 1) -> float:
    from anagram.translate.trainer import TrainOptions, train

    task = load_task()
    config = row_config(row, seed, epochs)
    run = out / slug(row, seed)
    if run.exists():
        shutil.rmtree(run)  # a run cut short by a kill: start it again
    started = time.perf_counter()
    train(task.train_a, task.train_b, config,
          TrainOptions(out=run, max_steps=max_steps, log_every=20, sample_every=10**9, checkpoint_every=10**9,
                       keep_checkpoints=1, cpu=True))
    return time.perf_counter() - started


def evaluate_run(run: Path) -> dict:
    from anagram.translate.apply import load_translator
    from anagram.translate.task_evaluation import evaluate_task, pipeline_translator

    return evaluate_task(pipeline_translator(load_translator(run))).to_dict()


def run_record(row: str, seed: int, epochs: int, seconds: float, report: dict) -> dict:
    """One line of ``results.jsonl``: the run (its training seed) and its measurements. The report's own
    ``seed`` (KID's subset draws) is kept as ``eval_seed``: it must not overwrite the training seed."""
    measured = {("eval_seed" if key == "seed" else key): value for key, value in report.items()}
    return {**measured, "row": row, "seed": seed, "epochs": epochs, "train_seconds": seconds}


def table(results: list[dict], seeds: int) -> str:
    lines = ["| configuration | runs | " + " | ".join(label for _, label, _ in METRICS) + " |",
             "|---|---|" + "---|" * len(METRICS)]
    for row in ROWS:
        runs = [r for r in results if r["row"] == row]
        if not runs:
            continue
        cells = []
        for key, _, digits in METRICS:
            values = [r[key] for r in runs]
            mean = statistics.fmean(values)
            spread = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else float("nan")
            cells.append(f"{mean:.{digits}f} +- {spread:.{digits}f}" if len(values) > 1 else f"{mean:.{digits}f}")
        lines.append(f"| {row} | {len(runs)}/{seeds} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "translate_quality")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated row names (default: all)")
    parser.add_argument("--max-steps", type=int, default=None, help="stop each run early (default: the full epoch)")
    parser.add_argument("--epochs", type=int, default=1, help="a longer budget: the schedule over this many epochs "
                        "(give it its own --out)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--evaluate-only", action="store_true", help="re-measure the finished runs, train nothing")
    parser.add_argument("--table-only", action="store_true", help="print the table of the finished runs")
    parser.add_argument("--claim", action="store_true", help="several processes share OUT: each run is claimed "
                        "(OUT/<run>.claim) by the first process that reaches it")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; rows: {list(ROWS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "results.jsonl"
    done = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
    if args.table_only:
        pass
    elif args.evaluate_only:
        fresh = []
        for record in done:
            report = evaluate_run(args.out / slug(record["row"], record["seed"]))
            fresh.append(run_record(record["row"], record["seed"], record.get("epochs", 1), record["train_seconds"],
                                    report))
            print(f"{record['row']} seed {record['seed']}: content {report['content_accuracy']:.3f} "
                  f"FID {report['fid']:.2f} taken-for-B {report['domain_rate']:.3f}", flush=True)
        done = fresh
        log.write_text("".join(json.dumps(r) + "\n" for r in done))
    else:
        for seed in range(args.seeds):
            for row in rows:
                if any(r["row"] == row and r["seed"] == seed for r in done):
                    continue
                if args.claim:
                    try:
                        (args.out / f"{slug(row, seed)}.claim").mkdir()
                    except FileExistsError:
                        continue
                seconds = train_run(row, seed, args.out, args.max_steps, args.epochs)
                record = run_record(row, seed, args.epochs, round(seconds, 1), evaluate_run(args.out / slug(row, seed)))
                done.append(record)
                with open(log, "a") as handle:
                    handle.write(json.dumps(record) + "\n")
                print(f"{row} seed {seed}: {seconds:.0f} s, content {record['content_accuracy']:.3f} "
                      f"FID {record['fid']:.2f} KID {record['kid_mean']:.4f} "
                      f"taken-for-B {record['domain_rate']:.3f}", flush=True)
    if args.claim or args.table_only:  # the other processes' runs too
        done = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
    text = table(done, args.seeds)
    if done:
        first = done[0]
        text += (f"\n\nbaselines (untranslated handwritten test digits): content {first['content_accuracy_source']:.3f}, "
                 f"FID {first['fid_source']:.2f}, KID {first['kid_source_mean']:.4f}, taken for B "
                 f"{first['domain_rate_source']:.3f}; real typeset test digits: content "
                 f"{first['content_accuracy_real_b']:.3f}, taken for B {first['domain_rate_real_b']:.3f}. "
                 f"Content reader: {first['content_reader']}; features: {first['features']}.")
    (args.out / "table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
