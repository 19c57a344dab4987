"""Translations that keep an anagram: make a translator equivariant to a sample's views.

A translator knows nothing of views: translating an anagram and then flipping it need not equal
flipping it and then translating, so the translated picture can stop being an anagram. Where the
sample's views generate a finite group K of pixel rearrangements (flips, rotations, transpose,
with or without negation), the symmetrised translator

    G_K(x) = 1/|K| sum_{g in K} g^-1( G( g(x) ) )

is exactly equivariant: G_K(h x) = h G_K(x) for every h in K (substitute g' = g h in the sum), so
every view of the translated image is the translation of that view. The sum is accumulated in
float64 in a fixed order, so the two sides agree to float32 rounding.

How a view enters the group: each view is read as a *signed permutation* of the pixels
(``view(x) = s * x[perm]`` with ``s = +-1`` in the model's [-1, 1] range), found by applying the
view to an index image and checked on a random image; the view's own `inverse` must undo it. A
view that is not one (factorized views keep a component of the image, not a rearrangement) cannot
be kept. Nor, by default, can a rearrangement that is not a symmetry of the canvas (a jigsaw, a
patch, pixel or ring permutation): averaging would show the translator scrambled pictures, whose
translations mean nothing, and their groups are large (a 4x4 jigsaw: 12 elements; a patch
permutation of 8x8 patches: 63). The group closure is generated from the views that are kept and
stops at ``max_order`` elements (16 by default: the eight symmetries of the square, with negation). Views that cannot be kept are left out of the group and
named with the reason; `translate_keeping_views` then warns (``on_unkept="warn"``) or raises
(``on_unkept="error"``). The views that are kept stay exact either way.

Nothing here prints: warnings go through Python's `warnings` (`KeepViewsWarning`), and
`apply_to_paths` collects them for the command line.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from ..views import View

DEFAULT_MAX_ORDER = 16

__all__ = [
    "DEFAULT_MAX_ORDER", "KeepViewsError", "KeepViewsWarning", "SignedPermutation", "ViewGroup", "rigid_moves",
    "signed_permutation",
    "symmetrize", "translate_keeping_views", "view_group",
]


class KeepViewsError(ValueError):
    """The sample's views cannot be kept (``on_unkept="error"``); the message names them and why."""


class KeepViewsWarning(UserWarning):
    """Some views of a sample are not kept: the translation is equivariant to the others only."""


@dataclass(frozen=True)
class SignedPermutation:
    """``x -> sign * x[..., perm]`` on the flattened ``H x W`` grid (every channel alike)."""

    perm: torch.Tensor  # (H * W,) long
    sign: int
    height: int
    width: int

    def key(self) -> tuple:
        return (self.sign, self.perm.numpy().tobytes())

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(-2)[..., self.perm]
        out = flat.view(*x.shape[:-2], self.height, self.width)
        return -out if self.sign < 0 else out

    def then(self, other: "SignedPermutation") -> "SignedPermutation":
        """``other`` after ``self``: ``other(self(x))``."""
        return SignedPermutation(self.perm[other.perm], self.sign * other.sign, self.height, self.width)

    def inverse(self) -> "SignedPermutation":
        return SignedPermutation(torch.argsort(self.perm), self.sign, self.height, self.width)

    def is_identity(self) -> bool:
        return self.sign > 0 and bool(torch.equal(self.perm, torch.arange(self.perm.numel())))

    @classmethod
    def identity(cls, height: int, width: int) -> "SignedPermutation":
        return cls(torch.arange(height * width), 1, height, width)


