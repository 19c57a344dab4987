"""Quality bar of the testbed's digit diffusion model: are its samples the prompted digits?

For each guidance scale, sample ``--per-digit`` images of every digit with the shipped DDIM
scheduler and default number of steps (prompts alternate between the word and the numeral form of
the default template: "a digit seven", "a digit 7"), classify them with the testbed's classifier and
report the share recognised as the prompt's digit (overall and for the worst digit). Also reports
the sampling speed (ms per image for a 30-step sample, CFG, batches of 32).

    python benchmarks/digits_quality.py                       # guidance 1 2 3 5 7.5, 20 per digit
    python benchmarks/digits_quality.py --guidance 3 --per-digit 50 --save /tmp/grid.png

The bar: >= 98% at the default guidance, >= 95% for every guidance in [1, 7.5].
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from anagram.testbed import CLASSIFIER_DIR, DIGIT_NUMERALS, DIGIT_WORDS, DIGITS_MODEL_DIR  # noqa: E402
from anagram.testbed.classifier import classify, load_classifier  # noqa: E402
from anagram.testbed.train_digits import load_model, sample  # noqa: E402


def prompts_for(digits: list[int], template: str) -> list[str]:
    return [template.format(DIGIT_NUMERALS[d] if i % 2 else DIGIT_WORDS[d]) for i, d in enumerate(digits)]


def pipeline_sample(pipe, prompt: str, n: int, guidance: float, steps: int, gen) -> torch.Tensor:
    """``n`` samples of one prompt with ``AnagramPipeline`` (one identity view), raw, in [-1, 1]."""
    out = pipe(prompt=prompt, views=["identity"], num_images_per_prompt=n, guidance_scale=guidance,
               num_inference_steps=steps, generator=gen, output_type="latent")
    return out.images.clamp(-1.0, 1.0)


def evaluate(model, clf, guidance: float, per_digit: int, steps: int | None, seed: int, batch: int = 100,
             pipe=None):
    template = model.defaults["prompt_template"]
    digits = [d for d in range(10) for _ in range(per_digit)]
    gen = torch.Generator().manual_seed(seed)
    imgs = []
    if pipe is None:
        for i in range(0, len(digits), batch):
            imgs.append(sample(model, prompts_for(digits[i : i + batch], template), guidance, steps, gen))
    else:
        steps = steps or model.defaults["num_inference_steps"]
        for d in range(10):
            words = prompts_for([d] * per_digit, template)
            for prompt in dict.fromkeys(words):
                imgs.append(pipeline_sample(pipe, prompt, words.count(prompt), guidance, steps, gen))
    images = torch.cat(imgs)
    pred = classify(images, clf).argmax(-1)
    labels = torch.tensor(digits)
    ok = (pred == labels).float()
    per = [float(ok[labels == d].mean()) for d in range(10)]
    return float(ok.mean()), per, images


def speed(model, n_steps: int = 30, batch: int = 32, repeats: int = 2) -> float:
    gen = torch.Generator().manual_seed(0)
    prompts = prompts_for([i % 10 for i in range(batch)], model.defaults["prompt_template"])
    sample(model, prompts[:2], None, 2, gen)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        sample(model, prompts, None, n_steps, gen)
        best = min(best, time.perf_counter() - t0)
    return best / batch * 1000.0


def load_pipeline(path: Path):
    """``anagram.AnagramPipeline.from_pretrained(path)`` and a message (None if it is unavailable)."""
    try:
        import anagram
    except Exception as exc:  # the package may be mid-development
        return None, f"import anagram failed: {type(exc).__name__}: {exc}"
    cls = getattr(anagram, "AnagramPipeline", None)
    if cls is None:
        return None, "anagram.AnagramPipeline not available"
    try:
        pipe = cls.from_pretrained(path)
    except Exception as exc:
        return None, f"AnagramPipeline.from_pretrained failed: {type(exc).__name__}: {exc}"
    pipe.set_progress_bar_config(disable=True)
    return pipe, f"AnagramPipeline.from_pretrained ok (vae={pipe.vae})"


def pipeline_matches_reference(pipe, model, guidance: float = 3.0) -> float:
    """Max |pipeline - reference sampler| for the same seed (one identity view): should be ~0."""
    prompt = prompts_for([7], model.defaults["prompt_template"])[0]
    steps = model.defaults["num_inference_steps"]
    a = pipeline_sample(pipe, prompt, 4, guidance, steps, torch.Generator().manual_seed(0))
    b = sample(model, [prompt] * 4, guidance, steps, torch.Generator().manual_seed(0))
    return float((a - b).abs().max())


def save_grid(images: torch.Tensor, per_digit: int, path: str) -> None:
    import numpy as np
    from PIL import Image

    x = ((images[:, 0].clamp(-1, 1) + 1) * 127.5).round().byte().numpy()
    n = min(per_digit, 16)
    rows = [np.concatenate([x[d * per_digit + j] for j in range(n)], 1) for d in range(10)]
    Image.fromarray(np.concatenate(rows, 0)).save(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=DIGITS_MODEL_DIR)
    p.add_argument("--classifier", type=Path, default=CLASSIFIER_DIR)
    p.add_argument("--guidance", type=float, nargs="+", default=[1.0, 2.0, 3.0, 5.0, 7.5])
    p.add_argument("--per-digit", type=int, default=20)
    p.add_argument("--steps", type=int, default=None, help="default: the model's num_inference_steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-speed", action="store_true")
    p.add_argument("--speed-only", action="store_true", help="only measure the sampling speed")
    p.add_argument("--save", default=None, help="save a grid of the last guidance's samples (PNG)")
    p.add_argument("--json", default=None, help="write the results as JSON")
    p.add_argument("--sampler", choices=["auto", "pipeline", "reference"], default="auto",
                   help="AnagramPipeline (one identity view) or the reference DDIM+CFG loop "
                        "(auto: the pipeline when it loads)")
    a = p.parse_args(argv)

    model = load_model(a.model)
    clf = load_classifier(a.classifier)
    d = model.defaults
    pipe, msg = load_pipeline(a.model) if a.sampler != "reference" else (None, "reference sampler")
    if a.sampler == "pipeline" and pipe is None:
        raise SystemExit(msg)
    print(f"model {a.model} (defaults: {d['num_inference_steps']} steps, guidance {d['guidance_scale']}, "
          f"'{d['prompt_template']}'); {msg}")
    if pipe is not None:
        print(f"sampler: AnagramPipeline; max |pipeline - reference loop| on 4 samples: "
              f"{pipeline_matches_reference(pipe, model):.2e}")
    results = {}
    if a.speed_only:
        a.guidance = []
    else:
        print(f"{'guidance':>8} {'accuracy':>9} {'worst digit':>12} {'s':>6}")
    images = None
    for w in a.guidance:
        t0 = time.perf_counter()
        acc, per, images = evaluate(model, clf, w, a.per_digit, a.steps, a.seed, pipe=pipe)
        worst = min(range(10), key=lambda k: per[k])
        results[w] = {"accuracy": acc, "per_digit": per}
        print(f"{w:>8g} {acc:>9.3f} {worst:>5d}: {per[worst]:.2f} {time.perf_counter() - t0:>6.1f}", flush=True)
    if a.save and images is not None:
        save_grid(images, a.per_digit, a.save)
    ms = None
    if not a.no_speed:
        ms = speed(model)
        print(f"sampling speed: {ms:.1f} ms per image (30 steps, CFG, batches of 32, "
              f"{torch.get_num_threads()} threads) = {ms / 30:.2f} ms per image-step")
    if a.json:
        Path(a.json).write_text(json.dumps({"results": results, "ms_per_image_30_steps": ms}, indent=1))
    if a.speed_only:
        return 0
    default_ok = results.get(d["guidance_scale"], {"accuracy": 1.0})["accuracy"] >= 0.98
    all_ok = all(r["accuracy"] >= 0.95 for r in results.values())
    print("bar:", "PASS" if default_ok and all_ok else "FAIL")
    return 0 if default_ok and all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
