"""The glyph model's own quality: single-prompt samples judged by the glyph judge, their spread, and
where the concept token's cross-attention sits.

For every class (26 letters, 10 digits) ``--per-class`` samples (seeded) are drawn from the shipped
glyph model at its declared defaults (30 DDIM steps, guidance 3, prompts "a letter q" / "a digit
6": the ``prompt_template`` / ``digit_prompt_template`` of ``anagram_defaults.json``) with the
reference sampler (:func:`anagram.testbed.trainer.sample`, what the pipeline computes with one
identity view), and read by the glyph judge (:mod:`anagram.testbed.glyph_judge`, never a scorer).

Reported:

* **recognised**: share of samples whose judged class is the prompt's glyph, per class, overall and
  the worst class (target >= 0.97);
* **spread**: the ink box (pixels above mid-grey) of each sample, its centre and height as fractions
  of the canvas, next to the same of the training renders of the same classes;
* **attention on ink**: the concept token's cross-attention (the training script's probes on every
  ``attn2`` module, conditional branch, averaged over heads and layers) split by the final image's
  ink at the 8x8 resolution of the maps, at high (t >= 667), middle and low (t < 333) noise:
  the share of the token's mass that falls on ink against the ink's share of the pixels, and the
  mean per-pixel share on ink and on background;
* pictures: a grid of the samples (misread ones framed red) and the concept maps of a few samples
  at the three noise levels (they move with the glyph).

    python benchmarks/glyph_quality.py --per-class 16 --threads 2     # about 10-20 minutes on 2 cores
    python benchmarks/glyph_quality.py --per-class 2 --no-pictures   # a quick look
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from anagram.testbed import glyphs  # noqa: E402
from anagram.testbed.glyph_judge import glyph_probabilities  # noqa: E402
from anagram.testbed.trainer import (concept_positions, encode, install_share_probes, load_model,  # noqa: E402
                                     tokenize)

MODEL_DIR = Path(__file__).resolve().parents[1] / "anagram" / "models" / "glyphs"
SCREENSHOTS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
BANDS = (("high", 667, 1000), ("middle", 333, 667), ("low", 0, 333))


def prompt_of(glyph: str, defaults: dict) -> str:
    template = defaults["digit_prompt_template"] if glyph.isdigit() else defaults["prompt_template"]
    return template.format(glyph)


@torch.no_grad()
def sample_with_maps(model, prompts: list[str], seeds: list[int]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Samples ``(B, 1, H, W)`` in [-1, 1] (each from its own seed, as ``sample`` with a generator of that
    seed would draw) and the concept token's map per noise band ``{band: (B, r, r)}``, averaged over
    the steps in the band and the cross-attention layers."""
    original = dict(model.unet.attn_processors)
    sink = install_share_probes(model.unet)
    sched = copy.deepcopy(model.scheduler)
    sched.set_timesteps(model.defaults["num_inference_steps"])
    w = model.defaults["guidance_scale"]
    b = len(prompts)
    ids = tokenize(model.tokenizer, prompts)
    pos = concept_positions(ids, model.tokenizer.eos_token_id)
    cond = encode(model.text_encoder, model.tokenizer, prompts)
    uncond = encode(model.text_encoder, model.tokenizer, [model.defaults.get("negative_prompt", "")] * b)
    emb = torch.cat([uncond, cond])
    size = model.unet.config.sample_size
    x = torch.cat([torch.randn((1, 1, size, size), generator=torch.Generator().manual_seed(s)) for s in seeds])
    x = x * sched.init_noise_sigma
    rows = torch.arange(b)
    sums = {name: 0.0 for name, _, _ in BANDS}
    counts = {name: 0 for name, _, _ in BANDS}
    for t in sched.timesteps:
        sink.clear()
        inp = sched.scale_model_input(torch.cat([x, x]), t)
        eps_u, eps_c = model.unet(inp, t, encoder_hidden_states=emb).sample.chunk(2)
        x = sched.step(eps_u + w * (eps_c - eps_u), t, x).prev_sample
        r = min(int(round(m.shape[1] ** 0.5)) for m in sink)
        maps = []
        for m in sink:  # (2b, pixels, T): conditional rows, the concept token, at the coarsest resolution
            res = int(round(m.shape[1] ** 0.5))
            cm = m[b:][rows, :, pos].view(b, 1, res, res)
            maps.append(F.adaptive_avg_pool2d(cm, r) if res != r else cm)
        step_map = torch.stack(maps).mean(0)[:, 0]
        band = next(name for name, lo, hi in BANDS if lo <= int(t) < hi or (hi == 1000 and int(t) >= lo))
        sums[band] = sums[band] + step_map
        counts[band] += 1
    model.unet.set_attn_processor(original)
    return x.clamp(-1, 1), {k: sums[k] / max(1, counts[k]) for k in sums}


