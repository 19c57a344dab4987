"""Does the shared domain-consistency head collapse? ``--dc-head shared`` against ``random`` (spec §4).

The shared head P is trained with the generator to lower ``L_DC = lambda |e(G(x)) - e(y)|``; nothing
else trains it, and an L2-normalised P that maps every image to one vector makes L_DC zero without
the generator changing at all. The fixed random head cannot do that. This trains the same small
MCDUT run with each head (same seed, same data) and measures, with the final networks, on held-out
images of both domains:

Each figure is also given for the initial networks (the same seed), so a change can be read.

* ``dc (last)``: the training L_DC, mean of the last tenth of the log;
* ``cos``: mean pairwise cosine similarity of the embeddings e(z) of real A and B images (1.0: P maps
  every image to one vector, collapsed);
* ``spread``: mean distance of the embeddings from their mean (0: collapsed);
* ``gap A-B``: |mean e(A) - mean e(B)| in the run's own embedding space (0: P cannot tell the
  domains apart, so L_DC carries no signal about the target domain);
* ``dc, fresh random head``: L_DC between G(A) and B measured with an untrained random head
  (seeded, the same for both runs): what the generator actually moved, in a space nobody trained.

    python benchmarks/translate_dc_head.py                 # 300 iterations, 32 px, ngf 16: a few minutes on a CPU
    python benchmarks/translate_dc_head.py --steps 1000 --json dc_head.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

from anagram.translate.checkpoint import latest_checkpoint, read_checkpoint
from anagram.translate.config import preset
from anagram.translate.data import TensorDomain
from anagram.translate.losses import domain_consistency_loss, sample_locations
from anagram.translate.networks import DomainHead, build_networks, init_weights
from anagram.translate.objective import GeneratorObjective
from anagram.translate.trainer import TrainOptions, train

SIZE = dict(ngf=16, n_blocks=4, ndf=16, n_layers_d=2, head_units=64, dc_units=64, num_patches=64, crop_size=32,
            load_size=36, nce_layers=("input", "down1", "down2", "res1", "res4"))


def smooth_images(count: int, size: int, seed: int) -> torch.Tensor:
    """Blurry colour fields in [-1, 1] (noise upsampled from 4x4): content with structure at every scale."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 3, 4, 4, generator=g)
    fine = torch.rand(count, 3, size // 4, size // 4, generator=g)
    image = F.interpolate(coarse, size=size, mode="bicubic", align_corners=False) * 0.7 + \
        F.interpolate(fine, size=size, mode="bilinear", align_corners=False) * 0.3
    return image.clamp(0, 1) * 2 - 1


def to_b(images: torch.Tensor) -> torch.Tensor:
    """Domain B: the colours rotated (R, G, B -> G, B, R) and the contrast raised."""
    return (images[:, [1, 2, 0]] * 1.5).clamp(-1, 1)


def embed(objective: GeneratorObjective, images: torch.Tensor, head: int = 0, seed: int = 0) -> torch.Tensor:
    cfg = objective.config
    with torch.no_grad():
        feats = objective.generator.encode(images, cfg.nce_layers)
        g = torch.Generator().manual_seed(seed)
        projected = [objective._project(t, feats[t], sample_locations(feats[t][0, 0].numel(), cfg.num_patches, g))
                     for t in cfg.nce_layers]
        return objective._embed(projected, head)


def measure(config, run: Path | None, test_a: torch.Tensor, test_b: torch.Tensor) -> dict:
    """The figures of the module docstring for the run's final networks (``run=None``: the initial ones)."""
    networks = build_networks(config)
    tensors = read_checkpoint(latest_checkpoint(run)).tensors if run is not None else {}
    for name, module in networks.items():
        prefix = f"net/{name}/"
        if tensors:
            module.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
        module.eval()
    objective = GeneratorObjective(config, networks["generator"], networks["heads"], networks["domain_heads"])
    e_a, e_b = embed(objective, test_a), embed(objective, test_b)
    both = torch.cat([e_a, e_b])
    cos = both @ both.T
    off = ~torch.eye(len(both), dtype=torch.bool)
    with torch.no_grad():
        fake = networks["generator"](test_a)
    torch.manual_seed(12345)  # one fresh random head, the same for every run
    fresh = DomainHead(config.head_units * len(config.nce_layers), config.dc_units)
    init_weights(fresh)
    objective.domain_heads = torch.nn.ModuleList([fresh])
    e_fake, e_real = embed(objective, fake), embed(objective, test_b).mean(0, keepdim=True)
    e_src = embed(objective, test_a)
    log = [json.loads(line) for line in (run / "losses.jsonl").read_text().splitlines()] if run else []
    tail = log[-max(1, len(log) // 10):]
    nan = float("nan")
    return {"dc_first": log[0]["dc"] if log else nan, "dc_last": sum(r["dc"] for r in tail) / len(tail) if log else nan,
            "nce_last": sum(r["nce"] for r in tail) / len(tail) if log else nan,
            "cos": float(cos[off].mean()), "spread": float((both - both.mean(0)).norm(dim=1).mean()),
            "gap_ab": float((e_a.mean(0) - e_b.mean(0)).norm()),
            "dc_fresh_head": float(domain_consistency_loss(e_fake, e_real, config.lambda_dc)),
            "dc_fresh_head_untranslated": float(domain_consistency_loss(e_src, e_real, config.lambda_dc)),
            "identity_distance": float((fake - test_a).abs().mean())}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--images", type=int, default=32, help="training images per domain")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--heads", default="shared,random,random_pair")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    size = SIZE["load_size"]
    a = TensorDomain(smooth_images(args.images, size, seed=1), "smooth fields")
    b = TensorDomain(to_b(smooth_images(args.images, size, seed=2)), "rotated colours")
    test_a = smooth_images(8, SIZE["crop_size"], seed=3)
    test_b = to_b(smooth_images(8, SIZE["crop_size"], seed=4))
    epochs = -(-args.steps // args.images)
    results = {"(initial networks)": measure(preset("mcdut", **SIZE), None, test_a, test_b)}
    with tempfile.TemporaryDirectory() as tmp:
        for head in args.heads.split(","):
            config = preset("mcdut", **SIZE, dc_head=head, n_epochs=epochs, n_epochs_decay=0)
            run = Path(tmp) / head
            train(a, b, config, TrainOptions(out=run, max_steps=args.steps, log_every=5, sample_count=0,
                                             checkpoint_every=10**9))
            results[head] = measure(config, run, test_a, test_b)
            print(head, {k: round(v, 4) for k, v in results[head].items()}, flush=True)
    print(f"\n{args.steps} iterations, mcdut at {SIZE}\n")
    print("| dc head | dc (first) | dc (last) | nce (last) | cos | spread | gap A-B | dc, fresh random head "
          "(G(A) vs B; A itself) | mean abs(G(x) - x) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for head, r in results.items():
        print(f"| {head} | {r['dc_first']:.3f} | {r['dc_last']:.4f} | {r['nce_last']:.3f} | {r['cos']:.4f} | "
              f"{r['spread']:.4f} | {r['gap_ab']:.4f} | {r['dc_fresh_head']:.4f} ({r['dc_fresh_head_untranslated']:.4f}) "
              f"| {r['identity_distance']:.3f} |")
    if args.json:
        args.json.write_text(json.dumps({"steps": args.steps, "size": SIZE, "results": results}, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
