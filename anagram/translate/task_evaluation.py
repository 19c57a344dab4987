"""The measurements of the ``digits-to-typeset`` task (`anagram.translate.digits_task`), on its test split.

    report = evaluate_task(translate)       # translate: (N, 1, 32, 32) in [-1, 1] -> same

Three numbers, each from a network that is not the translator and not trained on its outputs:

* **content**: the share of handwritten test digits a whose translation G(a) a typeset-digit
  reader reads as a's digit. The reader is the glyph judge (`anagram.testbed.glyph_judge`, a
  36-class reader of typeset glyph renders, heavily augmented) restricted to its ten digit
  classes; where it is not installed, the fallback is a 10-class typeset-digit classifier trained
  here (`train_typeset_digit_classifier`). The report names the one used.
* **realism**: FID and KID between G(A_test) and B_test (torchmetrics, via
  `anagram.translate.evaluation.evaluate_translation`) in the pooled 96-d features of the
  *realism network*, a typeset-vs-not-typeset classifier trained for this testbed on real A and B
  train images and hard negatives made from them (`train_domain_classifier`, `domain_batch`,
  `anagram.translate.hard_negatives`: handwriting made crisp and placed like a render, renders
  warped by hand; shipped at ``anagram/models/typeset_domain``), never on a translator's output;
  it is not the content reader. Its first version saw handwritten vs typeset only and keyed on
  sharpness: it took every translation for typeset, and FID/KID were about 0 for every translator.
* **domain rate**: the share of G(a) the same network takes for typeset (P(typeset) > 0.5).

Every number comes with its do-nothing baseline (the untranslated handwritten digit) and, for the
classifiers, their score on real typeset test digits (the ceiling).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..testbed import MODELS_DIR
from .digits_task import DigitsTask, TypesetDigits, load_task

DOMAIN_CLASSIFIER_DIR = MODELS_DIR / "typeset_domain"
TYPESET_DIGITS_DIR = MODELS_DIR / "typeset_digit_classifier"
DIGIT_GLYPHS = slice(26, 36)  # '0'..'9' in anagram.testbed.glyphs.CLASSES

__all__ = [
    "DOMAIN_CLASSIFIER_DIR", "DomainFeatures", "TaskReport", "content_reader", "evaluate_task", "load_domain_classifier",
    "pipeline_translator",
    "train_domain_classifier", "train_typeset_digit_classifier",
]


# ---------------------------------------------------------------------- the networks
def _train(make: Callable[[], nn.Module], sample: Callable[[torch.Generator], tuple[torch.Tensor, torch.Tensor]],
           steps: int, seed: int, lr: float = 3e-3) -> nn.Module:
    """AdamW + one-cycle on batches from ``sample(generator)``, augmented as the testbed classifier's.
    The network is built by ``make()`` after seeding: built before, its initial weights came from whatever
    the process had drawn until then, and the same call gave another network in another script."""
    from ..testbed.classifier import augment

    torch.manual_seed(seed)
    model = make()
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.15)
    model.train()
    for _ in range(steps):
        x, y = sample(generator)
        loss = F.cross_entropy(model(augment(x, generator)), y, label_smoothing=0.05)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    return model.eval()


def _save(model, out: Path, extra: dict) -> Path:
    from ..testbed.classifier import save_classifier
    from ..testbed.trainer import replace_folder

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp.", dir=out.parent))
    save_classifier(model, staging, extra)
    replace_folder(staging, out)
    return out


@torch.no_grad()
def _accuracy(model, images: torch.Tensor, labels: torch.Tensor) -> float:
    return float((model(images).argmax(-1) == labels).float().mean())


#: The realism network's batch: half real typeset renders (label typeset), half "not typeset": real
#: handwritten digits and the hard negatives of `hard_negatives` (sharp-stroked handwriting placed like
#: a render; warped renders), so that neither sharpness nor placement nor stroke weight tells the classes
#: apart, only the glyphs' shapes. Shares of the batch.
NEGATIVE_MIX = {"handwritten": 0.125, "sharpened handwriting": 0.1875, "warped typeset": 0.1875}


def domain_batch(a: torch.Tensor, b_images: Callable[[list[int]], torch.Tensor], b_count: int, batch: int,
                 generator: torch.Generator, hard_negatives: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """One training batch of the domain classifier: images and labels (0 not typeset, 1 typeset), from
    real train-split images only (``a`` handwritten; ``b_images(indices)`` typeset renders)."""
    from .hard_negatives import elastic_typeset, sharpened_handwriting

    half = batch // 2
    positives = b_images(torch.randint(0, b_count, (batch - half,), generator=generator).tolist())
    if not hard_negatives:
        negatives = a[torch.randint(0, len(a), (half,), generator=generator)]
    else:
        counts = [round(batch * share) for share in NEGATIVE_MIX.values()]
        counts[0] = half - sum(counts[1:])
        plain = a[torch.randint(0, len(a), (counts[0],), generator=generator)]
        sharp = sharpened_handwriting(a[torch.randint(0, len(a), (counts[1],), generator=generator)], generator)
        warped = elastic_typeset(b_images(torch.randint(0, b_count, (counts[2],), generator=generator).tolist()),
                                 generator)
        negatives = torch.cat([plain, sharp, warped])
    return torch.cat([negatives, positives]), torch.cat([torch.zeros(half, dtype=torch.long),
                                                         torch.ones(batch - half, dtype=torch.long)])


def hard_test_sets(task: DigitsTask, seed: int = 12345) -> dict[str, tuple[torch.Tensor, int]]:
    """The domain classifier's held-out checks on the *test* split: each set and its true label."""
    from .hard_negatives import elastic_typeset, sharpened_handwriting

    generator = torch.Generator().manual_seed(seed)
    a, b = task.test_a.images, task.test_b.images()
    return {"handwritten": (a, 0), "typeset": (b, 1),
            "sharpened handwriting": (sharpened_handwriting(a, generator), 0),
            "warped typeset": (elastic_typeset(b, generator), 0)}


