"""A picture of glyph anagrams made by `anagram generate --model glyphs`, with the glyph judge's verdicts.

Reads output folders that `anagram evaluate` has judged (their ``metrics.csv``) and lays out every
sample's views strip, one row per prompt pair and one block of columns per folder (method), with
what the judge read in each view and whether the sample is a success (every view read as its
prompt) or segregated. It draws what the folders hold and measures nothing itself.

    P="--model glyphs -n 4"
    anagram generate "a letter b" "a letter q" --views identity,rotate_180 $P --out runs/ga/baseline
    anagram generate "a letter n" "a letter u" --views identity,rotate_180 $P --out runs/ga/baseline
    anagram generate "a letter b" "a letter p" --views identity,flip $P --out runs/ga/baseline
    anagram generate "a letter a" "a letter e" --views identity,rotate_180 $P --out runs/ga/baseline
    (the same with --method mtl --out runs/ga/mtl)
    anagram evaluate runs/ga/baseline && anagram evaluate runs/ga/mtl
    python benchmarks/glyph_anagrams.py runs/ga/baseline runs/ga/mtl --out docs/screenshots/glyph_anagrams.png
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import torch

from anagram.outputs.records import find_samples
from anagram.testbed.glyph_judge import glyph_probabilities
from anagram.testbed.glyphs import CLASSES


def reads(sample) -> list[str]:
    image = sample.image_tensor()
    views = torch.stack([v.view_image(image) for v in sample.views()])
    return [CLASSES[int(c)] for c in glyph_probabilities(views, value_range=(0.0, 1.0)).argmax(-1)]


def main(argv: list[str] | None = None) -> int:
    from PIL import Image, ImageDraw

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folders", nargs="+", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--scale", type=int, default=3)
    a = p.parse_args(argv)
    blocks = []  # per folder: {prompts: [(sample, metrics row)]}
    for folder in a.folders:
        rows = {r["stem"]: r for r in csv.DictReader(open(folder / "metrics.csv"))}
        by_pair: dict[tuple, list] = {}
        for s in find_samples(folder):
            by_pair.setdefault((tuple(s.record.prompts), tuple(v["name"] for v in s.record.views)), []).append(
                (s, rows.get(s.stem)))
        blocks.append(by_pair)
    pairs = list(dict.fromkeys(k for b in blocks for k in b))
    per = max(len(v) for b in blocks for v in b.values())
    size = 32 * a.scale
    cell_w, cell_h, pad, head = 2 * size + 6, size + 30, 6, 20
    label_w = 150
    width = label_w + len(blocks) * (per * (cell_w + pad) + 3 * pad)
    canvas = Image.new("RGB", (width, head + len(pairs) * (cell_h + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for j, folder in enumerate(a.folders):
        draw.text((label_w + j * (per * (cell_w + pad) + 3 * pad), 4), folder.name, fill="black")
    lines = []
    for i, key in enumerate(pairs):
        top = head + i * (cell_h + pad)
        prompts, views = key
        draw.text((4, top + 10), " / ".join(q.split()[-1] for q in prompts), fill="black")
        draw.text((4, top + 26), ",".join(views), fill=(90, 90, 90))
        for j, block in enumerate(blocks):
            left0 = label_w + j * (per * (cell_w + pad) + 3 * pad)
            for k, (s, row) in enumerate(block.get(key, [])):
                left = left0 + k * (cell_w + pad)
                image = s.image_tensor()
                for v, view in enumerate(s.views()):
                    arr = (view.view_image(image)[0] * 255).round().byte().numpy()
                    tile = Image.fromarray(arr, "L").resize((size, size), Image.NEAREST).convert("RGB")
                    canvas.paste(tile, (left + v * (size + 6), top))
                read = reads(s)
                ok = row is not None and row["success"] == "True"
                seg = row is not None and row.get("segregated") == "True"
                colour = (20, 140, 40) if ok else (200, 30, 30)
                draw.text((left, top + size + 2), f"read {'/'.join(read)}" + ("  SEG" if seg else ""), fill=colour)
                lines.append(f"{folder_name(a.folders[j])} {'/'.join(q.split()[-1] for q in prompts)} "
                             f"{','.join(views)} seed {s.record.seed}: read {'/'.join(read)} success {ok} "
                             f"segregated {seg}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(a.out)
    print("\n".join(lines))
    print(f"wrote {a.out}")
    return 0


def folder_name(folder: Path) -> str:
    return folder.name


if __name__ == "__main__":
    sys.exit(main())
