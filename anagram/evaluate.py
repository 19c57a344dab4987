"""`anagram evaluate DIR`: the Visual Anagrams metrics over every sample of an output folder.

Each sample is read back from its PNG and JSON sidecar, rendered under each of its views and judged:
by the digit classifier for the built-in digits model (the testbed), or by a CLIP model (hub id or
folder) for real models. Per-sample values go to ``DIR/metrics.csv``; the summary (mean, 0.9 and
0.95 quantiles, success rate) is returned and printed by the command.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .io import atomic_write_bytes
from .metrics import alignment, concealment, success, summarize
from .views import parse_view

METRICS_FILE = "metrics.csv"


def load_samples(out_dir: str | Path) -> list[tuple[str, dict, torch.Tensor]]:
    """``(stem, record, image (C, H, W) in [0, 1])`` for every complete sample (its JSON is written last)."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise FileNotFoundError(f"no such output folder: {out_dir}")
    samples = []
    for record_path in sorted(out_dir.glob("*.json")):
        record = json.loads(record_path.read_text())
        if "files" not in record or "views" not in record:
            continue  # not a sample sidecar (manifest, summary...)
        image = np.asarray(Image.open(out_dir / record["files"]["image"]), dtype=np.float32) / 255.0
        tensor = torch.from_numpy(image[..., None] if image.ndim == 2 else image).permute(2, 0, 1)
        samples.append((record_path.stem, record, tensor))
    if not samples:
        raise FileNotFoundError(f"{out_dir} holds no samples (no JSON sidecars written by `anagram generate`)")
    return samples


class DigitJudge:
    name = "digits"

    def __call__(self, views: torch.Tensor, prompts: list[str]) -> dict[str, torch.Tensor]:
        from .testbed.judge import digit_score_matrix

        return digit_score_matrix(views, prompts)


class CLIPJudge:
    """``S[i, j]`` = CLIP cosine similarity of view i with prompt j; logits ``S / tau``."""

    def __init__(self, model: str):
        from .scorers import CLIPScorer

        self.name = f"clip:{model}"
        self.clip = CLIPScorer(model)

    def __call__(self, views: torch.Tensor, prompts: list[str]) -> dict[str, torch.Tensor]:
        images = self.clip.image_embeddings(views * 2 - 1)
        texts = self.clip.text_embeddings(prompts).to(images.device)
        scores = (images @ texts.T).cpu()
        logits = scores * self.clip.model.logit_scale.exp().float().cpu()
        return {"scores": scores, "logits": logits, "predicted": logits.argmax(-1),
                "targets": torch.arange(len(prompts))}


def make_judge(judge: str, records: list[dict]):
    if judge == "auto":
        models = {r["model"]["model"] for r in records}
        if models == {"digits"}:
            return DigitJudge()
        raise ValueError(f"samples of {sorted(models)}: pass --judge clip:<CLIP id or folder> "
                         "(only the built-in digits model has an automatic judge)")
    if judge == "digits":
        return DigitJudge()
    if judge.startswith("clip:") and judge[5:]:
        return CLIPJudge(judge[5:])
    raise ValueError(f"unknown judge {judge!r}: use auto, digits or clip:<id or folder>")


def evaluate_folder(out_dir: str | Path, judge: str = "auto") -> dict[str, Any]:
    """Score every sample in `out_dir`, write ``metrics.csv`` (atomically) and return the summary."""
    samples = load_samples(out_dir)
    judge_fn = make_judge(judge, [record for _, record, _ in samples])
    rows = []
    with torch.no_grad():
        for stem, record, image in samples:
            views = torch.stack([parse_view(c).view_image(image) for c in record["views"]])
            judged = judge_fn(views, record["full_prompts"])
            c = concealment(judged["logits"])
            row = {"stem": stem, "seed": record["seed"], "model": record["model"]["model"],
                   "method": json.dumps(record["method"]) if isinstance(record["method"], dict) else record["method"],
                   "views": "|".join(v["name"] for v in record["views"]), "prompts": "|".join(record["prompts"]),
                   "alignment": alignment(judged["scores"]).item(), "concealment_row": c["row"].item(),
                   "concealment_column": c["column"].item(), "concealment": c["mean"].item(),
                   "success": bool(success(judged["predicted"], judged["targets"]))}
            row.update({f"score_view{i}": judged["scores"][i, i].item() for i in range(len(views))})
            rows.append(row)
    write_rows(Path(out_dir) / METRICS_FILE, rows)
    return summary(rows, judge_fn.name)


def summary(rows: list[dict], judge_name: str) -> dict[str, Any]:
    result: dict[str, Any] = {"judge": judge_name, "samples": len(rows),
                              "success_rate": sum(r["success"] for r in rows) / len(rows)}
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
