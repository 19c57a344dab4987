"""The app's output folder: samples in the format of `anagram generate`, and the files offered for download.

Every generated sample is written with `anagram.outputs.records.write_sample` (image with its record
embedded, views strip, JSON record last), so `anagram evaluate`, `animate`, `sheet` and `print` work
on the folder. Beside a sample the app adds what it offers for download, named after the sample's
stem: ``<stem>.view-<k>-<name>.png`` (each view as seen), ``<stem>.mp4``/``<stem>.gif`` (the names
`anagram animate` uses) and ``<stem>.pdf`` (its print sheet).

Stems are those of `anagram generate`; when a stem is taken by a different sample (same prompts,
views and seed, other settings) a short digest of the settings is added, so no request overwrites
another's result. A path that comes from a page is resolved and must lie inside a served folder
(`inside`) before anything reads it.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Sequence

from ..outputs.animation import write_animation
from ..outputs.atomic import write_png
from ..outputs.pictures import enlarge, to_pil, to_tensor
from ..outputs.print_sheet import write_print_sheet
from ..outputs.records import RECORD_SUFFIX, RecordError, SampleRecord, StoredSample, read_sample
from ..runs.model import LoadedModel, Sample
from ..runs.request import Request, sample_stem

ANIMATION_SIZE = 320  # px, long side: small enough to encode in a moment, large enough to watch
STEM_LOCK = threading.Lock()  # choosing a stem and writing the sample is one step


class OutsideFolderError(ValueError):
    """A path from a request points outside the folders the app serves."""


def inside(path: str | Path, roots: Sequence[Path]) -> Path:
    """``path`` resolved, if it lies in one of ``roots`` (resolved too); else `OutsideFolderError`."""
    resolved = Path(path).expanduser().resolve()
    for root in roots:
        root = Path(root).resolve()
        if resolved == root or root in resolved.parents:
            return resolved
    raise OutsideFolderError(f"{path} is outside the folders this app serves "
                             f"({', '.join(str(Path(r)) for r in roots)})")


def _settings(record: SampleRecord) -> dict:
    """What makes two records the same sample (not the package versions, not the file names)."""
    payload = record.to_dict()
    payload.pop("files", None)
    payload.pop("versions", None)
    return payload


def free_stem(out_dir: Path, base: str, record: SampleRecord) -> str:
    """``base`` if it is free (or holds this very sample), else ``base`` plus a digest of the settings."""
    existing = out_dir / f"{base}{RECORD_SUFFIX}"
    if not existing.is_file():
        return base
    try:
        if _settings(read_sample(existing).record) == _settings(record):
            return base
    except RecordError:
        pass  # a broken sample under the name: do not overwrite it, take another name
    digest = hashlib.sha1(json.dumps(_settings(record), sort_keys=True).encode()).hexdigest()[:8]
    return f"{base}__{digest}"


def save(out_dir: Path, loaded: LoadedModel, request: Request, sample: Sample) -> StoredSample:
    """Write ``sample`` into ``out_dir`` as `anagram generate` would; the stored sample."""
    with STEM_LOCK:
        stem = free_stem(out_dir, sample_stem(request, sample.seed), loaded.record(request, sample))
        files = loaded.save_sample(out_dir, request, sample, stem=stem)
    return read_sample(out_dir / files["record"])


def view_files(sample: StoredSample) -> list[Path]:
    """One PNG per view (the view as seen, small images enlarged crisply), written once."""
    folder, paths = sample.image_path.parent, []
    image = None
    for k, view in enumerate(sample.views()):
        path = folder / f"{sample.stem}.view-{k + 1}-{view.name}.png"
        if not path.is_file():
            image = image if image is not None else to_tensor(sample.load_image())
            write_png(path, enlarge(to_pil(view.view_image(image))))
        paths.append(path)
    return paths


def animation_files(sample: StoredSample) -> dict[str, Path]:
    """The sample's MP4 and GIF (``{"mp4": ..., "gif": ...}``), made once; MP4 may be missing if
    the video encoder fails, the GIF is the fallback."""
    folder = sample.image_path.parent
    wanted = {fmt: folder / f"{sample.stem}.{fmt}" for fmt in ("mp4", "gif")}
    missing = [fmt for fmt, path in wanted.items() if not path.is_file()]
    if missing:
        try:
            write_animation(sample.record_path, folder, missing, size=ANIMATION_SIZE)
        except (OSError, RuntimeError):
            if "gif" in missing:
                write_animation(sample.record_path, folder, ["gif"], size=ANIMATION_SIZE)
    return {fmt: path for fmt, path in wanted.items() if path.is_file()}


def print_sheet_file(samples: Sequence[StoredSample], paper: str, dpi: int, name: str | None = None) -> Path:
    """The print sheet of ``samples`` (one page each) beside the first: ``<stem>.<paper>-<dpi>dpi.pdf``."""
    first = samples[0]
    stem = name or first.stem
    path = first.image_path.parent / f"{stem}.{paper.lower()}-{int(dpi)}dpi.pdf"
    return write_print_sheet(samples, path, paper=paper, dpi=int(dpi))


def downloads(sample: StoredSample) -> list[Path]:
    """Every file offered for one sample: its views, the strip, the JSON, the image and its animation."""
    strip = sample.image_path.parent / sample.record.files.get("views", f"{sample.stem}.views.png")
    animation = animation_files(sample)
    return [*view_files(sample), strip, sample.record_path, sample.image_path, *animation.values()]


__all__ = ["OutsideFolderError", "animation_files", "downloads", "free_stem", "inside", "print_sheet_file", "save",
           "view_files"]
