"""What the Translate tab does, apart from the page: the translators it offers, loaded once, and a request.

Translators are `anagram.translate` models (a ``TranslationPipeline`` folder, or a training run
folder holding ``model/``). The tab lists every one found in the shipped models folder
(``anagram/models/``), in the folders given with ``anagram app --translator`` and in the folders the
app serves (its output folder and the ``--browse`` folders, a few levels down); a path typed in the
page is accepted when it lies in one of those places (`results.inside`), so a request cannot make the
app read a folder its operator did not offer.

`TranslatorPool` loads each translator the first time a request names it and reuses it after (one
request on it at a time, as `models.ModelPool` does for the anagram pipelines). `translate` takes
uploaded image files and samples chosen from the served folders (their images), translates them
with `anagram.translate.apply.apply_to_paths` into a new folder of the output folder per request
(``translations/<translator>/<time>-<n>/``: no request overwrites another's), and returns the
source and translated files in pairs, for the page to show side by side.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from PIL import Image, UnidentifiedImageError

from .results import inside

SHIPPED = Path(__file__).resolve().parents[1] / "models"
PIPELINE_CLASS = "TranslationPipeline"
MODEL_SUBFOLDER = "model"  # a training run's final model (anagram.translate.trainer.MODEL_DIR)
SEARCH_DEPTH = 3
OUTPUT_FOLDER = "translations"
MAX_IMAGES = 32
_REQUESTS = itertools.count(1)


def translator_folder(path: str | Path) -> Path | None:
    """The model folder of ``path`` (itself, or its ``model/`` for a run folder) if it holds a translator."""
    path = Path(path)
    for candidate in (path, path / MODEL_SUBFOLDER):
        index = candidate / "model_index.json"
        try:
            if index.is_file() and json.loads(index.read_text()).get("_class_name") == PIPELINE_CLASS:
                return candidate
        except (OSError, ValueError):
            continue
    return None


def find_translators(places: Sequence[Path], depth: int = SEARCH_DEPTH) -> list[Path]:
    """Every translator model folder in ``places`` and their sub-folders down to ``depth`` (dot-folders skipped)."""
    found: list[Path] = []
    for place in places:
        place = Path(place).resolve()
        if not place.is_dir():
            continue
        candidates = [place]
        for level in range(1, depth + 1):
            candidates += sorted(p for p in place.glob("/".join(["*"] * level)) if p.is_dir() and not
                                 any(part.startswith(".") for part in p.relative_to(place).parts))
        for candidate in candidates:
            folder = translator_folder(candidate)
            if folder is not None and folder not in found:
                found.append(folder)
    return found


def describe(folder: Path) -> str:
    """A short label: the folder's name (the run's name for ``RUN/model``) and what it was trained on."""
    name = folder.parent.name if folder.name == MODEL_SUBFOLDER else folder.name
    try:
        record = json.loads((folder / "translation.json").read_text())
        data = record.get("data", {})
        preset = record.get("config", {}).get("name", "")
        if data:
            return f"{name} ({preset}: {data.get('A', 'A')} -> {data.get('B', 'B')})"
        return f"{name} ({preset})" if preset else name
    except (OSError, ValueError, AttributeError):
        return name


class TranslatorPool:
    """Translators by model folder, each loaded once; ``places`` are where they may come from."""

    def __init__(self, places: Sequence[Path], device: str | None = None):
        self.places = [Path(p).resolve() for p in places]
        self.device = device
        self._loaded: dict[Path, object] = {}
        self._locks: dict[Path, threading.Lock] = {}
        self._loading = threading.Lock()
        self.loads = 0

    def choices(self) -> list[tuple[str, str]]:
        """``(label, folder)`` of every translator found now."""
        return [(describe(folder), str(folder)) for folder in find_translators(self.places)]

    def resolve(self, path: str) -> Path:
        """The model folder of a page's translator path: inside the offered places, holding a translator."""
        if not (path or "").strip():
            raise ValueError("pick a translator (a folder with a trained translation model)")
        checked = inside(path.strip(), self.places)
        folder = translator_folder(checked)
        if folder is None:
            raise ValueError(f"{path} holds no translator: give a training run folder (with model/) or its model/ "
                             "folder (made by `anagram translate train`)")
        return folder

    @contextmanager
    def using(self, path: str) -> Iterator[object]:
        """The loaded translator of ``path``, held by this caller alone until the block ends."""
        folder = self.resolve(path)
        with self._loading:
            if folder not in self._loaded:
                from ..translate.apply import load_translator

                self._loaded[folder] = load_translator(folder, self.device)
                self._locks[folder] = threading.Lock()
                self.loads += 1
            pipe, lock = self._loaded[folder], self._locks[folder]
        with lock:
            yield pipe


@dataclass
class Translated:
    """One request's result: ``pairs`` of (source file, translated file), and the folder written."""

    folder: Path
    pairs: list[tuple[Path, Path]]
    translator: Path


def _check_images(paths: Sequence[Path]) -> None:
    for path in paths:
        try:
            with Image.open(path) as image:
                image.verify()
        except (UnidentifiedImageError, OSError, SyntaxError):
            raise ValueError(f"{path.name} is not an image this app can read (PNG, JPEG, WebP...)") from None


def request_folder(out_dir: Path, translator: Path) -> Path:
    """A new folder for one request's translations, never one that exists."""
    name = translator.parent.name if translator.name == MODEL_SUBFOLDER else translator.name
    base = Path(out_dir) / OUTPUT_FOLDER / name
    while True:
        folder = base / f"{time.strftime('%Y%m%d-%H%M%S')}-{next(_REQUESTS)}"
        try:
            folder.mkdir(parents=True)
            return folder
        except FileExistsError:
            continue


def translate(pool: TranslatorPool, translator: str, uploads: Sequence[str | Path], samples: Sequence[str | Path],
              out_dir: Path, roots: Sequence[Path]) -> Translated:
    """Translate uploaded files and chosen samples (record or image paths inside ``roots``) with one translator."""
    from ..outputs.records import read_sample
    from ..translate.apply import apply_to_paths

    sources = [Path(u) for u in uploads or []]
    for chosen in samples or []:
        sources.append(read_sample(inside(chosen, roots)).image_path)
    if not sources:
        raise ValueError("upload images or pick samples to translate")
    if len(sources) > MAX_IMAGES:
        raise ValueError(f"{len(sources)} images at once is more than this app translates ({MAX_IMAGES}); send fewer")
    missing = [s.name for s in sources if not s.is_file()]
    if missing:
        raise FileNotFoundError(f"no such file: {', '.join(missing)}")
    _check_images(sources)
    stems = [s.stem for s in sources]
    if len(set(stems)) != len(stems):
        raise ValueError("two of the images have the same name; rename one (each translation is named after its "
                         "source)")
    folder_of_model = pool.resolve(translator)
    with pool.using(translator) as pipe:
        folder = request_folder(out_dir, folder_of_model)
        result = apply_to_paths(pipe, sources, folder)
    pairs = [(source, folder / f"{source.stem}.png") for source in sources]
    if len(result.written) != len(pairs) or not all(t.is_file() for _, t in pairs):
        raise RuntimeError(f"the translator wrote {len(result.written)} file(s) for {len(pairs)} image(s)")
    return Translated(folder=folder, pairs=pairs, translator=folder_of_model)


__all__ = ["SHIPPED", "Translated", "TranslatorPool", "describe", "find_translators", "request_folder", "translate",
           "translator_folder"]
