"""Train what the ``digits-to-typeset`` task ships: its measuring networks and the ``typeset`` translator.

From the repository root, under the shared machine's training lock::

    flock /tmp/anagram-train.lock nice -n 5 .venv/bin/python scripts/train_typeset_translator.py --measures
    flock /tmp/anagram-train.lock nice -n 5 .venv/bin/python scripts/train_typeset_translator.py --translator

``--measures`` writes ``anagram/models/typeset_domain``, the realism network (typeset vs not
typeset: real handwritten digits and hard negatives made from real train images, sharp-stroked
handwriting and warped renders; the features of FID/KID and the "taken for typeset" rate); ``--digit-reader`` writes
``anagram/models/typeset_digit_classifier``, the content reader used only when the glyph judge
(``anagram/models/glyph_judge``) is not installed. ``--translator`` trains `SHIPPED` (the
configuration the ablation supports, `benchmarks/translate_quality.py`) on the task's train split
and copies the final model into ``anagram/models/typeset`` (``anagram translate apply typeset ...``),
with its measurements in ``evaluation.json``. ``--from-run RUN`` copies a finished run of exactly
that configuration instead of training it again (the run is a function of its config and seed).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from anagram.testbed import MODELS_DIR  # noqa: E402
from anagram.translate.digits_task import load_task, task_config  # noqa: E402

SHIPPED_DIR = MODELS_DIR / "typeset"
#: The shipped translator's recipe: (preset, overrides on the task recipe). Chosen from the ablation
#: (`benchmarks/translate_quality.py`): cut + multi-crop keeps the digit best (content 0.534 +- 0.019 s.e.
#: over 3 seeds at one epoch, against mcdut's 0.461 +- 0.105), and four epochs kept it worse for every
#: configuration tried. Seed 0 by rule (not the best seed on the test split).
SHIPPED = ("cut", {"multi_crop": True, "seed": 0})


def shipped_config():
    name, overrides = SHIPPED
    return task_config(name, **overrides)


def ship(run: Path, seconds: float | None, trained_by: str) -> Path:
    from anagram.outputs.atomic import write_json
    from anagram.testbed.trainer import replace_folder
    from anagram.translate.apply import load_translator
    from anagram.translate.config import TranslationConfig
    from anagram.translate.task_evaluation import evaluate_task, pipeline_translator

    pipe = load_translator(run)
    config = TranslationConfig.from_dict(pipe.record["config"])
    differences = config.differences(shipped_config())
    if differences:
        raise SystemExit(f"{run} is not a run of the shipped configuration: {differences}")
    if pipe.record.get("step") != pipe.record.get("total_steps"):
        raise SystemExit(f"{run} did not finish its schedule ({pipe.record.get('step')}/{pipe.record.get('total_steps')})")
    report = evaluate_task(pipeline_translator(pipe))
    staging = Path(tempfile.mkdtemp(prefix=".typeset.tmp.", dir=SHIPPED_DIR.parent))
    shutil.rmtree(staging)
    shutil.copytree(Path(pipe.model_folder), staging)
    write_json(staging / "evaluation.json", {**report.to_dict(), "train_seconds": seconds,
                                             "trained_by": trained_by})
    replace_folder(staging, SHIPPED_DIR)
    print("\n".join(report.lines()))
    return SHIPPED_DIR


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--measures", action="store_true", help="train the realism network (domain classifier)")
    parser.add_argument("--digit-reader", action="store_true", help="train the fallback content reader (used only "
                        "when the glyph judge is not installed)")
    parser.add_argument("--translator", action="store_true", help="train the shipped translator")
    parser.add_argument("--from-run", type=Path, help="ship this finished run of the shipped configuration")
    parser.add_argument("--run", type=Path, default=ROOT / "runs" / "typeset_translator")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.measures:
        from anagram.translate.task_evaluation import train_domain_classifier

        accuracy = train_domain_classifier()[1]
        print("realism network, held-out accuracy: " + ", ".join(f"{k} {v:.3f}" for k, v in accuracy.items()),
              flush=True)
    if args.digit_reader:
        from anagram.translate.task_evaluation import train_typeset_digit_classifier

        print("typeset-digit classifier, test accuracy", train_typeset_digit_classifier()[1], flush=True)
    if args.from_run:
        shipped = ship(args.from_run, None, "benchmarks/translate_quality.py (the same config and seed), copied by "
                       "python scripts/train_typeset_translator.py --from-run RUN")
        print(f"wrote {shipped}")
    elif args.translator:
        from anagram.translate.trainer import TrainOptions, train

        task = load_task()
        if args.run.exists():
            shutil.rmtree(args.run)
        started = time.perf_counter()
        train(task.train_a, task.train_b, shipped_config(),
              TrainOptions(out=args.run, log_every=20, sample_every=120, checkpoint_every=10**9, cpu=True))
        shipped = ship(args.run, round(time.perf_counter() - started, 1),
                       "python scripts/train_typeset_translator.py --translator")
        print(f"wrote {shipped}")


if __name__ == "__main__":
    main()
