"""One iteration's generator-side losses, as one module (so DDP sees one forward per step).

`GeneratorObjective` holds the generator, the patch heads and the domain heads, and computes,
from a batch x of A and y of B (spec §2-§4, formulas in `anagram.translate.losses`):

* ``fake = G(x)`` (and ``idt = G(y)`` with identity NCE), with the keys' features of x and y read
  from the same generator pass (no features computed twice);
* the queries: ``G_enc`` of the generated images, one batched pass;
* PatchNCE with the S locations shared by query and key; with multi-crop, the crop views of x in
  one batched no-grad encoder pass give (k + 1) S extra negatives; with the control, as many
  patches of x at unsampled locations;
* domain consistency between e(G(x)) and e(y).

The GAN term needs the discriminator after its own step (CUT's order: D step, then G step), so
the trainer adds it: ``loss_G = lambda_GAN * MSE(D(fake), 1) + outputs["loss"]``. Randomness
(patch locations, crops, the FastCUT flip) comes from the ``generator`` argument only, so an
iteration is a function of its seed: that is what makes a resumed run exact.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from .config import TranslationConfig
from .losses import (
    crop_boxes, crop_views, domain_consistency_loss, gather_patches, multilayer_nce, pool_patches,
    random_negative_ids, sample_locations,
)
from .networks import ResnetGenerator

__all__ = ["GeneratorObjective"]


class GeneratorObjective(nn.Module):
    def __init__(self, config: TranslationConfig, generator: ResnetGenerator, heads: nn.ModuleDict,
                 domain_heads: nn.ModuleList | None = None):
        super().__init__()
        self.config = config
        self.generator = generator
        self.heads = heads
        self.domain_heads = domain_heads
        if config.domain_consistency and domain_heads is None:
            raise ValueError("domain_consistency is on: pass the domain heads (build_networks makes them)")

    # ------------------------------------------------------------------ pieces
    def _generate(self, images: Sequence[torch.Tensor], taps: Sequence[str]):
        """G on several batches: one pass when their shapes agree. Returns (fakes, features) per batch."""
        if all(t.shape[1:] == images[0].shape[1:] for t in images):
            fake, feats = self.generator(torch.cat(list(images)), taps)
            sizes = [t.shape[0] for t in images]
            fakes = list(fake.split(sizes))
            split = [dict(zip(feats, values)) for values in zip(*(f.split(sizes) for f in feats.values()))]
            return fakes, split
        outs = [self.generator(t, taps) for t in images]
        return [o[0] for o in outs], [o[1] for o in outs]

    def _encode(self, images: Sequence[torch.Tensor], taps: Sequence[str]) -> list[dict[str, torch.Tensor]]:
        if all(t.shape[1:] == images[0].shape[1:] for t in images):
            sizes = [t.shape[0] for t in images]
            feats = self.generator.encode(torch.cat(list(images)), taps)
            return [dict(zip(feats, values)) for values in zip(*(f.split(sizes) for f in feats.values()))]
        return [self.generator.encode(t, taps) for t in images]

    def _project(self, tap: str, feature: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        return self.heads[tap](gather_patches(feature, ids))

    def _embed(self, projected: Sequence[torch.Tensor], head_index: int) -> torch.Tensor:
        pooled = torch.cat([pool_patches(p) for p in projected], dim=-1)
        return self.domain_heads[head_index](pooled)

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        cfg = self.config
        taps = cfg.nce_layers
        flipped = cfg.flip_equivariance and bool(torch.rand((), generator=generator) < 0.5)
        reals = [x, y] if cfg.nce_idt else [x]
        inputs = [r.flip(3) for r in reals] if flipped else reals
        fakes, real_feats = self._generate(inputs, taps)
        if flipped:  # keys are the features of the unflipped images (FastCUT's flip equivariance)
            with torch.no_grad():
                real_feats = self._encode(reals, taps)
        fake_feats = self._encode(fakes, taps)
        if flipped:
            fake_feats = [{k: v.flip(3) for k, v in f.items()} for f in fake_feats]

        # same S locations for query and key; x and y draw their own (as CUT's two NCE calls do)
        ids = [{tap: sample_locations(real_feats[i][tap][0, 0].numel(), cfg.num_patches, generator, x.device)
                for tap in taps} for i in range(len(reals))]
        queries = [[self._project(t, fake_feats[i][t], ids[i][t]) for t in taps] for i in range(len(reals))]
        with torch.no_grad():  # keys are detached in the loss: no graph needed
            keys = [[self._project(t, real_feats[i][t], ids[i][t]) for t in taps] for i in range(len(reals))]
            extra = self._extra_negatives(x, real_feats[0], ids[0], generator)

        out: dict[str, torch.Tensor] = {"fake": fakes[0]}
        out["nce"] = multilayer_nce(queries[0], keys[0], cfg.nce_tau, extra)
        nce_term = out["nce"]
        if cfg.nce_idt:
            out["idt"] = fakes[1]
            out["nce_idt"] = multilayer_nce(queries[1], keys[1], cfg.nce_tau)
            nce_term = 0.5 * (out["nce"] + out["nce_idt"])
        loss = cfg.lambda_nce * nce_term
        if cfg.domain_consistency:
            out["dc"] = self._domain_consistency(y, queries[0], keys[1] if cfg.nce_idt else None, generator)
            loss = loss + out["dc"]
        out["loss"] = loss
        out["identity_distance"] = (fakes[0].detach().float() - x.float()).abs().mean()
        return out

    def _extra_negatives(self, x: torch.Tensor, feats: dict[str, torch.Tensor], ids: dict[str, torch.Tensor],
                         generator: torch.Generator) -> list[torch.Tensor] | None:
        cfg = self.config
        if cfg.multi_crop:
            boxes = crop_boxes(x.shape[2], x.shape[3], cfg.crop_count, cfg.crop_scale, cfg.centre_crop_scale, generator)
            views = crop_views(x, boxes)  # (V * B, ...): every view in one encoder pass
            view_feats = self.generator.encode(views, cfg.nce_layers)
            batch, count = x.shape[0], len(boxes)
            extra = []
            for tap in cfg.nce_layers:
                projected = self._project(tap, view_feats[tap], ids[tap])  # (V * B, S, D)
                extra.append(projected.view(count, batch, *projected.shape[1:]).transpose(0, 1).flatten(1, 2))
            return extra
        if cfg.extra_negatives:
            extra = []
            for tap in cfg.nce_layers:
                locations = feats[tap][0, 0].numel()
                count = (cfg.crop_count + 1) * ids[tap].numel()
                picks = random_negative_ids(locations, ids[tap], count, generator)
                extra.append(self._project(tap, feats[tap], picks))
            return extra
        return None

    def _domain_consistency(self, y: torch.Tensor, fake_queries: list[torch.Tensor],
                            real_keys: list[torch.Tensor] | None, generator: torch.Generator) -> torch.Tensor:
        cfg = self.config
        embedding_fake = self._embed(fake_queries, 0)
        with torch.no_grad():  # e(y) is a target
            if real_keys is None:  # no identity pass: encode y here (the features are not needed otherwise)
                feats = self.generator.encode(y, cfg.nce_layers)
                real_keys = []
                for tap in cfg.nce_layers:
                    ids = sample_locations(feats[tap][0, 0].numel(), cfg.num_patches, generator, y.device)
                    real_keys.append(self._project(tap, feats[tap], ids))
            embedding_real = self._embed(real_keys, 1 if cfg.dc_head == "random_pair" else 0)
        return domain_consistency_loss(embedding_fake, embedding_real, cfg.lambda_dc)
