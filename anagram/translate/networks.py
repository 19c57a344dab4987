"""The translator's networks (spec §1, §5): ResNet generator with named taps, PatchGAN, heads, DCA.

`ResnetGenerator` is CUT's "resnet_9blocks" as a diffusers model (``ModelMixin`` + ``ConfigMixin``:
``save_pretrained`` writes config + safetensors). Its features are read by name with
``encode(x, taps)``; the names and what they are (CUT's Sequential indices 0, 4, 8, 12, 16 with
anti-aliasing on):

    "input"  the reflection-padded input (C x (H+6) x (W+6))
    "down1"  the first downsampling conv's output (2 ngf), before norm / blur-pool
    "down2"  the second downsampling conv's output (4 ngf)
    "resK"   the output of residual block K (4 ngf, H/4 x W/4)

so inserting a module (DCA) shifts no tap. Without anti-aliasing, CUT's indices would point at
other layers; names do not. `encode` stops after the deepest requested tap.

`DualCoordinateAttention` (spec §5), for a map F (C x H x W)::

    z_h = avg_w(F) + max_w(F),  z_w = avg_h(F) + max_h(F)          ("sum" pooling; "branches": apart)
    u = h_swish(norm(conv_{C->m}([z_h ; z_w^T])))                   m = max(8, C // r)
    a_h = sigmoid(conv_{m->C}(u_h)),  a_w = sigmoid(conv_{m->C}(u_w)),  out = F * a_h * a_w

with a batch-independent norm (GroupNorm, one group) by default. Placed after the stem (default)
or inside every residual block (before the residual sum).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin

from .config import TAP_NAMES, TranslationConfig
from .losses import l2_normalize

SIZE_MULTIPLE = 4  # two stride-2 downsamplings
MIN_SIZE = 8  # the bottleneck (H/4) must exceed the residual blocks' reflection padding of 1

__all__ = [
    "DomainHead", "DualCoordinateAttention", "MIN_SIZE", "PatchDiscriminator", "PatchHead", "ResnetGenerator",
    "SIZE_MULTIPLE", "build_networks", "init_weights",
]


def h_swish(x: torch.Tensor) -> torch.Tensor:
    return x * F.relu6(x + 3.0) / 6.0


class DualCoordinateAttention(nn.Module):
    """Coordinate attention with average and max descriptors (formula in the module docstring)."""

    def __init__(self, channels: int, reduction: int = 32, norm: str = "group", pooling: str = "sum"):
        super().__init__()
        mid = max(8, channels // reduction)
        self.pooling = pooling
        self.reduce = nn.Conv2d(channels, mid, 1)
        self.reduce_max = nn.Conv2d(channels, mid, 1) if pooling == "branches" else None
        make_norm = (lambda: nn.GroupNorm(1, mid)) if norm == "group" else (lambda: nn.BatchNorm2d(mid))
        self.norm = make_norm()
        self.norm_max = make_norm() if pooling == "branches" else None
        self.expand_h = nn.Conv2d(mid, channels, 1)
        self.expand_w = nn.Conv2d(mid, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height = x.shape[2]
        # descriptors (B, C, H + W, 1): rows' pooled over width, then columns' pooled over height
        avg = torch.cat([x.mean(3, keepdim=True), x.mean(2, keepdim=True).transpose(2, 3)], dim=2)
        mx = torch.cat([x.amax(3, keepdim=True), x.amax(2, keepdim=True).transpose(2, 3)], dim=2)
        if self.pooling == "sum":
            u = h_swish(self.norm(self.reduce(avg + mx)))
        else:
            u = h_swish(self.norm(self.reduce(avg))) + h_swish(self.norm_max(self.reduce_max(mx)))
        u_h, u_w = u[:, :, :height], u[:, :, height:].transpose(2, 3)
        return x * torch.sigmoid(self.expand_h(u_h)) * torch.sigmoid(self.expand_w(u_w))


class BlurPool(nn.Module):
    """Anti-aliased stride-2 downsampling (CUT's ``Downsample``): reflect pad, [1, 2, 1]^2 / 16 blur, stride 2."""

    def __init__(self, channels: int):
        super().__init__()
        kernel = torch.tensor([1.0, 2.0, 1.0])
        kernel = kernel[:, None] * kernel[None, :]
        self.register_buffer("kernel", (kernel / kernel.sum()).expand(channels, 1, 3, 3).clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), self.kernel.to(x.dtype), stride=2, groups=x.shape[1])


