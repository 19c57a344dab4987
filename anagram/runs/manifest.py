"""The manifest of a batch folder: the index of finished units, kept exact through kills and crashes.

``DIR/manifest.jsonl`` holds one JSON line per finished unit (unit, job line, seed, rank, files,
time). While running, each process appends (flushed and fsynced) to its own
``DIR/manifest.rank{R}.jsonl``; the main process merges these into ``manifest.jsonl`` (rewritten
atomically) at the start and at the end of every run, dropping lines whose files are gone and
recovering units whose files exist without a line (killed between the two writes), so every unit
appears in it exactly once. The files are the ground truth; the manifest is their index.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ..outputs.atomic import atomic_write_bytes
from ..outputs.records import is_complete
from .jobs import Unit

MANIFEST = "manifest.jsonl"
RANK_MANIFEST = "manifest.rank{rank}.jsonl"


def _read_lines(path: Path) -> list[dict]:
    entries = []
    try:
        text = path.read_text()
    except FileNotFoundError:
        return entries
    for raw in text.splitlines():
        try:
            entry = json.loads(raw)
        except ValueError:
            continue  # a line torn by a kill: the unit's files (the ground truth) recover it
        if isinstance(entry, dict) and isinstance(entry.get("unit"), str) and isinstance(entry.get("files"), dict):
            entries.append(entry)
    return entries


def merge_manifest(out_dir: Path, units: list[Unit]) -> dict[str, dict]:
    """Rebuild ``manifest.jsonl`` from itself, the per-process manifests and the files on disk.

    Only the main process calls this, while no other process writes. Keeps one line per unit whose
    files all exist (first line wins), adds the units of `units` whose files exist without a line,
    writes the result atomically, then removes the per-process files. Returns {unit id: entry}.
    """
    rank_files = sorted(out_dir.glob(RANK_MANIFEST.format(rank="*")))
    entries: dict[str, dict] = {}
    for path in [out_dir / MANIFEST, *rank_files]:
        for entry in _read_lines(path):
            if entry["unit"] not in entries and is_complete(out_dir, entry["files"]):
                entries[entry["unit"]] = entry
    for unit in units:
        if unit.id not in entries and is_complete(out_dir, unit.files()):
            entries[unit.id] = _entry(unit, rank=None, recovered=True)
    text = "".join(json.dumps(e) + "\n" for e in entries.values())
    old = out_dir / MANIFEST
    if rank_files or not old.is_file() or old.read_text() != text:
        atomic_write_bytes(old, text.encode())
    for path in rank_files:
        path.unlink(missing_ok=True)
    return entries


def _entry(unit: Unit, rank: int | None, recovered: bool = False) -> dict:
    entry = {"unit": unit.id, "job_line": unit.job.line, "job": unit.job.key, "seed": unit.seed, "rank": rank,
             "files": unit.files(), "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if recovered:
        entry["recovered"] = True  # files found without a manifest line (killed between the two writes)
    return entry


class RankManifest:
    """This process's append-only manifest: one fsynced line per finished unit."""

    def __init__(self, out_dir: Path, rank: int):
        self.rank = rank
        self.path = out_dir / RANK_MANIFEST.format(rank=rank)
        self.handle = None

    def append(self, unit: Unit) -> None:
        if self.handle is None:
            self.handle = open(self.path, "a", encoding="utf-8")
        self.handle.write(json.dumps(_entry(unit, self.rank)) + "\n")
        self.handle.flush()
        os.fsync(self.handle.fileno())

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None
