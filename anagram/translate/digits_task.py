"""The offline translation task ``digits-to-typeset``: handwritten digits (A) to typeset digits (B).

    from anagram.translate.digits_task import load_task
    task = load_task()                        # fixed, seeded splits; nothing is downloaded
    task.train_a, task.train_b                # TensorDomains: what the translator trains on (no labels)
    task.test_a, task.test_labels_a           # labels are for the measurements only

* **Domain A** — scikit-learn's bundled 8x8 handwritten digits, upsampled to the glyph canvas
  (32x32, bilinear, `anagram.testbed.data`), split 80/20 stratified with the testbed's fixed seed:
  1437 train / 360 test images, the same split the digit classifier and diffusion model use.
* **Domain B** — typeset digits drawn by the glyph renderer (`anagram.testbed.glyphs`): the glyph
  model's fonts and placements (21 faces, stroke weights, scale 0.35-0.9, position anywhere,
  rotation up to 6 degrees), digit classes only, balanced (each digit equally often, in a seeded
  random order). Train and test are drawn from separate seeds: 1437 train / 360 test images,
  each rendered when first used (`TypesetDigits`).

The domains are unpaired: B is rendered from its own random stream, independent of A (image i of
A and image i of B have unrelated digits), and the translator gets domains that hand out images
only. Every set is a pure function of ``seed`` (``seed=0`` is the task; other seeds give
other B renders for robustness checks, A's split stays the testbed's).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import torch

from .data import Domain, TensorDomain, seed_for

TASK_NAME = "digits-to-typeset"
TASKS = (TASK_NAME,)
SIZE = 32
B_TRAIN_COUNT = 1437
B_TEST_COUNT = 360
_B_SEEDS = {"train": 101, "test": 202}

#: The translator recipe this task's runs use: 32x32 grayscale, small networks (generator ngf 16, 4
#: residual blocks; 2-layer PatchGAN), no flips (a flipped digit is another shape), batch 4, one
#: epoch (360 iterations) with the learning rate decaying linearly from 1e-3 to 0. CUT's 2e-4 was
#: too slow for this budget: in a 100-iteration pilot it still drew grey strokes on grey, where 1e-3
#: had a black background and thinner strokes. Merged under a preset's flags by `task_config`.
TASK_OVERRIDES = dict(
    channels=1, ngf=16, n_blocks=4, ndf=32, n_layers_d=2, head_units=64, dc_units=64, num_patches=64,
    nce_layers=("input", "down1", "down2", "res1", "res4"), preprocess="none", flip=False,
    batch_size=4, n_epochs=0, n_epochs_decay=1, lr=1e-3,
)

__all__ = [
    "B_TEST_COUNT", "B_TRAIN_COUNT", "DigitsTask", "SIZE", "TASKS", "TASK_NAME", "TASK_OVERRIDES", "is_task",
    "load_task", "task_config", "task_domains", "typeset_digits", "TypesetDigits",
]


@dataclass(frozen=True)
class DigitsTask:
    """The four sets of the task (images ``(N, 1, 32, 32)`` in [-1, 1]) and their digit labels (0-9)."""

    train_a: TensorDomain
    train_b: "TypesetDigits"
    test_a: TensorDomain
    test_b: "TypesetDigits"
    train_labels_a: torch.Tensor
    train_labels_b: torch.Tensor
    test_labels_a: torch.Tensor
    test_labels_b: torch.Tensor
    seed: int = 0

    def domains(self, split: str = "train") -> tuple[Domain, Domain]:
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        return (self.train_a, self.train_b) if split == "train" else (self.test_a, self.test_b)


class TypesetDigits(Domain):
    """``count`` typeset digits, each rendered on first use (and kept): image ``i`` is a pure function of
    ``(seed, i)``, so a run that draws a few hundred of them renders only those. The digits are
    balanced over 0-9 in a seeded random order (`labels`, known without rendering)."""

    def __init__(self, count: int, seed: int, size: int = SIZE, name: str | None = None):
        self.count, self.seed, self.size = int(count), int(seed), int(size)
        self.name = name or f"typeset digits ({count}, seed {seed})"
        order = torch.randperm(self.count, generator=torch.Generator().manual_seed(seed_for(self.seed, 0)))
        self.labels = (torch.arange(self.count) % 10)[order]
        self.channel_counts = [1] * self.count
        self.sizes = [(self.size, self.size)] * self.count
        self._rendered: dict[int, torch.Tensor] = {}

    def render(self, index: int) -> torch.Tensor:
        """Image ``index``: ``(1, size, size)`` in [-1, 1]."""
        from ..testbed.glyphs import class_index, render_batch

        if not 0 <= index < self.count:
            raise IndexError(f"{self.name} has {self.count} images, no index {index}")
        if index not in self._rendered:
            generator = torch.Generator().manual_seed(seed_for(self.seed, 1, index))
            glyph = class_index(str(int(self.labels[index])))
            self._rendered[index] = render_batch([glyph], generator, self.size).images[0].float()
        return self._rendered[index]

    def load(self, index: int, channels: int) -> torch.Tensor:
        image = self.render(index)
        return image.expand(3, -1, -1).clone() if channels == 3 else image.clone()

    def images(self, indices: Sequence[int] | None = None) -> torch.Tensor:
        """The images ``(N, 1, size, size)`` (all of them, or those of ``indices``)."""
        indices = range(self.count) if indices is None else indices
        return torch.stack([self.render(int(i)) for i in indices])


def typeset_digits(count: int, seed: int, size: int = SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` typeset digits ``(count, 1, size, size)`` in [-1, 1] and their digits (`TypesetDigits`)."""
    domain = TypesetDigits(count, seed, size)
    return domain.images(), domain.labels.clone()


