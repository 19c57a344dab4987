"""The README picture of the shipped translator: handwritten test digits (top) and their typeset
translations (bottom), with unpaired real typeset digits below for reference.

    .venv/bin/python scripts/translate_picture.py --out docs/images/translate_typeset.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> None:
    from anagram.outputs.atomic import write_png
    from anagram.translate.apply import load_translator
    from anagram.translate.data import tensor_to_image
    from anagram.translate.digits_task import load_task

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "translate_typeset.png")
    parser.add_argument("--model", default="typeset")
    parser.add_argument("--count", type=int, default=16)
    parser.add_argument("--scale", type=int, default=3)
    args = parser.parse_args(argv)
    task = load_task()
    pipe = load_translator(args.model)
    x = task.test_a.images[: args.count]
    y = pipe((x + 1) / 2, output_type="pt").images * 2 - 1
    b = task.test_b.images(range(args.count))
    gap = torch.full((1, 4, 32 * args.count + 2 * (args.count - 1)), -0.6)

    def row(images):
        cells = []
        for i, image in enumerate(images):
            cells.append(image)
            if i < len(images) - 1:
                cells.append(torch.full((1, 32, 2), -0.6))
        return torch.cat(cells, dim=-1)

    grid = torch.cat([row(x), gap, row(y), gap, gap, row(b)], dim=-2)
    picture = tensor_to_image(grid)
    picture = picture.resize((picture.width * args.scale, picture.height * args.scale), 0)
    write_png(args.out, picture, {"kind": "translate-picture", "rows": ["handwritten test digits", "translated by "
              f"{args.model}", "real typeset test digits (unpaired)"]})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