def ink_boxes(images: torch.Tensor) -> torch.Tensor:
    """Per image ``(cx, cy, height)`` of the ink box (pixels above mid-grey), fractions of the canvas."""
    out = []
    size = images.shape[-1]
    for im in images[:, 0]:
        ys, xs = torch.nonzero(im > 0.0, as_tuple=True)
        if len(ys) == 0:
            out.append((float("nan"),) * 3)
            continue
        out.append(((xs.min() + xs.max() + 1).item() / 2 / size, (ys.min() + ys.max() + 1).item() / 2 / size,
                    (ys.max() - ys.min() + 1).item() / size))
    return torch.tensor(out)


def spread(boxes: torch.Tensor) -> dict:
    ok = boxes[~boxes.isnan().any(1)]
    q = torch.quantile(ok, torch.tensor([0.05, 0.95]), dim=0)
    return {name: {"mean": round(float(ok[:, i].mean()), 3), "std": round(float(ok[:, i].std()), 3),
                   "q05": round(float(q[0, i]), 3), "q95": round(float(q[1, i]), 3)}
            for i, name in enumerate(("centre_x", "centre_y", "height"))}


def attention_on_ink(images: torch.Tensor, maps: dict[str, torch.Tensor]) -> dict:
    out = {}
    for band, m in maps.items():
        r = m.shape[-1]
        ink = (F.adaptive_avg_pool2d((images + 1) / 2, r)[:, 0] > 0.5).float()
        mass = m.flatten(1).sum(1)
        on_ink = (m * ink).flatten(1).sum(1) / mass.clamp_min(1e-12)
        ink_area = ink.flatten(1).mean(1)
        per_pixel_ink = (m * ink).sum() / ink.sum().clamp_min(1)
        per_pixel_bg = (m * (1 - ink)).sum() / (1 - ink).sum().clamp_min(1)
        out[band] = {"mass_on_ink": round(float(on_ink.mean()), 3), "ink_area": round(float(ink_area.mean()), 3),
                     "share_per_ink_pixel": round(float(per_pixel_ink), 3),
                     "share_per_background_pixel": round(float(per_pixel_bg), 3)}
    return out


def to_rgb(images01: torch.Tensor) -> torch.Tensor:
    return images01.expand(-1, 3, -1, -1).clone()


