"""Unpaired image domains and the per-step batches of training.

A domain is a folder of images (`FolderDomain`) or a tensor of images (`TensorDomain`, for tests
and the testbed). `find_domains` reads CUT's layout (``DATA/trainA``, ``trainB``, ``testA``,
``testB``) or two folders. Every folder is checked before training starts: missing or empty,
files that are not images (listed), unreadable images, mixed channel counts (an error unless
``mixed_channels="convert"``), sizes a batch cannot share.

Images are tensors ``(C, H, W)`` in [-1, 1]: 1 channel for grayscale, 3 for RGB, converted to the
translator's channel count (gray to RGB replicates; RGB to gray is PIL's ITU-R 601 luma).
Preprocessing presets (the config's ``preprocess``):

    resize_crop        CUT's default: resize to load_size^2 (bicubic), random crop crop_size, flip
    none               keep the size, resized to the nearest multiple of 4 the generator takes
    scale_width        width to load_size, height by aspect ratio (rounded to a multiple of 4)
    scale_width_crop   scale_width, then a random crop crop_size

`UnpairedBatches` makes the batch of any global step from the seed alone: at position p of the
run, the A image is a seeded per-epoch permutation's entry and the B image is drawn at random
(as CUT pairs them), with the augmentation seeded by p. A resumed run therefore sees the same
batches as an uninterrupted one, and each of several processes takes its own positions
(``(step * world + rank) * batch + j``): no sampler state to save, no overlap between ranks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from .config import TranslationConfig

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm")
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")
SIZE_MULTIPLE = 4

__all__ = [
    "DataError", "Domain", "FolderDomain", "IMAGE_SUFFIXES", "TensorDomain", "UnpairedBatches", "find_domains",
    "image_to_tensor", "infer_channels", "list_images", "preprocess", "seed_for", "tensor_to_image",
]


class DataError(ValueError):
    """A domain folder or image the translator cannot use; the message says what to do."""


def seed_for(*values: int) -> int:
    """A 32-bit seed mixed from integers (NumPy's SeedSequence): streams that never collide by accident."""
    return int(np.random.SeedSequence([int(v) for v in values]).generate_state(1)[0])


# ---------------------------------------------------------------------- images <-> tensors
def image_to_tensor(image: Image.Image, channels: int) -> torch.Tensor:
    """A PIL image as ``(channels, H, W)`` float in [-1, 1]."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # 16-bit / float gray: scale, do not clip
        array = np.asarray(image, dtype=np.float32)
        high = 65535.0 if image.mode != "F" and array.max() > 255 else (1.0 if image.mode == "F" else 255.0)
        array = np.clip(array / high, 0, 1)
        tensor = torch.from_numpy(array)[None]
        return (tensor.expand(channels, -1, -1).clone() if channels == 3 else tensor) * 2 - 1
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))  # transparent pixels shown on white
        image = Image.alpha_composite(background, rgba)
    image = image.convert("L" if channels == 1 else "RGB")
    array = np.asarray(image, dtype=np.uint8)
    tensor = torch.from_numpy(array.copy()).float() / 127.5 - 1
    return tensor[None] if channels == 1 else tensor.permute(2, 0, 1).contiguous()


def tensor_to_image(tensor: torch.Tensor) -> Image.Image:
    """``(C, H, W)`` in [-1, 1] (C = 1 or 3) as a PIL image ("L" or "RGB")."""
    array = ((tensor.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()
    if array.shape[0] == 1:
        return Image.fromarray(array[0].numpy(), mode="L")
    return Image.fromarray(array.permute(1, 2, 0).numpy(), mode="RGB")


# ---------------------------------------------------------------------- domains
class Domain:
    """A sequence of images of one domain; ``load(i, channels)`` gives ``(C, H, W)`` in [-1, 1]."""

    name: str
    channel_counts: list[int]
    sizes: list[tuple[int, int]]

    def __len__(self) -> int:
        return len(self.sizes)

    def load(self, index: int, channels: int) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def describe(self) -> str:
        return self.name


def list_images(folder: str | Path, label: str = "domain") -> list[Path]:
    """Image files of ``folder`` (sorted), or a `DataError` naming what is wrong with it."""
    folder = Path(folder)
    if not folder.exists():
        raise DataError(f"{label} folder {folder} does not exist")
    if not folder.is_dir():
        raise DataError(f"{label} {folder} is not a folder of images")
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    images = [p for p in entries if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    others = [p.name for p in entries if p.is_file() and p.suffix.lower() not in IMAGE_SUFFIXES]
    if others:
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        raise DataError(f"{label} folder {folder} holds files that are not images ({shown}); move them out "
                        f"(images end in {', '.join(IMAGE_SUFFIXES)})")
    if not images:
        raise DataError(f"{label} folder {folder} has no images")
    return images


class FolderDomain(Domain):
    """The images of one folder, each opened once up front (header only) to check it."""

    def __init__(self, folder: str | Path, label: str = "domain"):
        self.folder = Path(folder)
        self.name = label
        self.paths = list_images(self.folder, label)
        self.channel_counts, self.sizes, bad = [], [], []
        for path in self.paths:
            try:
                with Image.open(path) as image:
                    self.channel_counts.append(1 if image.mode in GRAY_MODES else 3)
                    self.sizes.append((image.height, image.width))
            except (UnidentifiedImageError, OSError) as error:
                bad.append(f"{path.name} ({type(error).__name__})")
        if bad:
            raise DataError(f"{label} folder {self.folder}: cannot read {len(bad)} image(s): {', '.join(bad[:5])}; "
                            "remove or re-save them")

    def load(self, index: int, channels: int) -> torch.Tensor:
        with Image.open(self.paths[index]) as image:
            return image_to_tensor(image, channels)

    def describe(self) -> str:
        return str(self.folder)


class TensorDomain(Domain):
    """Images held in memory: ``(N, C, H, W)`` in [-1, 1], C = 1 or 3."""

    def __init__(self, images: torch.Tensor, name: str = "tensor"):
        if images.dim() != 4 or images.shape[1] not in (1, 3) or images.shape[0] == 0:
            raise DataError(f"{name}: a tensor domain is (N, 1 or 3, H, W) with N >= 1, got {tuple(images.shape)}")
        self.images = images.float()
        self.name = name
        self.channel_counts = [images.shape[1]] * images.shape[0]
        self.sizes = [tuple(images.shape[-2:])] * images.shape[0]

    def load(self, index: int, channels: int) -> torch.Tensor:
        image = self.images[index]
        if image.shape[0] == channels:
            return image.clone()
        if channels == 3:
            return image.expand(3, -1, -1).clone()
        weights = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)  # ITU-R 601 luma, as PIL's "L"
        return (image * weights).sum(0, keepdim=True)


def find_domains(paths: Sequence[str | Path], split: str = "train") -> tuple[FolderDomain, FolderDomain]:
    """Domains A and B: ``DATA`` in CUT's layout (``DATA/<split>A``, ``DATA/<split>B``) or two folders."""
    paths = [Path(p) for p in paths]
    if len(paths) == 2:
        return FolderDomain(paths[0], "domain A"), FolderDomain(paths[1], "domain B")
    if len(paths) != 1:
        raise DataError(f"give one data folder (with {split}A/ and {split}B/) or two image folders, got {len(paths)}")
    root = paths[0]
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist")
    a, b = root / f"{split}A", root / f"{split}B"
    if not (a.is_dir() and b.is_dir()):
        raise DataError(f"{root} has no {split}A/ and {split}B/ folders (CUT's layout); give those two folders, "
                        f"or two image folders: DATA_A DATA_B")
    return FolderDomain(a, f"domain A ({split}A)"), FolderDomain(b, f"domain B ({split}B)")


def infer_channels(*domains: Domain) -> int:
    """1 when every image of every domain is grayscale, else 3."""
    return 1 if all(c == 1 for d in domains for c in d.channel_counts) else 3


def check_domain(domain: Domain, channels: int, mixed_channels: str = "error") -> None:
    counts = set(domain.channel_counts)
    if len(counts) > 1 and mixed_channels != "convert":
        gray = sum(c == 1 for c in domain.channel_counts)
        raise DataError(f"{domain.describe()} mixes grayscale ({gray}) and colour ({len(domain) - gray}) images; "
                        f"pass mixed_channels='convert' (CLI: --mixed-channels convert) to convert all to "
                        f"{channels} channel(s), or make the folder uniform")


# ---------------------------------------------------------------------- preprocessing
def _round_size(side: int) -> int:
    return max(SIZE_MULTIPLE * 2, int(round(side / SIZE_MULTIPLE)) * SIZE_MULTIPLE)


def _resize(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    if tuple(image.shape[-2:]) == (height, width):
        return image
    out = F.interpolate(image[None], size=(height, width), mode="bicubic", align_corners=False, antialias=True)
    return out[0].clamp(-1, 1)


def _random_crop(image: torch.Tensor, size: int, generator: torch.Generator | None) -> torch.Tensor:
    height, width = image.shape[-2:]
    if size > height or size > width:
        raise DataError(f"crop_size {size} is larger than an image of {height}x{width} after resizing; lower crop_size")
    top = int(torch.randint(0, height - size + 1, (), generator=generator))
    left = int(torch.randint(0, width - size + 1, (), generator=generator))
    return image[:, top:top + size, left:left + size]


def output_size(height: int, width: int, config: TranslationConfig, train: bool = True) -> tuple[int, int]:
    """The size an image of ``height x width`` has after preprocessing."""
    if config.preprocess == "resize_crop":
        return (config.crop_size, config.crop_size) if train else (config.crop_size, config.crop_size)
    if config.preprocess == "none":
        return _round_size(height), _round_size(width)
    scaled = (_round_size(height * config.load_size / width), _round_size(config.load_size))
    if config.preprocess == "scale_width_crop" and train:
        return config.crop_size, config.crop_size
    return scaled


def preprocess(image: torch.Tensor, config: TranslationConfig, generator: torch.Generator | None = None,
               train: bool = True) -> torch.Tensor:
    """Apply the config's preset to ``(C, H, W)``; ``train=False`` is deterministic (no crop offset, no
    flip: the resize_crop preset resizes straight to crop_size)."""
    height, width = image.shape[-2:]
    preset = config.preprocess
    if preset == "resize_crop":
        if train:
            image = _random_crop(_resize(image, config.load_size, config.load_size), config.crop_size, generator)
        else:
            image = _resize(image, config.crop_size, config.crop_size)
    elif preset == "none":
        image = _resize(image, _round_size(height), _round_size(width))
    else:
        image = _resize(image, _round_size(height * config.load_size / width), _round_size(config.load_size))
        if preset == "scale_width_crop" and train:
            image = _random_crop(image, config.crop_size, generator)
    if train and config.flip and bool(torch.rand((), generator=generator) < 0.5):
        image = image.flip(-1)
    return image.contiguous()


# ---------------------------------------------------------------------- batches
@dataclass
class UnpairedBatches:
    """The batch of every global training step, from the seed alone (module docstring)."""

    domain_a: Domain
    domain_b: Domain
    config: TranslationConfig
    world_size: int = 1
    rank: int = 0

    def __post_init__(self):
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is not in [0, {self.world_size})")
        for domain in (self.domain_a, self.domain_b):
            if len(domain) == 0:
                raise DataError(f"{domain.describe()} has no images")
        if self.config.batch_size > 1 and self.config.preprocess in ("none", "scale_width"):
            for domain in (self.domain_a, self.domain_b):
                sizes = {output_size(h, w, self.config) for h, w in domain.sizes}
                if len(sizes) > 1:
                    raise DataError(f"{domain.describe()}: images of {len(sizes)} different sizes cannot share a "
                                    f"batch of {self.config.batch_size}; use batch_size 1 or a cropping preprocess")

    @property
    def samples_per_epoch(self) -> int:
        return max(len(self.domain_a), len(self.domain_b))

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.samples_per_epoch / (self.config.batch_size * self.world_size))

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * (self.config.n_epochs + self.config.n_epochs_decay)

    def positions(self, step: int) -> list[int]:
        """Global sample positions of this rank at ``step``; ranks never share one."""
        batch = self.config.batch_size
        first = (step * self.world_size + self.rank) * batch
        return list(range(first, first + batch))

    def indices(self, position: int) -> tuple[int, int]:
        """(A index, B index) of a global position."""
        per_epoch = self.steps_per_epoch * self.config.batch_size * self.world_size
        epoch, within = divmod(position, per_epoch)
        seed = self.config.seed
        order = torch.randperm(len(self.domain_a), generator=torch.Generator().manual_seed(seed_for(seed, epoch, 0)))
        index_a = int(order[within % len(self.domain_a)])
        index_b = int(torch.randint(0, len(self.domain_b), (), generator=torch.Generator().manual_seed(seed_for(seed, position, 1))))
        return index_a, index_b

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)``: ``(batch, C, H, W)`` images of A and of B for this rank at ``step``."""
        xs, ys = [], []
        channels = self.config.channels
        for position in self.positions(step):
            index_a, index_b = self.indices(position)
            seed = self.config.seed
            xs.append(preprocess(self.domain_a.load(index_a, channels), self.config,
                                 torch.Generator().manual_seed(seed_for(seed, position, 2))))
            ys.append(preprocess(self.domain_b.load(index_b, channels), self.config,
                                 torch.Generator().manual_seed(seed_for(seed, position, 3))))
        return torch.stack(xs), torch.stack(ys)


class StepBatches(torch.utils.data.Dataset):
    """Steps ``start .. stop - 1`` of `UnpairedBatches` as a dataset (so a DataLoader's workers can load ahead)."""

    def __init__(self, batches: UnpairedBatches, start: int, stop: int):
        self.batches, self.start, self.stop = batches, start, stop

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.batches.batch(self.start + index)
