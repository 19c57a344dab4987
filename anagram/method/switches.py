"""Switches of the multi-task method (spec §3-§5): which components run, with which parameters.

`MultiTask` is what users set (each component on or off, with its parameters; ``MultiTask()`` is
the full method) and what every output records (`MultiTask.to_dict`); `resolve_method` parses the
forms a caller may give (``"baseline"``, ``"mtl"``, a dict, a `MultiTask`) once, at the boundary;
`method_from_switches` builds one from command-line style switches. The per-step work lives in
`anagram.method.hooks`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .balancing import BALANCE_SCORES
from .rectification import DEFAULT_ESTIMATOR, ESTIMATORS

# The reference applies anti-segregation on the first 26 of 30 steps.
REFERENCE_ANTI_SEGREGATION_FRACTION = 26 / 30
# The reference takes the concept attention maps from the UNet's down and up blocks. The default takes
# them from the down blocks only: equal quality on both testbeds (glyph hard cases, paired against the
# reference: failure -0.04 +- 0.05 on tuning and on held-out, 0.00 on easy; digits within noise) and the
# extra pass stops before the up path, which brings the full method to about 1.1-1.2x the baseline at
# 512 px instead of 1.2-1.5x (README "Speed", "Quality on the glyph testbed").
REFERENCE_ANTI_SEGREGATION_LAYERS = ("down", "up")
DEFAULT_ANTI_SEGREGATION_LAYERS = ("down",)


@dataclass
class AntiSegregation:
    """Anti-segregation of the views' concept attention maps (spec §5); defaults are the reference's
    except ``layers`` (down blocks only; the reference's down and up blocks are
    ``AntiSegregation.reference()`` or ``layers=("down", "up")``).

    Attributes:
        step_size: gradient step on the sample (reference: 5).
        fraction: apply on the first ``round(fraction * num_steps)`` steps (reference: 26 of 30).
        resolution: side of the attention maps; None picks half the sample side for pixel models
            (the reference's 32 of 64) and a quarter for latent models (16 of a 64 latent).
        layers: UNet block groups the maps come from (default: down; reference: down and up).
        target: target overlap; None is the reference's ``0.5 - 0.05 (N - 1)``.
        interval: apply on every ``interval``-th step only (1: every step, the reference), a cheaper variant.

    The extra UNet pass that provides the maps stops after the last captured layer, which gives the
    same gradient for less work; capturing from the down blocks only (``layers=("down",)``) stops it
    earlier still.
    """

    step_size: float = 5.0
    fraction: float = REFERENCE_ANTI_SEGREGATION_FRACTION
    resolution: int | None = None
    layers: tuple[str, ...] = DEFAULT_ANTI_SEGREGATION_LAYERS
    target: float | None = None
    interval: int = 1

    def __post_init__(self):
        if isinstance(self.layers, str):
            self.layers = (self.layers,)
        self.layers = tuple(self.layers)  # a record read back from JSON gives a list

    @classmethod
    def reference(cls, **overrides) -> AntiSegregation:
        """The reference implementation's settings (maps from the down and up blocks)."""
        return cls(**{"layers": REFERENCE_ANTI_SEGREGATION_LAYERS, **overrides})

    def active_at(self, step_index: int, num_steps: int) -> bool:
        return step_index < round(self.fraction * num_steps) and step_index % max(1, self.interval) == 0


@dataclass
class MultiTask:
    """Which multi-task components run; ``MultiTask()`` is the full method.

    Attributes:
        balance: noise vector balancing (spec §3).
        scorer: completion scorer for balancing: ``"auto"`` (default: the scorer the model declares in
            its ``anagram_defaults.json``, else CLIP ``openai/clip-vit-base-patch32`` by hub id, see
            `anagram.method.scorers.resolve_scorer`), ``"attention"`` (concept attention share, no
            extra network), ``"clip:<id or folder>"``, a registered name, a `Scorer` or a callable.
        balance_strength: multiplies the balancing exponent ``1 + i/n`` (1: the reference; see
            `anagram.method.balancing`).
        balance_scores: ``"raw"`` (the reference: view k's score against its own prompt) or
            ``"relative"`` (its share of view k's scores against all the prompts, an image scorer only).
        balance_max_weight: cap on any view's balancing weight (None: the reference, no cap; see
            `anagram.method.balancing.cap_weights`).
        balance_start: plain averaging (no scorer call) on the first ``round(balance_start * n)`` steps
            (0: the reference, balancing from the first step).
        rectify: variance rectification estimator (spec §4, `anagram.method.rectification`):
            ``"bounded"`` (default: normalised correlation clamped to [0, 1], a scale between 1 and
            1/|a|), ``"product"`` (the reference formula, unbounded), ``"correlation"``, or None for off.
        anti_segregation: `AntiSegregation` parameters, or None for off.
    """

    balance: bool = True
    scorer: Any = "auto"
    rectify: str | None = DEFAULT_ESTIMATOR
    anti_segregation: AntiSegregation | None = field(default_factory=AntiSegregation)
    balance_strength: float = 1.0
    balance_scores: str = "raw"
    balance_max_weight: float | None = None
    balance_start: float = 0.0

    def __post_init__(self):
        if self.rectify is True:
            self.rectify = DEFAULT_ESTIMATOR
        if self.rectify is False:
            self.rectify = None
        if self.rectify is not None and self.rectify not in ESTIMATORS:
            raise ValueError(f"rectify must be one of {ESTIMATORS} or None, got {self.rectify!r}")
        if self.balance_scores not in BALANCE_SCORES:
            raise ValueError(f"balance_scores must be one of {BALANCE_SCORES}, got {self.balance_scores!r}")
        if not float(self.balance_strength) > 0:
            raise ValueError(f"balance_strength must be positive, got {self.balance_strength!r}")
        if self.balance_max_weight is not None and not 0 < float(self.balance_max_weight) <= 1:
            raise ValueError(f"balance_max_weight must be in (0, 1] or None, got {self.balance_max_weight!r}")
        if not 0 <= float(self.balance_start) < 1:
            raise ValueError(f"balance_start must be in [0, 1), got {self.balance_start!r}")
        if self.anti_segregation is True:
            self.anti_segregation = AntiSegregation()
        elif isinstance(self.anti_segregation, dict):
            self.anti_segregation = AntiSegregation(**self.anti_segregation)
        elif self.anti_segregation is False:
            self.anti_segregation = None

    @property
    def is_baseline(self) -> bool:
        return not self.balance and self.rectify is None and self.anti_segregation is None

    def to_dict(self) -> dict:
        return json_safe(asdict(self))

    def hooks(self, **context):
        """The per-step hooks of one pipeline call (`anagram.method.hooks.MethodHooks`), None for the baseline."""
        from .hooks import MethodHooks

        return None if self.is_baseline else MethodHooks(self, **context)


def json_safe(value):
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)


