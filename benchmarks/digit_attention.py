"""How much cross-attention the digit model puts on the digit token (the concept token).

Anti-segregation pulls together the cross-attention maps of the concept tokens of the views, so
it is only meaningful if the model actually attends to the concept. This script installs a
probing attention processor (the training script's) on every ``attn2`` (cross-attention) module of the UNet, samples
digits with the shipped scheduler and guidance, and reports the share of the attention
probability mass that lands on the digit token, for the conditional branch, averaged over
heads, pixels, layers, denoising steps and samples, next to the other tokens (BOS, filler words,
EOS/padding), and where the digit token is attended (on the final image's ink or background).
With ``T`` tokens a uniform spread would give ``1/T`` per token.

    python benchmarks/digit_attention.py                      # 10 samples per digit, default settings
    python benchmarks/digit_attention.py --template "the number {}" --per-digit 5
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from anagram.testbed import DIGIT_NUMERALS, DIGIT_WORDS, DIGITS_MODEL_DIR  # noqa: E402
from anagram.testbed.train_digits import install_share_probes, load_model, sample  # noqa: E402


def install_probes(unet) -> tuple[list, int]:
    """The training-time probes (`install_share_probes`) on every ``attn2`` module: each UNet call
    appends one ``(B, pixels, T)`` head-averaged map per layer, always in the same layer order.
    Returns the list they fill and the number of layers."""
    return install_share_probes(unet), sum(".attn2." in name for name in unet.attn_processors)


def measure(model, template: str, per_digit: int, guidance: float | None, seed: int = 0) -> dict:
    sink, num_layers = install_probes(model.unet)
    digits = [d for d in range(10) for _ in range(per_digit)]
    prompts = [template.format(DIGIT_NUMERALS[d] if i % 2 else DIGIT_WORDS[d]) for i, d in enumerate(digits)]
    ids = model.tokenizer(prompts, padding="max_length", max_length=model.tokenizer.model_max_length,
                          truncation=True, return_tensors="pt").input_ids
    eos = model.tokenizer.eos_token_id
    first_eos = (ids == eos).int().argmax(dim=1)
    digit_pos = first_eos - 1  # the last word is one token (every digit word/numeral is)
    images = sample(model, prompts, guidance, None, torch.Generator().manual_seed(seed))
    b = len(prompts)
    # per layer, the conditional half of the CFG batch, averaged over steps: (b, pixels, T)
    maps = {layer: torch.stack([p[b:] for p in sink[layer::num_layers]]).mean(0) for layer in range(num_layers)}
    layers = {key: m.mean(1) for key, m in maps.items()}  # (b, T), averaged over pixels
    mass = torch.stack(list(layers.values())).mean(0)  # averaged over layers
    rows = torch.arange(b)
    # where the digit token is attended: on the ink of the final image vs on the background
    ink, bg = [], []
    for m in maps.values():
        r = int(m.shape[1]**0.5)
        digit_map = m[rows, :, digit_pos]  # (b, pixels)
        mask = torch.nn.functional.adaptive_avg_pool2d(images, r).flatten(1) > 0.0
        ink.append((digit_map * mask).sum() / mask.sum().clamp(min=1))
        bg.append((digit_map * ~mask).sum() / (~mask).sum().clamp(min=1))
    pos = torch.arange(ids.shape[1]).expand(b, -1)
    digit = mass[rows, digit_pos]
    bos = mass[:, 0]
    fill_mask = (pos > 0) & (pos < digit_pos[:, None])
    eos_mask = pos > digit_pos[:, None]
    by_res = defaultdict(list)
    for layer, m in layers.items():
        by_res[int(maps[layer].shape[1]**0.5)].append(m[rows, digit_pos].mean())
    return {
        "digit": float(digit.mean()),
        "bos": float(bos.mean()),
        "filler": float((mass * fill_mask).sum(1).mean()),
        "eos_pad": float((mass * eos_mask).sum(1).mean()),
        "tokens": ids.shape[1],
        "digit_min": float(digit.min()),
        "by_resolution": {f"{r}x{r}": float(torch.stack(v).mean()) for r, v in sorted(by_res.items())},
        "layers": len(layers),
        "digit_on_ink": float(torch.stack(ink).mean()),
        "digit_on_background": float(torch.stack(bg).mean()),
    }


@torch.no_grad()
def specificity(model, timestep: int = 400, per_digit: int = 4, seed: int = 0) -> dict:
    """Is the digit token's map specific to the digit? Test images of digit ``a``, noised to
    ``timestep``, are run through the UNet once with the prompt of ``a`` and once with the prompt
    of another digit; returns the digit-token share on the image's ink / background for both."""
    from anagram.testbed.data import load_split

    sink, _ = install_probes(model.unet)
    split = load_split(model.unet.config.sample_size)
    idx = torch.cat([(split.test_labels == d).nonzero()[:per_digit, 0] for d in range(10)])
    x0, labels = split.test_images[idx], split.test_labels[idx]
    other = (labels + 1 + torch.arange(len(labels)) % 9) % 10  # a different digit for each image
    gen = torch.Generator().manual_seed(seed)
    a = model.scheduler.alphas_cumprod[timestep]
    xt = a.sqrt() * x0 + (1 - a).sqrt() * torch.randn(x0.shape, generator=gen)
    template = model.defaults["prompt_template"]
    out = {}
    for name, digits in (("matching", labels), ("other digit", other)):
        prompts = [template.format(DIGIT_WORDS[int(d)]) for d in digits]
        ids = model.tokenizer(prompts, padding="max_length", max_length=model.tokenizer.model_max_length,
                              return_tensors="pt").input_ids
        pos = (ids == model.tokenizer.eos_token_id).int().argmax(dim=1) - 1
        emb = model.text_encoder(ids)[0]
        sink.clear()
        model.unet(xt, torch.full((len(xt),), timestep), encoder_hidden_states=emb)
        ink, bg = [], []
        rows = torch.arange(len(xt))
        for m in sink:
            r = int(m.shape[1]**0.5)
            dm = m[rows, :, pos]
            mask = torch.nn.functional.adaptive_avg_pool2d(x0, r).flatten(1) > 0.0
            ink.append((dm * mask).sum() / mask.sum())
            bg.append((dm * ~mask).sum() / (~mask).sum())
        out[name] = (float(torch.stack(ink).mean()), float(torch.stack(bg).mean()))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=DIGITS_MODEL_DIR)
    p.add_argument("--template", nargs="+", default=None, help="prompt templates (default: a few)")
    p.add_argument("--per-digit", type=int, default=4)
    p.add_argument("--guidance", type=float, default=None)
    a = p.parse_args(argv)
    model = load_model(a.model)
    templates = a.template or [model.defaults["prompt_template"], "the number {}", "{}", "a picture of the number {}"]
    print(f"share of cross-attention mass (conditional branch; mean over heads, pixels, layers, steps, "
          f"samples); uniform = 1/{model.tokenizer.model_max_length} = {1 / model.tokenizer.model_max_length:.3f}")
    print(f"{'template':<28} {'digit':>6} {'min':>6} {'BOS':>6} {'filler':>7} {'EOS/pad':>8} "
          f"{'ink':>6} {'bg':>6}  digit per resolution")
    for t in templates:
        r = measure(model, t, a.per_digit, a.guidance)
        res = " ".join(f"{k}:{v:.3f}" for k, v in r["by_resolution"].items())
        print(f"{t!r:<28} {r['digit']:>6.3f} {r['digit_min']:>6.3f} {r['bos']:>6.3f} {r['filler']:>7.3f} "
              f"{r['eos_pad']:>8.3f} {r['digit_on_ink']:>6.3f} {r['digit_on_background']:>6.3f}  {res}")
    print("digit: share on the digit token (min: the lowest sample); BOS / filler words / EOS+padding: "
          "summed shares; ink / bg: digit share on the pixels where the final image has ink / background")
    for t in (200, 500, 800, 950):
        spec = specificity(model, t)
        print(f"specificity at t={t} (test images of digit a, one UNet call): digit-token share on ink / "
              + "; ".join(f"{k}: {v[0]:.3f} / {v[1]:.3f}" for k, v in spec.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
