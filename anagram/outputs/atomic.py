"""Atomic file output: nothing half-written survives an interruption (Ctrl-C, kill, full disk).

Every file is written to a temporary name in its destination folder (``.NAME.XXXX.tmp``) and renamed
into place, which is atomic on POSIX and Windows filesystems, so a reader (or a resumed batch) sees
either the whole file or nothing; `remove_stale_temporaries` clears what a killed writer left. Files
get the usual permissions (``0666 & ~umask``), whatever the temporary file had.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from PIL import Image, PngImagePlugin

PNG_TEXT_KEY = "anagram"
# mkstemp creates files readable by their owner only; outputs get the usual permissions (0666 & ~umask).
_UMASK = os.umask(0)
os.umask(_UMASK)


TEMPORARY_GLOBS = (".*.tmp", ".*.tmp.*")  # the names `temporary_path` gives (a suffix kept for ffmpeg)


@contextmanager
def temporary_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary file beside ``path`` for a writer that wants a file name (ffmpeg); renamed onto
    ``path`` with the usual permissions when the block succeeds, removed when it fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def remove_stale_temporaries(folder: str | os.PathLike) -> int:
    """Delete the temporary files a killed writer left in ``folder``; returns how many."""
    removed = 0
    for pattern in TEMPORARY_GLOBS:
        for tmp in Path(folder).glob(pattern):
            try:
                tmp.unlink()
                removed += 1
            except FileNotFoundError:
                pass
    return removed


def write_json(path: str | os.PathLike, payload: Any) -> Path:
    return atomic_write_bytes(path, (json.dumps(payload, indent=2, sort_keys=False) + "\n").encode())


def write_png(path: str | os.PathLike, image: Image.Image, metadata: dict | None = None) -> Path:
    """Save a PNG atomically, with `metadata` embedded as JSON in an iTXt chunk named "anagram"."""
    info = PngImagePlugin.PngInfo()
    if metadata is not None:
        info.add_itxt(PNG_TEXT_KEY, json.dumps(metadata, sort_keys=False))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return atomic_write_bytes(path, buffer.getvalue())


def read_png_metadata(path: str | os.PathLike) -> dict | None:
    """The JSON that `write_png` embedded, or None."""
    with Image.open(path) as image:
        text = image.text.get(PNG_TEXT_KEY) if hasattr(image, "text") else None
    return json.loads(text) if text else None
