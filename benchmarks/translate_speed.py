"""Seconds per training iteration and peak memory of CUT, each MCDUT component alone, and MCDUT, side by side.

Every row is the real trainer (`anagram.translate.trainer.train`: data loading, D step, G step, the
schedule), timed between its per-iteration progress events after a warm-up, on random images of one
size. The rows take turns (round-robin over ``--rounds``) so a machine that slows down or speeds up
during the run moves every row alike; the figure is the median over rounds of each round's mean,
in wall seconds and in CPU seconds of this process (which move less when other programs share the
cores). A third cost, independent of the machine's load: the GFLOP of one iteration (convolutions
and matrix products, counted by `torch.utils.flop_counter`). Ratios are to ``cut`` in the same
run. The goal (issue 14): ``mcdut`` at most 1.5x ``cut``, and ``cut`` no slower than the row
"plain CUT loop (reference)": the same networks and loss functions in a loop written as CUT's own
code is (keys' features from a second encoder pass with autograd on, D called twice).

    python benchmarks/translate_speed.py --quick            # ngf 32, 6 blocks, 96 px crops, S 128
    python benchmarks/translate_speed.py                    # CUT's default network: ngf 64, 9 blocks, 256 px, S 256
    python benchmarks/translate_speed.py --quick --only cut,mcdut --rounds 5

Run it with nothing else busy (``flock /tmp/anagram-train.lock`` on a shared machine). On a CPU,
denormal floats are flushed to zero (``torch.set_flush_denormal(True)``; CUT's 0.02-gain init makes
many; ``--keep-denormals`` to measure without). Peak memory is the resident set size above the level
at the row's start (sampled every millisecond, Linux) on a CPU, ``max_memory_allocated`` on CUDA.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from anagram.translate.config import preset
from anagram.translate.data import TensorDomain, UnpairedBatches, seed_for
from anagram.translate.losses import discriminator_loss, gather_patches, generator_gan_loss, patch_nce_loss, sample_locations
from anagram.translate.networks import build_networks
from anagram.translate.trainer import TrainOptions, train
from peak_memory import PeakMemory  # benchmarks/peak_memory.py (scripts run with benchmarks/ on sys.path)

SIZES = {
    "default": dict(ngf=64, n_blocks=9, crop_size=256, load_size=286, num_patches=256),
    "quick": dict(ngf=32, n_blocks=6, crop_size=96, load_size=108, num_patches=128),
    "tiny": dict(ngf=8, n_blocks=2, crop_size=32, load_size=36, num_patches=32,
                 nce_layers=("input", "down1", "down2", "res1", "res2")),  # a smoke test of the script
}
PLAIN = "plain CUT loop (reference)"
ROWS = {  # name -> (preset, overrides): CUT, each MCDUT component alone, the multi-crop control, MCDUT
    "cut": ("cut", {}),
    PLAIN: ("cut", {}),
    "cut + multi-crop": ("cut", {"multi_crop": True}),
    "cut + extra negatives (control)": ("cut", {"extra_negatives": True}),
    "cut + domain consistency": ("cut", {"domain_consistency": True}),
    "cut + dca": ("cut", {"dca": True}),
    "mcdut": ("mcdut", {}),
}


def domains(size: int, channels: int = 3, count: int = 8) -> tuple[TensorDomain, TensorDomain]:
    g = torch.Generator().manual_seed(0)
    a = torch.rand(count, channels, size, size, generator=g) * 2 - 1
    b = torch.rand(count, channels, size, size, generator=g) * 2 - 1
    return TensorDomain(a, "A"), TensorDomain(b, "B")


def run(config, a, b, iterations: int, device: torch.device, on_event=None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        never = 10**9
        options = TrainOptions(out=Path(tmp) / "run", max_steps=iterations, log_every=never, sample_every=never,
                               checkpoint_every=never, cpu=device.type == "cpu")
        train(a, b, config, options, progress=on_event)


def time_row(config, a, b, warmup: int, steps: int, device: torch.device) -> tuple[float, float]:
    """Mean wall and CPU (this process, every thread) seconds per iteration over ``steps`` iterations
    after ``warmup``. CPU seconds move less than wall seconds when other programs share the cores."""
    stamps: list[tuple[float, float]] = []

    def on_event(event):
        if event.kind == "step":
            if device.type == "cuda":
                torch.cuda.synchronize()
            stamps.append((time.perf_counter(), time.process_time()))

    run(config, a, b, warmup + steps, device, on_event)
    first, last = stamps[warmup - 1], stamps[-1]
    return (last[0] - first[0]) / steps, (last[1] - first[1]) / steps


def plain_cut_row(config, a, b, warmup: int, steps: int, device: torch.device) -> tuple[float, float]:
    """Wall and CPU seconds per iteration of a plain CUT loop, written as CUT's own code is: G on x and y,
    the keys' features from a second encoder pass of x (and y) with autograd on, D on fakes and reals in
    two calls; the same networks, data and loss functions. What ``cut`` should be no slower than."""
    nets = build_networks(config)
    G, D, heads = (nets[k].to(device) for k in ("generator", "discriminator", "heads"))
    g_params = [*G.parameters(), *heads.parameters()]
    opt_g = torch.optim.Adam(g_params, lr=config.lr, betas=(config.beta1, config.beta2))
    opt_d = torch.optim.Adam(D.parameters(), lr=config.lr, betas=(config.beta1, config.beta2))
    batches = UnpairedBatches(a, b, config)
    taps = config.nce_layers

    def nce(source, target, draws):
        feat_q = G.encode(target, taps)
        feat_k = G.encode(source, taps)  # CUT: netG(src, layers, encode_only=True), a second pass
        losses = []
        for tap in taps:
            ids = sample_locations(feat_k[tap][0, 0].numel(), config.num_patches, draws, device)
            q = heads[tap](gather_patches(feat_q[tap], ids))
            k = heads[tap](gather_patches(feat_k[tap], ids))
            losses.append(patch_nce_loss(q, k, config.nce_tau))
        return torch.stack(losses).mean()

    stamps = []
    for step in range(warmup + steps):
        x, y = (t.to(device) for t in batches.batch(step))
        draws = torch.Generator().manual_seed(seed_for(config.seed, step, 0, 7))
        both = G(torch.cat([x, y]))
        fake, idt = both[: x.shape[0]], both[x.shape[0]:]
        D.requires_grad_(True)
        loss_d = discriminator_loss(D(y), D(fake.detach()))
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        D.requires_grad_(False)
        loss_g = config.lambda_gan * generator_gan_loss(D(fake)) + \
            config.lambda_nce * 0.5 * (nce(x, fake, draws) + nce(y, idt, draws))
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        stamps.append((time.perf_counter(), time.process_time()))
    first, last = stamps[warmup - 1], stamps[-1]
    return (last[0] - first[0]) / steps, (last[1] - first[1]) / steps


def cost_row(config, a, b, device: torch.device) -> tuple[float, int]:
    """GFLOP of one iteration (convolutions and matrix products, counted by `FlopCounterMode`: the
    difference between a 2- and a 1-iteration run, so set-up and the final save cancel) and the peak
    extra memory of a 2-iteration run."""
    from torch.utils.flop_counter import FlopCounterMode

    counts = []
    for iterations in (1, 2):
        counter = FlopCounterMode(display=False)
        with counter:
            run(config, a, b, iterations, device)
        counts.append(counter.get_total_flops())
    with PeakMemory(device) as memory:
        run(config, a, b, 2, device)
    return (counts[1] - counts[0]) / 1e9, memory.extra


def plain_cost(config, a, b, device: torch.device) -> tuple[float, int]:
    """GFLOP of one iteration of the plain loop (a 3- minus a 2-iteration run); its memory is not measured."""
    from torch.utils.flop_counter import FlopCounterMode

    counts = []
    for steps in (1, 2):
        counter = FlopCounterMode(display=False)
        with counter:
            plain_cut_row(config, a, b, 1, steps, device)
        counts.append(counter.get_total_flops())
    return (counts[1] - counts[0]) / 1e9, 0


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the small size (ngf 32, 6 blocks, 96 px, S 128)")
    parser.add_argument("--size", choices=sorted(SIZES), default=None, help="a size by name (overrides --quick)")
    parser.add_argument("--steps", type=int, default=None, help="timed iterations per row and round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations first (at least 1)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every row (median reported)")
    parser.add_argument("--only", default="", help="comma-separated row names (default: every row)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads on a CPU")
    parser.add_argument("--keep-denormals", action="store_true", help="do not flush denormals to zero")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--no-cost", action="store_true", help="skip the FLOP count and the memory runs")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
        torch.set_flush_denormal(not args.keep_denormals)
    size_name = args.size or ("quick" if args.quick else "default")
    size = SIZES[size_name]
    steps = args.steps or (3 if device.type == "cpu" else 20)
    wanted = [n.strip() for n in args.only.split(",") if n.strip()] or list(ROWS)
    unknown = [n for n in wanted if n not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; rows: {list(ROWS)}")
    if "cut" not in wanted:
        wanted.insert(0, "cut")  # the ratios need it
    configs = {name: preset(ROWS[name][0], **ROWS[name][1], **size, n_epochs=1000, n_epochs_decay=0)
               for name in wanted}
    a, b = domains(size["load_size"])
    print(f"size {size_name}: {size}; device {device}, threads {torch.get_num_threads()}, flush denormals "
          f"{device.type == 'cpu' and not args.keep_denormals}; {args.warmup} warm-up + {steps} timed iterations, "
          f"{args.rounds} rounds", flush=True)

    wall: dict[str, list[float]] = {name: [] for name in wanted}
    cpu: dict[str, list[float]] = {name: [] for name in wanted}
    for round_index in range(args.rounds):
        for name in wanted:
            timer = plain_cut_row if name == PLAIN else time_row
            seconds, cpu_seconds = timer(configs[name], a, b, max(1, args.warmup), steps, device)
            wall[name].append(seconds)
            cpu[name].append(cpu_seconds)
            print(f"  round {round_index + 1}: {name:<34} {seconds:.3f} s/iter wall, {cpu_seconds:.3f} CPU s/iter",
                  flush=True)
    costs = {}
    if not args.no_cost:
        for name in wanted:
            measure = plain_cost if name == PLAIN else cost_row
            costs[name] = measure(configs[name], a, b, device)
            print(f"  cost: {name:<34} {costs[name][0]:.2f} GFLOP/iter, {costs[name][1] / 2**20:.0f} MiB", flush=True)

    base, base_cpu = statistics.median(wall["cut"]), statistics.median(cpu["cut"])
    base_flops = costs["cut"][0] if costs else None
    results = []
    print("\n| row | s / iteration | x cut | CPU s / iteration | x cut | GFLOP / iteration | x cut "
          "| peak extra memory (MiB) | negatives per query |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name in wanted:
        median, median_cpu = statistics.median(wall[name]), statistics.median(cpu[name])
        flops, extra = costs.get(name, (float("nan"), 0))
        row = {"row": name, "seconds_per_iteration": median, "ratio_to_cut": median / base,
               "cpu_seconds_per_iteration": median_cpu, "cpu_ratio_to_cut": median_cpu / base_cpu,
               "gflop_per_iteration": flops, "flop_ratio_to_cut": flops / base_flops if base_flops else None,
               "rounds_wall": wall[name], "rounds_cpu": cpu[name], "peak_extra_mib": extra / 2**20,
               "negatives_per_query": configs[name].negatives_per_query}
        results.append(row)
        flop_ratio = f"{row['flop_ratio_to_cut']:.2f}" if base_flops else "-"
        shown_memory = "-" if name == PLAIN else f"{row['peak_extra_mib']:.0f}"
        print(f"| {name} | {median:.3f} | {median / base:.2f} | {median_cpu:.3f} | {median_cpu / base_cpu:.2f} | "
              f"{flops:.2f} | {flop_ratio} | {shown_memory} | {row['negatives_per_query']} |")
    mcdut = next((r for r in results if r["row"] == "mcdut"), None)
    if mcdut:
        # on a CPU shared with other programs, wall time measures them too; this process's CPU time does not
        key = "cpu_ratio_to_cut" if device.type == "cpu" else "ratio_to_cut"
        verdict = "meets" if mcdut[key] <= 1.5 else "misses"
        print(f"\nmcdut / cut = {mcdut[key]:.2f} in {'CPU' if device.type == 'cpu' else 'wall'} seconds "
              f"(wall {mcdut['ratio_to_cut']:.2f}, GFLOP {mcdut['flop_ratio_to_cut'] or float('nan'):.2f}): "
              f"{verdict} the 1.5x goal")
    report = {"size": size_name, "network": size, "device": str(device), "threads": torch.get_num_threads(),
              "flush_denormal": device.type == "cpu" and not args.keep_denormals, "warmup": args.warmup,
              "steps": steps, "rounds": args.rounds, "rows": results, "torch": torch.__version__}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
