"""The glyph testbed's quality cases: the candidates, how the benchmark's case list is chosen from them.

A *case* is a pair of glyphs and a view: the anagram reads as the first glyph as it is and as the
second under the view. :data:`CANDIDATES` are the cases tried: pairs that the view could plausibly
relate (``b``/``q`` upside down, ``n``/``c`` turned a quarter), pairs it relates only loosely, and
arbitrary hard pairs (jigsaw pieces, unrelated letters).

The list the benchmark measures is chosen from measured baseline failure rates, before any method
is tuned, by `choose_cases`:

1. **Screen** (``python benchmarks/quality.py --screen``): plain averaging (``--method baseline``)
   makes every candidate on :data:`SCREEN_SEEDS` (8 seeds, disjoint from the table's seeds 0..15,
   so the table's baseline is a fresh measurement, not the one the cases were picked on); the
   glyph judge and the segregation detector mark each sample a failure when some view is not read
   as its prompt's glyph or the sample is segregated. The result, with the split below, is written
   to :data:`CASES_FILE` (``benchmarks/glyph_cases.json``, committed).
2. **Hard cases**: baseline fails on at least half of the screen seeds (``failure rate >= 0.5``).
   **Easy cases** ("already succeeds"): baseline fails on at most a quarter (``<= 0.25``). The cases
   in between are in neither list.
3. **Split**: the hard cases are shuffled with ``random.Random(SPLIT_SEED)`` and cut in two halves:
   the first is the *tuning* part (the only cases method changes are measured on while they are
   developed), the second the *held-out* part (measured only to confirm a change). At most
   :data:`MAX_HARD` cases per part and :data:`MAX_EASY` easy cases (the first of the same kind of
   seeded shuffle), so that the table runs in about 30 minutes.

A case is written ``view:first/second`` (``rotate_180:b/q``); prompts are ``"a letter q"`` and
``"a digit six"``.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

CASES_FILE = Path(__file__).resolve().parent / "glyph_cases.json"
SCREEN_SEEDS = tuple(range(1000, 1008))
HARD_FAILURE = 0.5
EASY_FAILURE = 0.25
SPLIT_SEED = 13
MAX_HARD = 3
MAX_EASY = 2

_DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


@dataclass(frozen=True)
class Case:
    view: str
    first: str
    second: str

    @property
    def name(self) -> str:
        return f"{self.view}:{self.first}/{self.second}"

    @property
    def prompts(self) -> list[str]:
        return [prompt_of(self.first), prompt_of(self.second)]

    @property
    def views(self) -> list[str]:
        return ["identity", self.view]

    @classmethod
    def parse(cls, name: str) -> "Case":
        view, _, pair = name.partition(":")
        first, _, second = pair.partition("/")
        if not (view and first and second):
            raise ValueError(f"a case is 'view:first/second', got {name!r}")
        return cls(view, first, second)


def prompt_of(glyph: str) -> str:
    """``"a letter q"``, ``"a digit six"`` (digits by their word, as a user would write them)."""
    return f"a digit {_DIGIT_WORDS[int(glyph)]}" if glyph.isdigit() else f"a letter {glyph}"


def _cases(view: str, pairs: str) -> list[Case]:
    return [Case(view, p[0], p[1]) for p in pairs.split()]


#: Every case screened. Related pairs first (the view maps one glyph's shape onto the other's, more or
#: less exactly), then loosely related and arbitrary pairs.
CANDIDATES: tuple[Case, ...] = tuple(
    _cases("rotate_180", "bq nu 69 ae hy")  # exact or near-exact under a half turn
    + _cases("rotate_180", "ak xo 27")  # loosely related or unrelated
    + _cases("flip", "bp mw ae")  # upside down (a vertical mirror)
    + _cases("flip", "rs 38")
    + _cases("hflip", "bd sz")  # mirror image
    + _cases("rotate_cw", "cn uc m3 ek")  # a quarter turn: c -> n, u -> c, m -> 3
    + _cases("jigsaw", "ab ox hk 27 es")  # interlocking pieces, any pair
)


def choose_cases(screen: dict[str, dict], hard: float = HARD_FAILURE, easy: float = EASY_FAILURE,
                 split_seed: int = SPLIT_SEED, max_hard: int = MAX_HARD, max_easy: int = MAX_EASY) -> dict:
    """The case lists from a screen ``{case name: {"failures": f, "seeds": n, ...}}``.

    Returns ``{"hard": [...], "easy": [...], "tuning": [...], "heldout": [...], "easy_used": [...]}``
    (case names); the order of :data:`CANDIDATES` is the order before shuffling, so the split is a
    pure function of the screen's numbers and ``split_seed``.
    """
    order = [c.name for c in CANDIDATES if c.name in screen] + sorted(set(screen) - {c.name for c in CANDIDATES})
    rate = {name: screen[name]["failures"] / screen[name]["seeds"] for name in order}
    hard_cases = [n for n in order if rate[n] >= hard]
    easy_cases = [n for n in order if rate[n] <= easy]
    rng = random.Random(split_seed)
    shuffled = hard_cases[:]
    rng.shuffle(shuffled)
    half = (len(shuffled) + 1) // 2
    easy_shuffled = easy_cases[:]
    rng.shuffle(easy_shuffled)
    return {"hard": hard_cases, "easy": easy_cases, "tuning": shuffled[:half][:max_hard],
            "heldout": shuffled[half:][:max_hard], "easy_used": easy_shuffled[:max_easy]}


def load_cases(path: Path = CASES_FILE) -> dict:
    """The committed screen and split (see the module docstring); raises FileNotFoundError before the screen ran."""
    return json.loads(Path(path).read_text())


__all__ = ["CANDIDATES", "CASES_FILE", "Case", "EASY_FAILURE", "HARD_FAILURE", "MAX_EASY", "MAX_HARD",
           "SCREEN_SEEDS", "SPLIT_SEED", "choose_cases", "load_cases", "prompt_of"]