def train_domain_classifier(out: str | Path | None = DOMAIN_CLASSIFIER_DIR, steps: int = 1500, batch: int = 64,
                            seed: int = 0, task: DigitsTask | None = None, hard_negatives: bool = True):
    """Typeset (1) vs not typeset (0): real train renders against real handwritten train digits and, with
    ``hard_negatives``, the synthetic hard negatives made from those same train images (`domain_batch`).
    Never sees a translator's output. Returns (model, accuracy per held-out test set)."""
    from ..testbed.classifier import DigitClassifier

    task = task or load_task()
    a, b = task.train_a.images, task.train_b

    def sample(generator):
        return domain_batch(a, b.images, b.count, batch, generator, hard_negatives)

    started = time.time()
    model = _train(lambda: DigitClassifier(num_classes=2), sample, steps, seed)
    accuracy = {name: _accuracy(model, images, torch.full((len(images),), label, dtype=torch.long))
                for name, (images, label) in hard_test_sets(task).items()}
    if out is not None:
        _save(model, Path(out), {"kind": "typeset-domain-classifier", "classes": ["not typeset", "typeset"],
                                 "test_accuracy": {k: round(v, 4) for k, v in accuracy.items()},
                                 "negatives": dict(NEGATIVE_MIX) if hard_negatives else {"handwritten": 0.5},
                                 "steps": steps, "batch": batch, "seed": seed,
                                 "train_seconds": round(time.time() - started, 1),
                                 "trained_by": "python scripts/train_typeset_translator.py --measures"})
    return model, accuracy


def train_typeset_digit_classifier(out: str | Path | None = TYPESET_DIGITS_DIR, steps: int = 400, batch: int = 64,
                                   seed: int = 0):
    """The content reader's fallback: 10 digits on fresh typeset renders (never the task's test set)."""
    from ..testbed.classifier import DigitClassifier

    renders = TypesetDigits(steps * batch // 4, seed=10_000 + seed)  # each render reused ~4 times, augmented

    def sample(generator):
        index = torch.randint(0, renders.count, (batch,), generator=generator)
        return renders.images(index.tolist()), renders.labels[index]

    started = time.time()
    model = _train(lambda: DigitClassifier(num_classes=10), sample, steps, seed)
    task = load_task()
    accuracy = _accuracy(model, task.test_b.images(), task.test_labels_b)
    if out is not None:
        _save(model, Path(out), {"kind": "typeset-digit-classifier", "test_accuracy": round(accuracy, 4),
                                 "steps": steps, "seed": seed, "train_seconds": round(time.time() - started, 1)})
    return model, accuracy


def load_domain_classifier(path: str | Path = DOMAIN_CLASSIFIER_DIR):
    from ..testbed.classifier import load_classifier

    path = Path(path)
    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"no domain classifier at {path}; train it with "
                                "`python scripts/train_typeset_translator.py --measures`")
    return load_classifier(path)


def content_reader(fallback: str | Path = TYPESET_DIGITS_DIR) -> tuple[Callable[[torch.Tensor], torch.Tensor], str]:
    """``(read, name)``: ``read(images in [-1, 1])`` gives digit probabilities ``(N, 10)`` (the glyph
    judge's digits when it is installed, else the typeset-digit classifier at ``fallback``)."""
    from ..testbed.classifier import classify

    try:
        from ..testbed.glyph_judge import GLYPH_JUDGE_DIR, load_glyph_judge

        if (GLYPH_JUDGE_DIR / "model.safetensors").is_file():
            judge = load_glyph_judge()

            def read_glyphs(images):
                probs = classify(images, judge)[:, DIGIT_GLYPHS]
                return probs / probs.sum(-1, keepdim=True).clamp_min(1e-12)

            return read_glyphs, "glyph judge (anagram/models/glyph_judge), digit classes only"
    except ImportError:
        pass
    from ..testbed.classifier import load_classifier

    fallback = Path(fallback)
    if not (fallback / "model.safetensors").is_file():
        raise FileNotFoundError(f"no content reader: neither the glyph judge nor {fallback} is installed; "
                                "train one with `python scripts/train_typeset_translator.py --digit-reader`")
    reader = load_classifier(fallback)
    return (lambda images: classify(images, reader)), f"typeset-digit classifier ({fallback.name})"


