"""What the Browse tab does, apart from the page: folders of samples, their scores, pages of them.

A folder is one the app serves (its output folder, the folders given with ``anagram app --browse``,
and their sub-folders that hold samples: a batch run, say). Samples are read with
`anagram.outputs.records.find_samples`; scores come from the folder's ``metrics.csv`` (what
`anagram evaluate` writes, read by `anagram.outputs.contact_sheet.gather_scores`), and the samples
can be sorted by any numeric score, best first, samples without it last.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..outputs.contact_sheet import format_score, gather_scores
from ..outputs.records import RecordError, StoredSample, find_samples, sample_record_paths
from .results import inside

PAGE_SIZE = 8
SHOWN_SCORES = ("alignment", "concealment", "success")  # first in a caption, when present
MAX_DEPTH = 2


def sample_folders(roots: Sequence[Path]) -> list[Path]:
    """The served folders that hold samples: each root and its sub-folders down to `MAX_DEPTH`."""
    found: list[Path] = []
    for root in roots:
        root = Path(root).resolve()
        candidates = [root]
        for depth in range(1, MAX_DEPTH + 1):
            candidates += sorted(p for p in root.glob("/".join(["*"] * depth)) if p.is_dir() and not
                                 any(part.startswith(".") for part in p.relative_to(root).parts))
        found += [c for c in candidates if c not in found and sample_record_paths(c)]
    return found


@dataclass
class Listing:
    """The samples of a folder in display order, with their scores."""

    folder: Path
    samples: list[StoredSample]
    scores: dict[str, dict[str, Any]]
    sort_by: str | None

    def pages(self, page_size: int = PAGE_SIZE) -> int:
        return max(1, -(-len(self.samples) // page_size))

    def page(self, number: int, page_size: int = PAGE_SIZE) -> list[tuple[int, StoredSample]]:
        """``(rank, sample)`` of page ``number`` (from 1; clamped to the pages there are)."""
        number = min(max(1, int(number)), self.pages(page_size))
        start = (number - 1) * page_size
        return list(enumerate(self.samples[start : start + page_size], start=start + 1))

    def caption(self, rank: int, sample: StoredSample) -> str:
        scores = self.scores.get(sample.stem, {})
        keys = [k for k in ((self.sort_by,) if self.sort_by else ()) + SHOWN_SCORES if k in scores]
        text = ", ".join(f"{k} {format_score(scores[k])}" for k in dict.fromkeys(keys))
        return f"{rank}. {' / '.join(sample.prompts())} (seed {sample.record.seed})" + (f": {text}" if text else "")


def numeric_scores(scores: dict[str, dict[str, Any]]) -> list[str]:
    """The score names that have a number for some sample (what one can sort by)."""
    names: dict[str, None] = {}
    for values in scores.values():
        for key, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "seed":
                names[key] = None
    return list(names)


def listing(folder: str | Path, roots: Sequence[Path], sort_by: str | None = None,
            ascending: bool = False) -> Listing:
    """The samples of a served folder, sorted by ``sort_by`` (best first unless ``ascending``)."""
    path = inside(folder, roots)
    if not path.is_dir():
        raise ValueError(f"no such folder: {folder}")
    try:
        samples = find_samples(path)
    except RecordError as error:
        raise ValueError(str(error)) from None
    scores = gather_scores(path)
    if sort_by:
        if sort_by not in numeric_scores(scores):
            raise ValueError(f"cannot sort by {sort_by!r}: the folder's metrics.csv has no such score "
                             f"(scores: {', '.join(numeric_scores(scores)) or 'none; run `anagram evaluate` on it'})")

        def key(sample: StoredSample):
            value = scores.get(sample.stem, {}).get(sort_by)
            if not isinstance(value, (int, float)):
                return (1, 0.0)
            return (0, value if ascending else -value)

        samples = sorted(samples, key=key)
    return Listing(path, samples, scores, sort_by or None)


__all__ = ["Listing", "PAGE_SIZE", "listing", "numeric_scores", "sample_folders"]
