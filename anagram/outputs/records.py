"""The sample-folder format, written and read here and nowhere else.

One sample of `anagram generate` / `anagram batch` is three files in an output folder:

    <stem>.png         the image, with its record embedded as JSON in an iTXt chunk named "anagram"
    <stem>.views.png   a strip of every view of the image, each captioned with its view and prompt
    <stem>.json        the record (`SampleRecord`), written last: its presence marks the sample complete

Each file is written atomically (`anagram.outputs.atomic`), so a reader sees a whole sample or
none, and a resumed batch can trust the files. `SampleRecord` is the one definition of what a record
holds (with ``record_version``); `StoredSample` is a sample read back from disk, and `find_samples`
is the one reader of a folder (used by evaluate, animate, the contact sheet, the web app).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from ..views import View, parse_view
from .atomic import read_png_metadata, write_json, write_png
from .pictures import view_strip

RECORD_VERSION = 2
# Version 1 differs only in what the method name "mtl" meant: anti-segregation maps from the UNet's down
# and up blocks (the reference); since version 2 the default takes them from the down blocks only. A
# version-1 record is read with that meaning spelled out, so it still regenerates its own image.
V1_MTL_METHOD = {"anti_segregation": {"layers": ["down", "up"]}}
METRICS_FILE = "metrics.csv"  # per-sample scores of a folder (`anagram evaluate`), a "stem" column
IMAGE_SUFFIX, STRIP_SUFFIX, RECORD_SUFFIX = ".png", ".views.png", ".json"


class RecordError(ValueError):
    """A file or folder is not (or no longer) a readable anagram sample; the message says what to do."""


class MissingRecordError(FileNotFoundError):
    """An output image has no JSON record (the record of its views and prompts) beside it."""


@dataclass
class SampleRecord:
    """Everything that reproduces one sample (``anagram generate --from-json``), as stored in its JSON.

    ``views`` are view configs (``view.config()``); ``full_prompts`` the prompts as the model saw
    them (style prefix included); ``model``/``upscaler`` where the weights came from
    (`anagram.pipelines.loading.ModelSource.record`); ``method`` ``"baseline"``, ``"mtl"`` or a dict
    of `anagram.method.MultiTask` settings; ``scorer`` the balancing scorer that ran, as resolved
    (``"attention"``, ``"clip:<hub id or folder>"``; None without balancing); ``files`` the sample's
    file names.
    """

    prompts: list[str]
    full_prompts: list[str]
    views: list[dict]
    seed: int
    num_inference_steps: int
    guidance_scale: float
    model: dict
    style: str | None = None
    negative_prompt: str | None = None
    size: int | None = None
    dtype: str = "fp32"
    share_unconditional: bool = False
    method: Any = "baseline"
    scorer: str | None = None
    scheduler: dict | None = None
    upscaler: dict | None = None
    upscaler_steps: int | None = None
    versions: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)
    record_version: int = RECORD_VERSION

    @property
    def model_name(self) -> str:
        """The model as the user named it (``digits``, a hub id, a folder)."""
        return str(self.model.get("model") or self.model.get("location") or "")

    def to_dict(self) -> dict[str, Any]:
        """The JSON object, ``record_version`` first; values made JSON-safe."""
        payload = asdict(self)
        ordered = {"record_version": payload.pop("record_version"), **payload}
        return json.loads(json.dumps(ordered, default=str))

    @classmethod
    def from_dict(cls, payload: Any, source: str = "the record") -> SampleRecord:
        """A record from its JSON object; `RecordError` for another version or missing fields."""
        if not isinstance(payload, dict):
            raise RecordError(f"{source} is not a sample record (a JSON object written by `anagram generate`)")
        version = payload.get("record_version")
        if version == 1:
            payload = {**payload, "record_version": RECORD_VERSION}
            if payload.get("method") == "mtl":
                payload["method"] = V1_MTL_METHOD
            version = RECORD_VERSION
        if version != RECORD_VERSION:
            raise RecordError(f"{source}: unsupported record version {version!r} (this version of anagram reads "
                              f"versions 1 and {RECORD_VERSION})")
        known = {f.name for f in fields(cls)}
        required = ("prompts", "full_prompts", "views", "seed", "num_inference_steps", "guidance_scale", "model")
        missing = [name for name in required if name not in payload]
        if missing:
            raise RecordError(f"{source} lacks {', '.join(missing)}: it is not a complete sample record")
        return cls(**{key: value for key, value in payload.items() if key in known})


def is_sample_record(payload: Any) -> bool:
    """Whether a JSON object looks like a sample record (not a manifest line or a summary)."""
    return isinstance(payload, dict) and isinstance(payload.get("views"), list) and "seed" in payload


# -- writing ----------------------------------------------------------------------------------------------


def sample_files(stem: str) -> dict[str, str]:
    """The file names of the sample ``stem``."""
    return {"image": f"{stem}{IMAGE_SUFFIX}", "views": f"{stem}{STRIP_SUFFIX}", "record": f"{stem}{RECORD_SUFFIX}"}


def is_complete(out_dir: str | Path, files: dict[str, str]) -> bool:
    """Whether every file of a sample exists (the record is written last, so it is complete)."""
    return all((Path(out_dir) / name).is_file() for name in files.values())


def write_sample(out_dir: str | Path, stem: str, image: Image.Image, view_images: Sequence[Image.Image],
                 record: SampleRecord) -> dict[str, str]:
    """Write the image (record embedded), its views strip and, last, its JSON record; returns the files.

    ``record.files`` is set to the sample's file names.
    """
    out_dir = Path(out_dir)
    record.files = sample_files(stem)
    payload = record.to_dict()
    captions = [f"{config['name']}: {prompt}" for config, prompt in zip(record.views, record.full_prompts)]
    write_png(out_dir / record.files["views"], view_strip(view_images, captions))
    write_png(out_dir / record.files["image"], image, payload)
    write_json(out_dir / record.files["record"], payload)
    return record.files


# -- reading ----------------------------------------------------------------------------------------------


@dataclass
class StoredSample:
    """One sample on disk: its stem, image, record file and record."""

    stem: str
    image_path: Path
    record_path: Path
    record: SampleRecord

    def views(self) -> list[View]:
        return [parse_view(config) for config in self.record.views]

    def prompts(self) -> list[str]:
        """The full prompts (style included), one per view."""
        return list(self.record.full_prompts or self.record.prompts)

    def load_image(self) -> Image.Image:
        """The image as RGB."""
        with Image.open(self.image_path) as image:
            return image.convert("RGB")

    def image_tensor(self) -> torch.Tensor:
        """The image as stored, ``(C, H, W)`` float in [0, 1] (a grayscale image keeps one channel)."""
        with Image.open(self.image_path) as image:
            array = np.asarray(image, dtype=np.float32) / 255.0
        return torch.from_numpy(array[..., None] if array.ndim == 2 else array).permute(2, 0, 1)


def _how_to_make_records() -> str:
    return ("`anagram generate` writes <stem>.png with its <stem>.json (views and prompts) beside it; "
            "point at that image, its JSON or its folder, or regenerate it with `anagram generate`")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise RecordError(f"cannot read the record {path}: {error}") from None


def read_record(path: str | Path) -> SampleRecord:
    """The record of a sample from its JSON or from the metadata its PNG embeds."""
    path = Path(path)
    if not path.is_file():
        raise RecordError(f"no such file: {path}")
    if path.suffix.lower() == IMAGE_SUFFIX:
        try:
            payload = read_png_metadata(path)
        except OSError as error:
            raise RecordError(f"cannot read the image {path}: {error}") from None
        if payload is None:
            raise RecordError(f"{path} carries no anagram record (it was not written by `anagram generate`); "
                              "give the sample's JSON")
        return SampleRecord.from_dict(payload, str(path))
    return SampleRecord.from_dict(read_json(path), str(path))


def read_sample(record_path: str | Path) -> StoredSample:
    """The sample whose JSON record is ``record_path``; `RecordError` if it is not whole."""
    record_path = Path(record_path)
    payload = read_json(record_path)
    if not is_sample_record(payload):
        raise RecordError(f"{record_path} is not a sample record (no 'views'); {_how_to_make_records()}")
    record = SampleRecord.from_dict(payload, str(record_path))
    stem = record_path.name[: -len(RECORD_SUFFIX)] if record_path.name.endswith(RECORD_SUFFIX) else record_path.stem
    image_name = record.files.get("image") or f"{stem}{IMAGE_SUFFIX}"
    image_path = record_path.parent / image_name
    if not image_path.is_file():
        raise RecordError(f"the record {record_path} names the image {image_path}, which does not exist")
    return StoredSample(Path(image_name).stem, image_path, record_path, record)


def sample_record_paths(folder: str | Path) -> list[Path]:
    """The JSON files of a folder that are sample records, sorted by name."""
    candidates = sorted(Path(folder).glob(f"*{RECORD_SUFFIX}"))
    return [p for p in candidates if _looks_like_record(p)]


def _looks_like_record(path: Path) -> bool:
    try:
        return is_sample_record(json.loads(path.read_text()))
    except (OSError, UnicodeDecodeError, ValueError):
        return False


def find_samples(path: str | Path) -> list[StoredSample]:
    """The samples that ``path`` names: an output image (its JSON beside it), a JSON record, or a
    folder (every sample record in it, sorted by name). `MissingRecordError` for an image without
    its JSON, `RecordError` for a folder without samples or a broken record."""
    path = Path(path)
    if path.is_dir():
        records = sample_record_paths(path)
        if not records:
            raise RecordError(f"no samples in {path}: expected <stem>.json records next to their images; "
                              f"{_how_to_make_records()}")
        return [read_sample(p) for p in records]
    if not path.exists():
        raise RecordError(f"no such file or folder: {path}")
    if path.suffix.lower() == RECORD_SUFFIX:
        return [read_sample(path)]
    record_path = path.with_suffix(RECORD_SUFFIX)
    if not record_path.is_file():
        hint = ""
        if path.name.endswith(STRIP_SUFFIX):
            hint = f" ({path.name} is a strip of views; pass the image {path.name[: -len(STRIP_SUFFIX)]}.png)"
        raise MissingRecordError(f"no JSON record for {path}: expected {record_path}{hint}. "
                                 f"{_how_to_make_records()}.")
    return [read_sample(record_path)]


__all__ = [
    "METRICS_FILE", "RECORD_VERSION", "MissingRecordError", "RecordError", "SampleRecord", "StoredSample", "find_samples",
    "is_complete", "is_sample_record", "read_record", "read_sample", "sample_files", "sample_record_paths",
    "write_sample",
]
