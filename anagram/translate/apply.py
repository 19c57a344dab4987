"""Translate files and folders with a trained model; every output written atomically.

`load_translator` takes a model folder (``RUN/model``), a run folder (``RUN``) or the name of a
translator shipped in the package (``typeset``: handwritten to typeset digits, `BUILTIN_TRANSLATORS`). `apply_to_paths`
takes image files and folders: plain images become ``OUT/<stem>.png``; an anagram output folder
(sample records, `anagram.outputs.records`) becomes translated samples: the translated image, its
views strip (every view of the translated image, captioned with its prompt) and a JSON record,
written last, that keeps the original record and adds ``translation``: what was translated
(the source image), by which model (its folder and training config) and when.

``keep_views=True`` makes the translation of each sample equivariant to its views where they
form a finite group of symmetries (flips, rotations: `anagram.translate.keep_views`); the record
says which views were kept, and views that cannot be kept are named in ``ApplyResult.warnings``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from PIL import Image

from ..outputs.atomic import write_png
from ..testbed import MODELS_DIR
from ..outputs.pictures import to_pil
from ..outputs.records import RecordError, SampleRecord, find_samples, write_sample
from .data import IMAGE_SUFFIXES, list_images
from .keep_views import DEFAULT_MAX_ORDER, translate_keeping_views
from .pipeline import TranslationPipeline
from .trainer import MODEL_DIR

__all__ = ["ApplyResult", "BUILTIN_TRANSLATORS", "apply_to_paths", "load_translator", "model_folder"]


@dataclass
class ApplyResult:
    written: list[Path]
    samples: int
    images: int
    warnings: list[str] = field(default_factory=list)


#: Translators shipped inside the package, by name (``anagram translate apply typeset ...``).
BUILTIN_TRANSLATORS = {"typeset": MODELS_DIR / "typeset"}


def model_folder(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists() and str(path) in BUILTIN_TRANSLATORS:
        return BUILTIN_TRANSLATORS[str(path)]
    if (path / MODEL_DIR / "model_index.json").is_file():
        return path / MODEL_DIR
    return path


def load_translator(path: str | Path, device: str | torch.device | None = None) -> TranslationPipeline:
    folder = model_folder(path)
    if not folder.exists():
        raise FileNotFoundError(f"no translation model at {path}: give a run folder (with model/), its model/ folder "
                                f"or a shipped translator ({', '.join(BUILTIN_TRANSLATORS)})")
    pipe = TranslationPipeline.from_pretrained(folder)
    pipe.model_folder = folder
    return pipe.to(device) if device is not None else pipe


def _is_sample_folder(path: Path) -> bool:
    try:
        find_samples(path)
        return True
    except (RecordError, FileNotFoundError):
        return False


def apply_to_paths(pipe: TranslationPipeline, inputs: Sequence[str | Path], out: str | Path,
                   batch_size: int = 8, progress: Callable[[int, int], None] | None = None,
                   keep_views: bool = False, max_order: int = DEFAULT_MAX_ORDER) -> ApplyResult:
    """Translate every image named by ``inputs`` into ``out`` (see the module docstring)."""
    out = Path(out)
    plain: list[Path] = []
    samples = []
    for item in map(Path, inputs):
        if item.is_dir() and _is_sample_folder(item):
            samples.extend(find_samples(item))
        elif item.is_dir():
            plain.extend(list_images(item, "input"))
        elif item.is_file() and item.suffix.lower() in IMAGE_SUFFIXES:
            plain.append(item)
        else:
            raise FileNotFoundError(f"{item} is neither an image ({', '.join(IMAGE_SUFFIXES)}) nor a folder of images")
    stems = [p.stem for p in plain] + [s.stem for s in samples]
    duplicates = sorted({s for s in stems if stems.count(s) > 1})
    if duplicates:
        raise ValueError(f"several inputs would write the same output names: {duplicates[:5]}; translate them into "
                         "separate --out folders")
    total, done, written, notes = len(plain) + len(samples), 0, [], []
    if keep_views and plain:
        notes.append(f"--keep-views: {len(plain)} plain image(s) carry no views (no sample record); translated as they are")
    model = {"folder": str(getattr(pipe, "model_folder", "")), "config": pipe.record.get("config"),
             "step": pipe.record.get("step")}
    for start in range(0, len(plain), batch_size):
        chunk = plain[start:start + batch_size]
        pictures = []
        for path in chunk:
            with Image.open(path) as image:
                pictures.append(image.copy())
        for path, translated in zip(chunk, pipe(pictures, batch_size=batch_size).images):
            target = out / f"{path.stem}.png"
            write_png(target, translated, {"kind": "translated-image", "source": str(path), "model": model})
            written.append(target)
            done += 1
            if progress:
                progress(done, total)
    for sample in samples:
        kept = None
        if keep_views:
            translated, group = translate_keeping_views(pipe, sample.image_tensor(), sample.views(), on_unkept="ignore",
                                                        max_order=max_order, batch_size=batch_size)
            kept = group.describe()
            if group.not_kept:
                notes.append(f"{sample.stem}: {group.message()}")
        else:
            translated = pipe(sample.image_tensor(), output_type="pt").images[0]
        views = [to_pil(view.view_image(translated)) for view in sample.views()]
        record = SampleRecord.from_dict(sample.record.to_dict())
        record.versions = {**record.versions, "translation": {
            "source": {"image": str(sample.image_path), "record": str(sample.record_path)},
            "model": model, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "keep_views": kept}}
        files = write_sample(out, sample.stem, to_pil(translated) if translated.shape[0] == 3 else
                             Image.fromarray((translated[0].clamp(0, 1) * 255).round().byte().numpy(), "L"),
                             views, record)
        written.append(out / files["record"])
        done += 1
        if progress:
            progress(done, total)
    return ApplyResult(written=written, samples=len(samples), images=len(plain), warnings=notes)