class BlurUpsample(nn.Module):
    """Anti-aliased 2x upsampling. Bilinear 2x interpolation (half-pixel centres, edge clamped) is the
    transposed [1, 3, 3, 1] / 4 blur that CUT's ``Upsample`` applies, so it is written as one call."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class ResnetBlock(nn.Module):
    """pad, 3x3 conv, norm, ReLU, pad, 3x3 conv, norm (then DCA, if placed here), plus the input."""

    def __init__(self, channels: int, attention: nn.Module | None = None):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels),
        )
        self.attention = attention if attention is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.attention(self.body(x))


class ResnetGenerator(ModelMixin, ConfigMixin):
    """CUT's ResNet generator; images in [-1, 1], ``(B, C, H, W)`` with H, W multiples of 4 (>= 8)."""

    @register_to_config
    def __init__(self, in_channels: int = 3, out_channels: int = 3, ngf: int = 64, n_blocks: int = 9,
                 antialias: bool = True, dca: bool = False, dca_placement: str = "stem", dca_reduction: int = 32,
                 dca_norm: str = "group", dca_pooling: str = "sum"):
        super().__init__()

        def attention(channels: int, where: str) -> nn.Module | None:
            if dca and dca_placement == where:
                return DualCoordinateAttention(channels, dca_reduction, dca_norm, dca_pooling)
            return None

        self.pad_input = nn.ReflectionPad2d(3)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, ngf, 7), nn.InstanceNorm2d(ngf), nn.ReLU(True))
        self.stem_attention = attention(ngf, "stem") or nn.Identity()
        stride = 1 if antialias else 2
        self.down1 = nn.Conv2d(ngf, 2 * ngf, 3, stride=stride, padding=1)
        self.down1_rest = nn.Sequential(nn.InstanceNorm2d(2 * ngf), nn.ReLU(True), *([BlurPool(2 * ngf)] if antialias else []))
        self.down2 = nn.Conv2d(2 * ngf, 4 * ngf, 3, stride=stride, padding=1)
        self.down2_rest = nn.Sequential(nn.InstanceNorm2d(4 * ngf), nn.ReLU(True), *([BlurPool(4 * ngf)] if antialias else []))
        self.blocks = nn.ModuleList(ResnetBlock(4 * ngf, attention(4 * ngf, "resblocks")) for _ in range(n_blocks))
        up: list[nn.Module] = []
        for c_in, c_out in ((4 * ngf, 2 * ngf), (2 * ngf, ngf)):
            if antialias:
                up += [BlurUpsample(), nn.Conv2d(c_in, c_out, 3, padding=1)]
            else:
                up += [nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=1)]
            up += [nn.InstanceNorm2d(c_out), nn.ReLU(True)]
        self.up = nn.Sequential(*up, nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7), nn.Tanh())

    # ------------------------------------------------------------------ taps
    @property
    def tap_names(self) -> tuple[str, ...]:
        return TAP_NAMES + tuple(f"res{i}" for i in range(1, len(self.blocks) + 1))

    def tap_channels(self, tap: str) -> int:
        """Channel count of a tap, known when the generator is built (heads need it before any batch)."""
        ngf = self.config.ngf
        widths = {"input": self.config.in_channels, "down1": 2 * ngf, "down2": 4 * ngf}
        if tap in widths:
            return widths[tap]
        self._check_taps([tap])
        return 4 * ngf

    def _check_taps(self, taps: Sequence[str]) -> None:
        unknown = [t for t in taps if t not in self.tap_names]
        if unknown:
            raise ValueError(f"unknown feature taps {unknown}; this generator has {list(self.tap_names)}")

    def check_size(self, height: int, width: int) -> None:
        if height % SIZE_MULTIPLE or width % SIZE_MULTIPLE or min(height, width) < MIN_SIZE:
            raise ValueError(f"the generator takes images whose sides are multiples of {SIZE_MULTIPLE} and at least "
                             f"{MIN_SIZE} px, got {height}x{width}; TranslationPipeline pads and crops back other sizes")

    def _run(self, x: torch.Tensor, taps: Sequence[str], encode_only: bool):
        self._check_taps(taps)
        self.check_size(*x.shape[-2:])
        wanted = set(taps)
        features: dict[str, torch.Tensor] = {}

        def keep(name: str, value: torch.Tensor) -> bool:
            if name in wanted:
                features[name] = value
            return encode_only and len(features) == len(wanted)  # True: nothing deeper is needed

        h = self.pad_input(x)
        if keep("input", h):
            return None, features
        h = self.down1(self.stem_attention(self.stem(h)))
        if keep("down1", h):
            return None, features
        h = self.down2(self.down1_rest(h))
        if keep("down2", h):
            return None, features
        h = self.down2_rest(h)
        for index, block in enumerate(self.blocks, start=1):
            h = block(h)
            if keep(f"res{index}", h):
                return None, features
        return self.up(h), features

    def encode(self, x: torch.Tensor, taps: Sequence[str]) -> dict[str, torch.Tensor]:
        """Features at the named ``taps`` (a dict), computing no layer past the deepest one."""
        if not taps:
            return {}
        return self._run(x, taps, encode_only=True)[1]

    def forward(self, x: torch.Tensor, taps: Sequence[str] = ()):
        """The translated image; with ``taps``, ``(image, {tap: features of x})`` from the same pass."""
        image, features = self._run(x, taps, encode_only=False)
        return (image, features) if taps else image