@lru_cache(maxsize=4)
def _cached(seed: int) -> DigitsTask:
    from ..testbed.data import load_split

    split = load_split(SIZE)
    train_b = TypesetDigits(B_TRAIN_COUNT, seed_for(_B_SEEDS["train"], seed), name=f"{TASK_NAME}: typeset train "
                            f"({B_TRAIN_COUNT}, seed {seed})")
    test_b = TypesetDigits(B_TEST_COUNT, seed_for(_B_SEEDS["test"], seed), name=f"{TASK_NAME}: typeset test "
                           f"({B_TEST_COUNT}, seed {seed})")
    return DigitsTask(
        train_a=TensorDomain(split.train_images, f"{TASK_NAME}: handwritten train ({len(split.train_images)})"),
        train_b=train_b,
        test_a=TensorDomain(split.test_images, f"{TASK_NAME}: handwritten test ({len(split.test_images)})"),
        test_b=test_b,
        train_labels_a=split.train_labels, train_labels_b=train_b.labels,
        test_labels_a=split.test_labels, test_labels_b=test_b.labels, seed=seed)


def load_task(name: str = TASK_NAME, seed: int = 0) -> DigitsTask:
    """The task's sets (cached per process; the tensors are shared, do not modify them in place)."""
    if name not in TASKS:
        raise ValueError(f"unknown translation task {name!r}; built-in tasks: {', '.join(TASKS)}")
    return _cached(int(seed))


def is_task(data: Sequence[str | Path] | str | Path) -> bool:
    """Whether a DATA argument names a built-in task (and no folder of that name exists)."""
    items = [data] if isinstance(data, (str, Path)) else list(data)
    return len(items) == 1 and str(items[0]) in TASKS and not Path(items[0]).exists()


def task_domains(data: Sequence[str | Path] | str | Path, split: str = "train") -> tuple[Domain, Domain] | None:
    """Domains A and B of a built-in task named by DATA, or ``None`` when DATA is not one."""
    if not is_task(data):
        return None
    name = str(data if isinstance(data, (str, Path)) else list(data)[0])
    return load_task(name).domains(split)


def task_config(preset_name: str = "mcdut", **overrides):
    """A preset with the task's recipe (`TASK_OVERRIDES`) and ``overrides`` on top."""
    from .config import preset

    return preset(preset_name, **{**TASK_OVERRIDES, **overrides})
