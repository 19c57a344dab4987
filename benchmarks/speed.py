"""Speed and memory of anagram sampling against plain diffusers, side by side in one run.

Builds the full-size Stable Diffusion 1.5 UNet from its known configuration with random weights (no
download; the cost is the real one) and its VAE plus a small text encoder, then times, per denoising
step: diffusers' `StableDiffusionPipeline` (UNet batch 2), the anagram baseline with N = 2 and 3,
the shared unconditional branch, each multi-task component alone and the full method (with the
attention scorer, and with a random CLIP of the default hub CLIP's shape, which decodes the predicted
clean sample with the VAE at every step). Prints wall
time per step, peak memory above the loaded models, and ratios to N x plain.

    python benchmarks/speed.py --quick        # 16x16 latent, 3 steps: about 2 minutes on 2 CPU cores
    python benchmarks/speed.py --latent 32    # 256 px
    python benchmarks/speed.py                # 64x64 latent (512 px), 4 steps: about 35 min on 2 cores
    python benchmarks/speed.py --steps 2 --no-memory --only "shared,(down)"   # a subset at 512 px

Run it with nothing else busy (two processes on two cores make PyTorch's threads crawl). Peak memory
is the resident set size sampled every millisecond on CPU (Linux), `max_memory_allocated` on CUDA.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPTextModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from tiny_models import clip_tokenizer  # noqa: E402  (the in-memory tokenizer the tests use)

from anagram import AnagramPipeline  # noqa: E402
from anagram.method import AntiSegregation, MultiTask  # noqa: E402
from peak_memory import PeakMemory  # benchmarks/peak_memory.py (scripts run with benchmarks/ on sys.path)

SD15_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32,
)
PROMPTS = ["an oil painting of an old man", "an oil painting of a waterfall", "an oil painting of a red fox"]
OFF = dict(balance=False, rectify=None, anti_segregation=None)
MEMORY_ROWS = ("plain diffusers, 2 images (UNet batch 4)", "anagram baseline N=2", "shared unconditional N=2")


def build_components(seed: int = 0) -> dict:
    torch.manual_seed(seed)
    tokenizer = clip_tokenizer(max_length=77)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=768, intermediate_size=768, num_hidden_layers=1, num_attention_heads=8,
        max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1)).eval()
    vae = AutoencoderKL(**SD15_VAE).eval()
    unet = UNet2DConditionModel(**SD15_UNET).eval()
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    return dict(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler)


# Stable Diffusion 1.5's VAE (83M parameters): only the CLIP-scorer row decodes (every other row stops at
# the latent), and there the decode of the predicted clean sample at every step is part of the real cost.
SD15_VAE = dict(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, layers_per_block=2, norm_num_groups=32)


def random_clip_folder(tokenizer, folder: Path) -> Path:
    """A CLIP of openai/clip-vit-base-patch32's shape (ViT-B/32 vision tower, 12-layer text tower) with
    random weights, saved where the ``clip:<folder>`` scorer loads it: the default scorer's cost
    without its download."""
    torch.manual_seed(0)
    config = CLIPConfig(text_config=dict(vocab_size=len(tokenizer), max_position_embeddings=77, bos_token_id=0,
                                         eos_token_id=1, pad_token_id=1),
                        vision_config=dict(image_size=224, patch_size=32), projection_dim=512)
    CLIPModel(config).eval().save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def time_call(fn, steps: int, device: torch.device, repeats: int, memory: bool = True) -> tuple[float, int | None]:
    """Best-of-`repeats` seconds per denoising step, and peak extra memory of a separate 2-step call
    (None when ``memory`` is off).

    Memory is measured apart from time: on a CPU the sampling thread would steal cycles from
    PyTorch's worker threads and distort the timing. Warm-up and memory calls take 2 steps so that
    anti-segregation (never on the last step) runs in them.
    """
    fn(2)  # warm-up: allocator, kernels, caches
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn(steps)
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    if not memory:
        return best / steps, None
    with PeakMemory(device) as peak:
        fn(2)
    return best / steps, peak.extra


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="16x16 latent, 3 steps")
    parser.add_argument("--latent", type=int, default=None, help="latent side (default 64, or 16 with --quick)")
    parser.add_argument("--steps", type=int, default=None, help="timed denoising steps (default 4, or 3 with --quick)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per row (best is kept)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--only", default=None,
                        help="comma-separated parts of row names to run (the plain and N=2 baseline rows, which the "
                             "ratios need, always run)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory calls (a shorter run)")
    args = parser.parse_args(argv)
    latent = args.latent or (16 if args.quick else 64)
    steps = args.steps or (3 if args.quick else 4)
    repeats = args.repeats or 1
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # random weights produce denormals, which are very slow on CPUs
    device = torch.device(args.device)

    components = build_components()
    plain = StableDiffusionPipeline(**components, safety_checker=None, feature_extractor=None,
                                    requires_safety_checker=False).to(device)
    anagram = AnagramPipeline.from_pipe(plain)
    for pipe in (plain, anagram):
        pipe.set_progress_bar_config(disable=True)
    size = latent * anagram.vae_scale_factor
    common = dict(height=size, width=size, output_type="latent", guidance_scale=7.5)

    def plain_call(images):
        return lambda k: plain(PROMPTS[0], num_images_per_prompt=images, num_inference_steps=k,
                               generator=torch.Generator().manual_seed(0), **common)

    def anagram_call(n, method=None, **kwargs):
        views = ["identity", "rotate_180", "flip"][:n]
        return lambda k: anagram(PROMPTS[:n], views=views, method=method, num_inference_steps=k,
                                 generator=torch.Generator().manual_seed(0), **common, **kwargs)

    def anagram_row(name, n, method=None, **kwargs):
        """A row: name, N, the call, and the anti-segregation settings it runs (None when off)."""
        return name, n, anagram_call(n, method, **kwargs), getattr(method, "anti_segregation", None)

    down_only = AntiSegregation(layers=("down",))
    every_other = AntiSegregation.reference(interval=2)
    # Balancing rows name the attention scorer: the default ("auto") resolves to the hub CLIP for a
    # model that declares none, which needs a download (this benchmark runs offline). The CLIP row
    # prices that default with a random CLIP of the same shape: a VAE decode of the predicted clean
    # sample and a CLIP pass over each view at every step.
    att = "attention"
    clip_dir = Path(tempfile.mkdtemp(prefix="speed-clip-"))
    rows = [
        ("plain diffusers, 1 image (UNet batch 2)", 1, plain_call(1), None),
        ("plain diffusers, 2 images (UNet batch 4)", 2, plain_call(2), None),
        anagram_row("anagram baseline N=2", 2),
        anagram_row("anagram baseline N=3", 3),
        anagram_row("shared unconditional N=2", 2, share_unconditional=True),
        anagram_row("balancing only (attention scorer) N=2", 2, MultiTask(**{**OFF, "balance": True, "scorer": att})),
        anagram_row("rectification only N=2", 2, MultiTask(**{**OFF, "rectify": "product"})),
        anagram_row("anti-segregation only (down+up) N=2", 2,
                    MultiTask(**{**OFF, "anti_segregation": AntiSegregation.reference()})),
        anagram_row("anti-segregation only (down) N=2", 2, MultiTask(**{**OFF, "anti_segregation": down_only})),
        anagram_row("full method (down+up maps) N=2", 2,
                    MultiTask(scorer=att, anti_segregation=AntiSegregation.reference())),
        anagram_row("full method (down maps) N=2", 2, MultiTask(scorer=att, anti_segregation=down_only)),
        anagram_row("full method (down+up, every 2nd step) N=2", 2,
                    MultiTask(scorer=att, anti_segregation=every_other)),
        # balancing runs on every step, so this row is read per step, not projected (settings None)
        anagram_row("full method, CLIP scorer (ViT-B/32 shape) N=2", 2, MultiTask(scorer=f"clip:{clip_dir}"))[:3]
        + (None,),
    ]
    if args.only:
        wanted = [part.strip() for part in args.only.split(",") if part.strip()]
        rows = rows[:3] + [row for row in rows[3:] if any(part in row[0] for part in wanted)]
    if any("CLIP scorer" in row[0] for row in rows):
        random_clip_folder(components["tokenizer"], clip_dir)
    print(f"device {device}, threads {torch.get_num_threads()}, latent {latent}x{latent}, {steps} steps, "
          f"SD 1.5 UNet {sum(p.numel() for p in components['unet'].parameters()) / 1e6:.0f}M parameters")
    results = {}
    try:
        with torch.no_grad():
            for name, n, fn, _ in rows:
                # --quick measures memory only where the memory target compares (same UNet batch, anti-seg off)
                memory = not args.no_memory and (not args.quick or name in MEMORY_ROWS)
                results[name] = (n, *time_call(fn, steps, device, repeats, memory=memory))
                print(f"  measured {name}", file=sys.stderr)
    finally:
        shutil.rmtree(clip_dir, ignore_errors=True)
    plain_step = results[rows[0][0]][1]
    baseline = {n: results[f"anagram baseline N={n}"][1] for n in (2, 3) if f"anagram baseline N={n}" in results}
    print(f"\n{'configuration':44s} {'s/step':>8s} {'x N*plain':>10s} {'x baseline':>11s} {'extra MiB':>10s}")
    for name, (n, seconds, memory) in results.items():
        vs_baseline = f"{seconds / baseline[n]:11.2f}" if n in baseline and name.startswith(("anagram", "shared",
                                                                                             "balancing", "rect",
                                                                                             "anti", "full")) else ""
        mib = "-" if memory is None else f"{memory / 2**20:.1f}"
        print(f"{name:44s} {seconds:8.3f} {seconds / (n * plain_step):10.2f} {vs_baseline:>11s} {mib:>10s}")
    # Anti-segregation runs on some steps only (the first 26 of 30 by default, never the last): the
    # measured extra cost per active step, projected to the steps it runs on in a 30-step run.
    print("\nprojected to a 30-step run (extra cost per step that ran anti-segregation, times the steps it runs on):")
    for name, _, _, settings in rows:
        if settings is None:
            continue
        timed = sum(settings.active_at(i, steps) for i in range(steps - 1))
        full_run = sum(settings.active_at(i, 30) for i in range(29))
        extra = (results[name][1] - baseline[2]) * steps / timed if timed else 0.0
        print(f"  {name:44s} {(baseline[2] + full_run / 30 * extra) / baseline[2]:.2f} x baseline "
              f"({timed} of {steps} timed steps, {full_run} of 30 had it)")
    if args.no_memory:
        return
    same_batch = results["plain diffusers, 2 images (UNet batch 4)"][2]
    print(f"\npeak extra memory, anagram baseline N=2 vs plain at the same UNet batch (4): "
          f"{results['anagram baseline N=2'][2] / max(same_batch, 1):.2f}x")


if __name__ == "__main__":
    main()