class PatchDiscriminator(nn.Module):
    """PatchGAN: 4x4 convs (ndf, 2 ndf, ... stride 2 for ``n_layers``), one at stride 1 with 8 ndf
    (capped), a 4x4 conv to one channel; LeakyReLU 0.2; instance norm except after the first conv.
    ``n_layers = 3`` is the 70x70 PatchGAN."""

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        width = ndf
        for n in range(1, n_layers + 1):
            stride = 2 if n < n_layers else 1
            out = ndf * min(2 ** n, 8)
            layers += [nn.Conv2d(width, out, 4, stride=stride, padding=1), nn.InstanceNorm2d(out), nn.LeakyReLU(0.2, True)]
            width = out
        layers.append(nn.Conv2d(width, 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)
        self.n_layers = n_layers

    def output_side(self, side: int) -> int:
        """Side of the patch map for an input side (conv arithmetic of the layers above)."""
        for conv in (m for m in self.model if isinstance(m, nn.Conv2d)):
            side = (side + 2 * conv.padding[0] - conv.kernel_size[0]) // conv.stride[0] + 1
        return side

    def min_size(self) -> int:
        """Smallest input side that leaves a non-empty patch map."""
        return next(side for side in range(1, 1 << 16) if self.output_side(side) >= 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < self.min_size():
            raise ValueError(f"the discriminator with n_layers_d={self.n_layers} needs images of at least "
                             f"{self.min_size()} px, got {tuple(x.shape[-2:])}; lower n_layers_d or train larger crops")
        return self.model(x)


class PatchHead(nn.Module):
    """H_l: a 2-layer MLP (Linear, ReLU, Linear) on patch vectors, L2-normalised output."""

    def __init__(self, in_features: int, units: int = 256):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_features, units), nn.ReLU(), nn.Linear(units, units))

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return l2_normalize(self.mlp(patches))


class DomainHead(nn.Module):
    """P of domain consistency: an MLP from the concatenated pooled layer embeddings, L2-normalised."""

    def __init__(self, in_features: int, units: int = 256):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_features, units), nn.ReLU(), nn.Linear(units, units))

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return l2_normalize(self.mlp(pooled))


def init_weights(module: nn.Module, gain: float = 0.02) -> None:
    """CUT's default init ("xavier", gain 0.02): xavier-normal conv/linear weights, zero biases, norm
    weights ~ N(1, gain)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.xavier_normal_(m.weight, gain=gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)


def generator_from_config(config: TranslationConfig) -> ResnetGenerator:
    return ResnetGenerator(in_channels=config.channels, out_channels=config.channels, ngf=config.ngf,
                           n_blocks=config.n_blocks, antialias=config.antialias, dca=config.dca,
                           dca_placement=config.dca_placement, dca_reduction=config.dca_reduction,
                           dca_norm=config.dca_norm, dca_pooling=config.dca_pooling)


def build_networks(config: TranslationConfig, seed: int | None = None) -> dict[str, nn.Module]:
    """Every network of a training run, built and initialised from ``config`` (seeded): ``generator``,
    ``discriminator``, ``heads`` (one `PatchHead` per NCE tap, by tap name) and, with domain
    consistency, ``domain_heads`` (one shared head, or the fixed random ones)."""
    fork = torch.random.fork_rng(devices=[])
    with fork:
        torch.manual_seed(config.seed if seed is None else seed)
        generator = generator_from_config(config)
        discriminator = PatchDiscriminator(config.channels, config.ndf, config.n_layers_d)
        heads = nn.ModuleDict({tap: PatchHead(generator.tap_channels(tap), config.head_units) for tap in config.nce_layers})
        networks: dict[str, nn.Module] = {"generator": generator, "discriminator": discriminator, "heads": heads}
        if config.domain_consistency:
            count = 2 if config.dc_head == "random_pair" else 1
            width = config.head_units * len(config.nce_layers)
            networks["domain_heads"] = nn.ModuleList(DomainHead(width, config.dc_units) for _ in range(count))
        for module in networks.values():
            init_weights(module)
        if config.domain_consistency and config.dc_head != "shared":
            networks["domain_heads"].requires_grad_(False)  # fixed random heads: never trained
    return networks
