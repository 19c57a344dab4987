"""One configuration of the translator: CUT, FastCUT and MCDUT are presets of `TranslationConfig`.

Every MCDUT component (spec §3-§5) is a switch of its own, so an ablation can turn each on alone:

* multi-crop negatives: ``multi_crop``, ``crop_count``, ``crop_scale`` (and the control
  ``extra_negatives``: the same number of extra negatives drawn at random, no crops);
* domain consistency: ``domain_consistency``, ``lambda_dc``, ``dc_head`` (``"shared"``: one head
  trained with the generator; ``"random"``: one fixed random head; ``"random_pair"``: two fixed
  random heads, one per side, as the authors' released code builds them);
* dual coordinate attention: ``dca``, ``dca_placement`` (``"stem"`` or ``"resblocks"``).

The configuration is the recipe (networks, losses, optimiser, schedule, data): it is recorded into
every checkpoint and output (`to_dict` / `from_dict`, JSON-safe) and a resume refuses a checkpoint
whose recipe differs (`differences`). How long to run and how often to log are not part of it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

TAP_NAMES = ("input", "down1", "down2")  # then "res1" ... "resN" for N residual blocks
PREPROCESS = ("resize_crop", "none", "scale_width", "scale_width_crop")
DC_HEADS = ("shared", "random", "random_pair")
DCA_PLACEMENTS = ("stem", "resblocks")
DCA_NORMS = ("group", "batch")
DCA_POOLINGS = ("sum", "branches")
CONFIG_VERSION = 1


class ConfigError(ValueError):
    """A translation configuration that cannot work; the message says which value to change."""


@dataclass
class TranslationConfig:
    """The recipe of one translator. Defaults are CUT's (spec §2); see `preset` for FastCUT / MCDUT.

    Networks: ``channels`` (1 or 3, input and output), ``ngf`` / ``n_blocks`` (generator width and
    residual blocks), ``antialias`` (blur-pool down- and blur upsampling), ``ndf`` / ``n_layers_d``
    (PatchGAN width and downsampling layers: 3 is the 70x70 PatchGAN), ``head_units`` (projection
    heads). Losses: ``nce_layers`` (named taps), ``num_patches`` (S), ``nce_tau``, ``lambda_gan``,
    ``lambda_nce``, ``nce_idt`` (identity NCE on target images), ``flip_equivariance`` (FastCUT).
    Optimiser and schedule: Adam ``lr``, ``beta1``, ``beta2``; constant for ``n_epochs`` then linear
    decay to 0 over ``n_epochs_decay``. Data: ``preprocess``, ``load_size``, ``crop_size``, ``flip``.
    """

    name: str = "cut"
    channels: int = 3
    ngf: int = 64
    n_blocks: int = 9
    antialias: bool = True
    ndf: int = 64
    n_layers_d: int = 3
    head_units: int = 256
    nce_layers: tuple[str, ...] = ("input", "down1", "down2", "res1", "res5")
    num_patches: int = 256
    nce_tau: float = 0.07
    lambda_gan: float = 1.0
    lambda_nce: float = 1.0
    nce_idt: bool = True
    flip_equivariance: bool = False
    # multi-crop negatives (spec §3)
    multi_crop: bool = False
    crop_count: int = 2
    crop_scale: tuple[float, float] = (0.5, 0.9)
    centre_crop_scale: float = 0.7
    extra_negatives: bool = False
    # domain consistency (spec §4)
    domain_consistency: bool = False
    lambda_dc: float = 10.0
    dc_head: str = "shared"
    dc_units: int = 256
    # dual coordinate attention (spec §5)
    dca: bool = False
    dca_placement: str = "stem"
    dca_reduction: int = 32
    dca_norm: str = "group"
    dca_pooling: str = "sum"
    # optimiser, schedule, data
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    batch_size: int = 1
    n_epochs: int = 200
    n_epochs_decay: int = 200
    preprocess: str = "resize_crop"
    load_size: int = 286
    crop_size: int = 256
    flip: bool = True
    seed: int = 0

    def __post_init__(self):
        self.nce_layers = tuple(self.nce_layers)  # JSON gives lists
        self.crop_scale = tuple(float(s) for s in self.crop_scale)
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        problems = []
        if self.channels not in (1, 3):
            problems.append(f"channels must be 1 (grayscale) or 3 (RGB), got {self.channels}")
        for key in ("ngf", "ndf", "head_units", "num_patches", "batch_size", "dc_units", "crop_size", "load_size"):
            if int(getattr(self, key)) < 1:
                problems.append(f"{key} must be at least 1, got {getattr(self, key)}")
        if self.n_blocks < 0 or self.n_layers_d < 0:
            problems.append("n_blocks and n_layers_d must be >= 0")
        valid_taps = set(TAP_NAMES) | {f"res{i}" for i in range(1, self.n_blocks + 1)}
        bad = [t for t in self.nce_layers if t not in valid_taps]
        if bad or not self.nce_layers:
            problems.append(f"nce_layers {list(self.nce_layers)}: each must be one of {sorted(valid_taps)} "
                            f"(res<k> needs n_blocks >= k; this config has n_blocks={self.n_blocks})")
        if len(set(self.nce_layers)) != len(self.nce_layers):
            problems.append(f"nce_layers has a repeated name: {list(self.nce_layers)}")
        if self.nce_tau <= 0:
            problems.append(f"nce_tau must be > 0, got {self.nce_tau}")
        low, high = self.crop_scale
        for label, s in (("crop_scale", low), ("crop_scale", high), ("centre_crop_scale", self.centre_crop_scale)):
            if not 0 < s < 1:
                problems.append(f"{label} values must lie strictly between 0 and 1 (a crop of scale >= 1 is the whole "
                                f"image: no new negatives), got {s}")
        if low > high:
            problems.append(f"crop_scale must be (min, max) with min <= max, got {self.crop_scale}")
        if self.crop_count < 0:
            problems.append(f"crop_count must be >= 0, got {self.crop_count}")
        if self.multi_crop and self.extra_negatives:
            problems.append("multi_crop and extra_negatives are alternatives (extra_negatives is the multi-crop "
                            "control: the same number of negatives without crops); turn one off")
        for key, allowed in (("preprocess", PREPROCESS), ("dc_head", DC_HEADS), ("dca_placement", DCA_PLACEMENTS),
                             ("dca_norm", DCA_NORMS), ("dca_pooling", DCA_POOLINGS)):
            if getattr(self, key) not in allowed:
                problems.append(f"{key} must be one of {allowed}, got {getattr(self, key)!r}")
        if self.n_epochs < 0 or self.n_epochs_decay < 0 or self.n_epochs + self.n_epochs_decay < 1:
            problems.append("n_epochs + n_epochs_decay must be at least 1 (and neither negative)")
        if self.preprocess in ("resize_crop", "scale_width_crop") and self.crop_size % 4:
            problems.append(f"crop_size must be a multiple of 4 (the generator downsamples twice), got {self.crop_size}")
        if self.preprocess == "resize_crop" and self.crop_size > self.load_size:
            problems.append(f"crop_size {self.crop_size} is larger than load_size {self.load_size}")
        if problems:
            raise ConfigError("invalid translation config: " + "; ".join(problems))

    @property
    def negatives_per_query(self) -> int:
        """Negatives each query of L_NCE(x, G(x)) sees: S - 1, plus (k + 1) S with multi-crop or its control."""
        extra = (self.crop_count + 1) * self.num_patches if (self.multi_crop or self.extra_negatives) else 0
        return self.num_patches - 1 + extra

    # ------------------------------------------------------------------ records
    def to_dict(self) -> dict[str, Any]:
        payload = asdict(self)
        payload["nce_layers"] = list(self.nce_layers)
        payload["crop_scale"] = list(self.crop_scale)
        return {"config_version": CONFIG_VERSION, **payload}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> "TranslationConfig":
        payload = dict(payload)
        version = payload.pop("config_version", CONFIG_VERSION)
        if version != CONFIG_VERSION:
            raise ConfigError(f"translation config version {version} is not supported (this anagram reads {CONFIG_VERSION})")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(payload) - known)
        if unknown:
            raise ConfigError(f"unknown translation config keys {unknown} (written by another anagram version?)")
        return cls(**payload)

    @classmethod
    def from_json(cls, text: str) -> "TranslationConfig":
        return cls.from_dict(json.loads(text))

    def differences(self, other: "TranslationConfig") -> dict[str, tuple[Any, Any]]:
        """``{key: (mine, theirs)}`` for every field that differs."""
        mine, theirs = self.to_dict(), other.to_dict()
        return {k: (mine[k], theirs.get(k)) for k in mine if mine[k] != theirs.get(k)}

    def replace(self, **changes: Any) -> "TranslationConfig":
        return replace(self, **changes)


def preset(name: str, **overrides: Any) -> TranslationConfig:
    """``"cut"`` (the control), ``"fastcut"`` or ``"mcdut"`` (CUT + all three components), with overrides."""
    presets = {
        "cut": {},
        "fastcut": {"nce_idt": False, "lambda_nce": 10.0, "flip_equivariance": True, "n_epochs": 150, "n_epochs_decay": 50},
        "mcdut": {"multi_crop": True, "domain_consistency": True, "dca": True},
    }
    if name not in presets:
        raise ConfigError(f"unknown preset {name!r}; choose one of {sorted(presets)}")
    unknown = sorted(set(overrides) - {f.name for f in fields(TranslationConfig)})
    if unknown:
        raise ConfigError(f"unknown translation config keys {unknown}")
    return TranslationConfig(**{"name": name, **presets[name], **overrides})


PRESETS = ("cut", "fastcut", "mcdut")

__all__ = ["ConfigError", "PRESETS", "TAP_NAMES", "TranslationConfig", "preset"]