def resolve_method(method) -> MultiTask | None:
    """None for the baseline sampler; a `MultiTask` for ``"mtl"``, a dict or a `MultiTask`."""
    if method is None or method == "baseline":
        return None
    if method == "mtl":
        return MultiTask()
    if isinstance(method, dict):
        known = {f.name for f in fields(MultiTask)}
        unknown = set(method) - known
        if unknown:
            raise ValueError(f"unknown method settings {sorted(unknown)}; known: {sorted(known)}")
        method = MultiTask(**method)
    if isinstance(method, MultiTask):
        return None if method.is_baseline else method
    raise ValueError(f"method must be 'baseline', 'mtl', a dict or an anagram.method.MultiTask, got {method!r}")


def method_from_switches(method: str = "baseline", *, balance: bool | None = None, scorer: Any = None,
                         rectify: str | None = None, anti_seg: bool | None = None, **anti_seg_tuning) -> str | dict:
    """The method that command-line switches describe, as recorded: ``"baseline"``, ``"mtl"`` or a dict.

    ``method`` is the starting point (``baseline``: every component off; ``mtl``: the full method);
    each switch that is not None changes one component. ``anti_seg_tuning`` holds `AntiSegregation`
    fields (``step_size``, ``fraction``, ``resolution``, ``interval``, ``layers`` as a tuple or a
    comma-separated text); giving any turns anti-segregation on. Raises ValueError for a bad value.
    """
    if method not in ("baseline", "mtl"):
        raise ValueError(f"--method must be baseline or mtl, got {method!r}")
    tuning = {k: v for k, v in anti_seg_tuning.items() if v is not None}
    unknown = set(tuning) - {f.name for f in fields(AntiSegregation)}
    if unknown:
        raise ValueError(f"unknown anti-segregation settings {sorted(unknown)}")
    if isinstance(tuning.get("layers"), str):
        tuning["layers"] = tuple(part.strip() for part in tuning["layers"].split(",") if part.strip())
    if all(value is None for value in (balance, scorer, rectify, anti_seg)) and not tuning:
        return method
    settings = MultiTask() if method == "mtl" else MultiTask(balance=False, rectify=None, anti_segregation=None)
    if balance is not None or scorer is not None:
        settings.balance = balance if balance is not None else True
        settings.scorer = scorer or settings.scorer
    if rectify is not None:
        if rectify not in (*ESTIMATORS, "none"):
            raise ValueError(f"--rectify must be {', '.join(ESTIMATORS)} or none, got {rectify!r}")
        settings.rectify = None if rectify == "none" else rectify
    if anti_seg is False:
        settings.anti_segregation = None
    elif anti_seg or tuning:
        base = settings.anti_segregation or AntiSegregation()
        settings.anti_segregation = AntiSegregation(**{**base.__dict__, **tuning})
    return settings.to_dict()