class DomainFeatures(nn.Module):
    """The domain classifier's pooled features (96-d); input ``(B, C, H, W)`` in [0, 1] (torchmetrics')."""

    def __init__(self, classifier=None):
        super().__init__()
        self.classifier = classifier if classifier is not None else load_domain_classifier()
        self.num_features = self.classifier.head.in_features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        from ..testbed.classifier import prepare

        return self.classifier.features(prepare(images.float(), value_range=(0.0, 1.0))).mean(dim=(2, 3))


# ---------------------------------------------------------------------- the report
@dataclass
class TaskReport:
    task: str
    content_accuracy: float          # reader(G(a)) == digit of a
    content_accuracy_source: float   # reader(a): the do-nothing baseline
    content_accuracy_real_b: float   # reader on real typeset test digits: the ceiling
    fid: float
    kid_mean: float
    kid_std: float
    fid_source: float
    kid_source_mean: float
    domain_rate: float               # P(typeset | G(a)) > 0.5
    domain_rate_source: float
    domain_rate_real_b: float
    identity_distance: float
    copying: bool
    n_source: int
    n_target: int
    content_reader: str
    features: str
    seed: int

    def to_dict(self) -> dict:
        return asdict(self)

    def lines(self) -> list[str]:
        return [
            f"content (reader reads G(a) as a's digit): {self.content_accuracy:.3f}   "
            f"(untranslated a: {self.content_accuracy_source:.3f}; real typeset: {self.content_accuracy_real_b:.3f})",
            f"realism FID {self.fid:.2f}  KID {self.kid_mean:.4f} +- {self.kid_std:.4f}   "
            f"(untranslated a: FID {self.fid_source:.2f}, KID {self.kid_source_mean:.4f})",
            f"taken for typeset: {self.domain_rate:.3f}   (untranslated a: {self.domain_rate_source:.3f}; "
            f"real typeset: {self.domain_rate_real_b:.3f})",
            f"content reader: {self.content_reader}; features: {self.features}",
        ]


@torch.no_grad()
def evaluate_task(translate: Callable[[torch.Tensor], torch.Tensor], task: DigitsTask | None = None, seed: int = 0,
                  batch_size: int = 120, domain_classifier: str | Path = DOMAIN_CLASSIFIER_DIR,
                  reader: tuple[Callable, str] | None = None) -> TaskReport:
    """The task's numbers for ``translate`` (``(N, 1, H, W)`` in [-1, 1] to the same) on the test split."""
    from ..testbed.classifier import classify
    from .data import TensorDomain
    from .evaluation import evaluate_translation

    task = task or load_task()
    read, reader_name = reader or content_reader()
    domain = load_domain_classifier(domain_classifier)
    a, labels = task.test_a.images, task.test_labels_a
    b = task.test_b.images()
    fakes = torch.cat([translate(a[i:i + batch_size]).float().clamp(-1, 1) for i in range(0, len(a), batch_size)])

    def content(images, truth):
        return float((read(images).argmax(-1) == truth).float().mean())

    def typeset(images):
        return float((classify(images, domain)[:, 1] > 0.5).float().mean())

    order = iter(range(len(a)))  # FID/KID of the same translations (the images come in order), not a second pass

    def lookup(x):
        i = next(order, None)
        return fakes[i][None] if i is not None and len(x) == 1 and torch.equal(a[i], x[0]) else translate(x)

    realism = evaluate_translation(lookup, TensorDomain(a, "handwritten test"), TensorDomain(b, "typeset test"),
                                   features=DomainFeatures(domain), channels=1, seed=seed)
    return TaskReport(
        task=task.test_a.name.split(":")[0], content_accuracy=content(fakes, labels),
        content_accuracy_source=content(a, labels), content_accuracy_real_b=content(b, task.test_labels_b),
        fid=realism.fid, kid_mean=realism.kid_mean, kid_std=realism.kid_std, fid_source=realism.fid_source,
        kid_source_mean=realism.kid_source_mean, domain_rate=typeset(fakes), domain_rate_source=typeset(a),
        domain_rate_real_b=typeset(b), identity_distance=realism.identity_distance, copying=realism.copying,
        n_source=len(a), n_target=len(b), content_reader=reader_name,
        features=f"realism network ({Path(domain_classifier).name}, hard negatives), pooled 96-d", seed=seed)


def pipeline_translator(pipe) -> Callable[[torch.Tensor], torch.Tensor]:
    """A `TranslationPipeline` as ``(N, C, H, W)`` in [-1, 1] -> same."""
    return lambda x: pipe((x + 1) / 2, output_type="pt", batch_size=len(x)).images * 2 - 1
