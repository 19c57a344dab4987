"""`anagram evaluate DIR`: the Visual Anagrams metrics over every sample of an output folder.

Each sample is read back through `anagram.outputs.records`, rendered under each of its views and
judged (`anagram.evaluation.judges`). Per-sample values go to ``DIR/metrics.csv`` (its ``judge``
column names the judge); the summary (mean, 0.9 and 0.95 quantiles, success rate) is returned, for
the command to print. A sample the judge cannot score (a prompt naming no digit, for a digit
judge) is left out and listed in the summary's ``skipped``; only a folder of which nothing can be
scored is an error.

A judge that can tell concept segregation (the glyph judge, :mod:`anagram.testbed.segregation`)
adds per sample ``segregated`` and ``regions`` (separate pieces of ink, specks left out) and the
summary's ``segregation_rate``.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import torch

from ..outputs.atomic import atomic_write_bytes
from ..outputs.records import METRICS_FILE, RecordError, find_samples
from .judges import make_judge
from .metrics import alignment, concealment, success, summarize


def evaluate_folder(out_dir: str | Path, judge: str = "auto") -> dict[str, Any]:
    """Score every sample in `out_dir`, write ``metrics.csv`` (atomically) and return the summary."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise FileNotFoundError(f"no such output folder: {out_dir}")
    try:
        samples = find_samples(out_dir)
    except RecordError:
        raise FileNotFoundError(f"{out_dir} holds no samples (no JSON sidecars written by `anagram generate`)") from None
    judge_fn = make_judge(judge, {sample.record.model_name for sample in samples},
                          [sample.record.model for sample in samples])
    rows, skipped = [], []
    with torch.no_grad():
        for sample in samples:
            record, image = sample.record, sample.image_tensor()
            views = torch.stack([view.view_image(image) for view in sample.views()])
            try:
                judged = judge_fn(views, record.full_prompts)
            except ValueError as error:  # e.g. a prompt that names no digit: the judge cannot score it
                skipped.append({"stem": sample.stem, "reason": str(error)})
                continue
            c = concealment(judged["logits"])
            # the judge named on every row: a csv read apart from its summary still says who judged it
            row = {"stem": sample.stem, "judge": judge_fn.name, "seed": record.seed, "model": record.model_name,
                   "method": json.dumps(record.method) if isinstance(record.method, dict) else record.method,
                   "views": "|".join(v["name"] for v in record.views), "prompts": "|".join(record.prompts),
                   "alignment": alignment(judged["scores"]).item(), "concealment_row": c["row"].item(),
                   "concealment_column": c["column"].item(), "concealment": c["mean"].item(),
                   "success": bool(success(judged["predicted"], judged["targets"]))}
            if hasattr(judge_fn, "segregation"):
                verdict = judge_fn.segregation(image, sample.views(), record.full_prompts)
                row.update({"segregated": bool(verdict.segregated), "regions": verdict.regions})
            row.update({f"score_view{i}": judged["scores"][i, i].item() for i in range(len(views))})
            rows.append(row)
    if not rows:
        reasons = "; ".join(f"{s['stem']}: {s['reason']}" for s in skipped[:3])
        raise ValueError(f"the judge {judge_fn.name} could score none of the {len(samples)} samples in {out_dir} "
                         f"({reasons})")
    write_rows(out_dir / METRICS_FILE, rows)
    return summary(rows, judge_fn.name, skipped)


def summary(rows: list[dict], judge_name: str, skipped: list[dict] | None = None) -> dict[str, Any]:
    """Means and quantiles of `rows`; ``skipped`` lists the samples the judge could not score
    (``{"stem", "reason"}``), which the numbers leave out."""
    result: dict[str, Any] = {"judge": judge_name, "samples": len(rows),
                              "success_rate": sum(r["success"] for r in rows) / len(rows),
                              "skipped": list(skipped or [])}
    if rows and all("segregated" in r for r in rows):
        result["segregation_rate"] = sum(bool(r["segregated"]) for r in rows) / len(rows)
    for key in ("alignment", "concealment", "concealment_row", "concealment_column"):
        result[key] = summarize(torch.tensor([r[key] for r in rows]))
    return result


def write_rows(path: Path, rows: list[dict]) -> None:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(path, buffer.getvalue().encode())