def signed_permutation(view: View, height: int, width: int) -> tuple[SignedPermutation | None, str]:
    """The view as a signed permutation of an ``height x width`` image, or ``(None, why not)``."""
    if getattr(view, "factorized", False):
        return None, "a factorized view keeps a component of the image, not a rearrangement of its pixels"
    problem = view.size_problem(height, width)
    if problem is not None:
        return None, f"it cannot act on a {height}x{width} image ({problem})"
    count = height * width
    index = torch.arange(1, count + 1, dtype=torch.float64).view(1, 1, height, width)
    try:
        moved = view.view(index).reshape(-1)
    except Exception as error:  # noqa: BLE001 - a third-party view that cannot take this input
        return None, f"it failed on a {height}x{width} image ({type(error).__name__}: {error})"
    if moved.numel() != count:
        return None, "it changes the image size"
    signs = torch.sign(moved)
    if not (bool((signs == 1).all()) or bool((signs == -1).all())):
        return None, "it is not a rearrangement of the pixels (mixed signs)"
    sources = moved.abs().round()
    if not torch.equal(sources, moved.abs()) or not torch.equal(torch.sort(sources).values, index.reshape(-1)):
        return None, "it mixes pixels (not a rearrangement of the pixels, possibly with negation)"
    candidate = SignedPermutation((sources - 1).long(), int(signs[0]), height, width)
    probe = torch.randn(1, 2, height, width, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    try:
        same = torch.equal(view.view(probe), candidate.apply(probe))
        undone = torch.equal(view.inverse(view.view(probe)), probe)
    except Exception as error:  # noqa: BLE001
        return None, f"it failed on a 2-channel image ({type(error).__name__}: {error})"
    if not same:
        return None, "it is not the same rearrangement on every image and channel"
    if not undone:
        return None, "its inverse does not undo it"
    return candidate, ""


@dataclass
class ViewGroup:
    """The finite group generated by the views that can be kept (``elements[0]`` is the identity)."""

    elements: list[SignedPermutation]
    kept: list[View]
    not_kept: list[tuple[View, str]] = field(default_factory=list)
    max_order: int = DEFAULT_MAX_ORDER

    @property
    def order(self) -> int:
        return len(self.elements)

    def describe(self) -> dict:
        """JSON-safe summary for records: the kept views, the group order, the others and why."""
        return {"kept": [v.config() for v in self.kept], "group_order": self.order,
                "not_kept": [{"view": v.config(), "reason": why} for v, why in self.not_kept]}

    def message(self) -> str:
        """One sentence naming the views that are not kept and why ('' when all are)."""
        if not self.not_kept:
            return ""
        parts = "; ".join(f"{v.label}: {why}" for v, why in self.not_kept)
        kept = ", ".join(v.label for v in self.kept) or "none"
        return (f"--keep-views cannot keep {len(self.not_kept)} view(s) ({parts}); the translation is "
                f"equivariant to the others only (kept: {kept}; group of {self.order})")


def _closure(generators: Sequence[SignedPermutation], height: int, width: int,
             max_order: int) -> list[SignedPermutation] | None:
    """Every product of ``generators`` (identity first), or ``None`` past ``max_order`` elements."""
    identity = SignedPermutation.identity(height, width)
    elements = {identity.key(): identity}
    frontier = [identity]
    while frontier:
        grown = []
        for element in frontier:
            for generator in generators:
                product = element.then(generator)
                key = product.key()
                if key not in elements:
                    elements[key] = product
                    grown.append(product)
                    if len(elements) > max_order:
                        return None
        frontier = grown
    return list(elements.values())


def rigid_moves(height: int, width: int) -> set[bytes]:
    """The permutations of the symmetries of the canvas: the 8 of a square (flips, rotations by
    quarter turns, transposes), the 4 of a rectangle (identity, the two flips, the half turn)."""
    grid = torch.arange(height * width).view(height, width)
    moves = [grid, grid.flip(0), grid.flip(1), grid.flip(0).flip(1)]
    if height == width:
        moves += [grid.t(), torch.rot90(grid, 1), torch.rot90(grid, -1), grid.flip(0).t()]
    return {m.reshape(-1).numpy().tobytes() for m in moves}


def view_group(views: Sequence[View], height: int, width: int, max_order: int = DEFAULT_MAX_ORDER,
               rigid_only: bool = True) -> ViewGroup:
    """The group generated by ``views`` on ``height x width`` images; views that cannot join are
    listed in ``not_kept``: not a signed permutation; with ``rigid_only`` (the default), a
    rearrangement that is not a symmetry of the canvas (a jigsaw, a patch, pixel or ring
    permutation: the translator would be shown a scrambled picture and its translation of it would
    be averaged in); or a group that would pass ``max_order``."""
    rigid = rigid_moves(height, width) if rigid_only else None
    kept: list[View] = []
    generators: list[SignedPermutation] = []
    not_kept: list[tuple[View, str]] = []
    elements = [SignedPermutation.identity(height, width)]
    for view in views:
        move, why = signed_permutation(view, height, width)
        if move is None:
            not_kept.append((view, why))
            continue
        if move.is_identity():
            kept.append(view)
            continue
        if rigid is not None and move.perm.numpy().tobytes() not in rigid:
            alone = _closure([move], height, width, 10 * max_order)
            size = f"{len(alone)} elements" if alone is not None else f"more than {10 * max_order} elements"
            not_kept.append((view, f"it rearranges parts of the image, not the whole canvas (not a flip, rotation or "
                                   f"transpose): the translator would be shown a scrambled picture (its group: {size})"))
            continue
        grown = _closure(generators + [move], height, width, max_order)
        if grown is None:
            alone = _closure([move], height, width, 10 * max_order)
            size = f"{len(alone)} elements" if alone is not None else f"more than {10 * max_order} elements"
            not_kept.append((view, f"with the other views it generates a group larger than {max_order} transforms "
                                   f"(this view alone: {size}); averaging over it would cost a translation per "
                                   f"element and shows the translator scrambled images"))
            continue
        generators.append(move)
        kept.append(view)
        elements = grown
    return ViewGroup(elements=elements, kept=kept, not_kept=not_kept, max_order=max_order)


def symmetrize(translate: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, group: ViewGroup,
               batch_size: int = 64) -> torch.Tensor:
    """``1/|K| sum_g g^-1(translate(g(x)))`` for a batch ``x (B, C, H, W)`` in [-1, 1] (module docstring).

    ``translate`` maps ``(N, C, H, W)`` in [-1, 1] to ``(N, C', H, W)``; the copies are translated in
    chunks of ``batch_size`` images."""
    if group.order == 1:
        return translate(x)
    copies = torch.cat([g.apply(x) for g in group.elements])  # (K * B, C, H, W), element-major
    outputs = torch.cat([translate(copies[i:i + batch_size]) for i in range(0, len(copies), batch_size)])
    total = None
    for k, g in enumerate(group.elements):
        back = g.inverse().apply(outputs[k * len(x):(k + 1) * len(x)].double())
        total = back if total is None else total + back
    return (total / group.order).to(outputs.dtype)


def translate_keeping_views(pipe, images: torch.Tensor, views: Sequence[View], on_unkept: str = "warn",
                            max_order: int = DEFAULT_MAX_ORDER, batch_size: int = 64) -> tuple[torch.Tensor, ViewGroup]:
    """Translate ``images`` (``(C, H, W)`` or ``(B, C, H, W)`` in [0, 1]) with a `TranslationPipeline`,
    equivariant to ``views``; returns the translations in [0, 1] and the `ViewGroup` used.

    ``on_unkept``: ``"warn"`` (a `KeepViewsWarning` names the views left out), ``"error"`` (raise
    `KeepViewsError` instead of translating) or ``"ignore"``."""
    if on_unkept not in ("warn", "error", "ignore"):
        raise ValueError(f"on_unkept must be 'warn', 'error' or 'ignore', got {on_unkept!r}")
    single = images.dim() == 3
    batch = images[None] if single else images
    group = view_group(views, batch.shape[-2], batch.shape[-1], max_order)
    if group.not_kept:
        if on_unkept == "error":
            raise KeepViewsError(group.message())
        if on_unkept == "warn":
            warnings.warn(group.message(), KeepViewsWarning, stacklevel=2)

    def translate(x: torch.Tensor) -> torch.Tensor:
        return pipe((x + 1) / 2, output_type="pt", batch_size=batch_size).images * 2 - 1

    out = (symmetrize(translate, batch.float() * 2 - 1, group, batch_size) + 1) / 2
    return (out[0] if single else out), group