def grid_picture(images: torch.Tensor, labels: torch.Tensor, predicted: torch.Tensor, per_class: int,
                 path: Path, scale: int = 2) -> None:
    """Columns: classes; rows: seeds. Misread samples framed red, with the judged class written above."""
    from PIL import Image, ImageDraw

    n_classes = len(glyphs.CLASSES)
    size = images.shape[-1] * scale
    pad, head = 2, 14
    canvas = Image.new("RGB", (n_classes * (size + pad) + pad, head + per_class * (size + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    x01 = ((images + 1) / 2).clamp(0, 1)
    for i in range(len(images)):
        c, k = int(labels[i]), i % per_class
        left, top = pad + c * (size + pad), head + pad + k * (size + pad)
        tile = (x01[i, 0] * 255).round().byte().numpy()
        canvas.paste(Image.fromarray(tile, "L").resize((size, size), Image.NEAREST).convert("RGB"), (left, top))
        if int(predicted[i]) != c:
            draw.rectangle([left, top, left + size - 1, top + size - 1], outline=(230, 30, 30), width=2)
            draw.text((left + 2, top + 1), glyphs.CLASSES[int(predicted[i])], fill=(255, 80, 80))
    for c, g in enumerate(glyphs.CLASSES):
        draw.text((pad + c * (size + pad) + size // 2 - 3, 1), g, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)


def attention_picture(images: torch.Tensor, maps: dict[str, torch.Tensor], prompts: list[str], pick: list[int],
                      path: Path, scale: int = 4) -> None:
    """One row per picked sample: the sample, then the concept token's map at high / middle / low noise
    (8x8, bilinear, normalised per tile; black to yellow) with the glyph's outline in cyan."""
    from PIL import Image, ImageDraw

    size = images.shape[-1] * scale
    pad, head, label_w = 4, 16, 90
    cols = 1 + len(BANDS)
    canvas = Image.new("RGB", (label_w + cols * (size + pad) + pad, head + len(pick) * (size + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for j, title in enumerate(["sample"] + [f"{name} noise" for name, _, _ in BANDS]):
        draw.text((label_w + pad + j * (size + pad), 2), title, fill="black")
    x01 = ((images + 1) / 2).clamp(0, 1)
    for row, i in enumerate(pick):
        top = head + pad + row * (size + pad)
        draw.text((2, top + size // 2 - 6), prompts[i], fill="black")
        base = F.interpolate(x01[i: i + 1], size=(size, size), mode="nearest")
        mask = (base > 0.5).float()
        outline = (mask - (-F.max_pool2d(-mask, 3, 1, 1))).clamp(0, 1)[0, 0] > 0  # ink minus its erosion
        tiles = [base[0, 0].expand(3, -1, -1)]
        for name, _, _ in BANDS:
            m = maps[name][i: i + 1, None]
            m = F.interpolate(m, size=(size, size), mode="bilinear", align_corners=False)[0, 0]
            m = (m / m.max().clamp_min(1e-6)).clamp(0, 1)
            tile = torch.stack([m, m * m, 0.2 * m])
            tile[:, outline] = torch.tensor([0.0, 0.85, 1.0])[:, None]
            tiles.append(tile)
        for j, tile in enumerate(tiles):
            arr = (tile.permute(1, 2, 0) * 255).round().byte().numpy()
            canvas.paste(Image.fromarray(arr, "RGB"), (label_w + pad + j * (size + pad), top))
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=MODEL_DIR)
    p.add_argument("--per-class", type=int, default=16)
    p.add_argument("--seed", type=int, default=0, help="sample i (class-major order) uses seed + i")
    p.add_argument("--batch", type=int, default=96)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    p.add_argument("--pictures", type=Path, default=SCREENSHOTS)
    p.add_argument("--no-pictures", action="store_true")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    model = load_model(a.model)
    labels = torch.arange(len(glyphs.CLASSES)).repeat_interleave(a.per_class)
    prompts = [prompt_of(glyphs.CLASSES[int(c)], model.defaults) for c in labels]
    seeds = [a.seed + i for i in range(len(prompts))]
    t0 = time.time()
    chunks, band_maps = [], {name: [] for name, _, _ in BANDS}
    for i in range(0, len(prompts), a.batch):
        images, maps = sample_with_maps(model, prompts[i: i + a.batch], seeds[i: i + a.batch])
        chunks.append(images)
        for k, v in maps.items():
            band_maps[k].append(v)
        print(f"sampled {min(i + a.batch, len(prompts))}/{len(prompts)} ({time.time() - t0:.0f} s)", flush=True)
    images = torch.cat(chunks)
    maps = {k: torch.cat(v) for k, v in band_maps.items()}
    probs = glyph_probabilities(images)
    predicted = probs.argmax(-1)
    correct = predicted == labels
    per_class = {g: round(float(correct[labels == c].float().mean()), 3) for c, g in enumerate(glyphs.CLASSES)}
    worst = min(per_class, key=per_class.get)
    misreads: dict[str, int] = {}
    for t, q in zip(labels[~correct].tolist(), predicted[~correct].tolist()):
        key = f"{glyphs.CLASSES[t]}->{glyphs.CLASSES[q]}"
        misreads[key] = misreads.get(key, 0) + 1
    renders = glyphs.render_batch(labels, torch.Generator().manual_seed(a.seed)).images
    result = {
        "samples": len(images), "per_class": a.per_class, "steps": model.defaults["num_inference_steps"],
        "guidance": model.defaults["guidance_scale"], "seconds": round(time.time() - t0, 1),
        "recognised": round(float(correct.float().mean()), 4), "worst_class": [worst, per_class[worst]],
        "recognised_per_class": per_class,
        "misreads": dict(sorted(misreads.items(), key=lambda kv: -kv[1])),
        "spread_samples": spread(ink_boxes(images)), "spread_training_renders": spread(ink_boxes(renders)),
        "attention_on_ink": attention_on_ink(images, maps),
    }
    print(json.dumps(result, indent=1))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(result, indent=1) + "\n")
    if not a.no_pictures:
        grid_picture(images, labels, predicted, a.per_class, a.pictures / "glyph_samples.png")
        boxes = ink_boxes(images)
        pick, seen = [], []
        order = sorted(range(len(images)), key=lambda i: (i % a.per_class, i // a.per_class))  # across classes
        for i in order:  # samples whose glyphs sit in clearly different places
            if boxes[i].isnan().any() or not bool(correct[i]):
                continue
            if all(float((boxes[i, :2] - boxes[j, :2]).abs().max()) > 0.2 for j in seen):
                pick.append(i)
                seen.append(i)
            if len(pick) == 6:
                break
        attention_picture(images, maps, prompts, pick, a.pictures / "glyph_attention.png")
        print(f"wrote {a.pictures / 'glyph_samples.png'} and {a.pictures / 'glyph_attention.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
