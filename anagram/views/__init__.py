"""The views library: every transformation an anagram can hide behind, and a registry to name them.

    >>> from anagram.views import get_view, parse_view, available
    >>> get_view("jigsaw", seed=3)
    JigsawView(grid=4, seed=3)
    >>> parse_view("patch_permute:8")          # a string spec, as typed on the command line
    PatchPermuteView(num_patches=8, seed=0)

Rooms: `base` (the `View` contract), the view families (`simple`, `permutation`, `jigsaw`,
`factorized`), `permutation_algebra` (index arrays, apart from the view classes), `registry`
(names, plug-ins through the ``anagram.views`` entry-point group, `describe`) and `specs`
(string specs and config dicts -> views). This package imports nothing else of anagram.
"""

from __future__ import annotations

from .base import LATENT, PIXEL, SPACES, View, ViewError
from .factorized import (
    BandHighView,
    BandLowView,
    BandMidView,
    ColorView,
    FactorizedView,
    GrayscaleView,
    HighPassView,
    LowPassView,
    MotionResidualView,
    MotionView,
    ScaleResidualView,
    ScaleView,
)
from .jigsaw import JigsawView
from .permutation import (
    IndexPermutationView,
    InnerCircleView,
    PatchPermuteView,
    PermutationView,
    PixelPermuteView,
    SkewView,
    SquareHingeView,
)
from .simple import (
    FlipView,
    HFlipView,
    IdentityView,
    NegateView,
    Rotate180View,
    RotateCCWView,
    RotateCWView,
    TransposeView,
)

from .permutation_algebra import coarsen_permutation, expand_permutation, invert_permutation, is_permutation
from .registry import (
    ENTRY_POINT_GROUP,
    available,
    describe,
    from_config,
    get_view,
    load_entry_points,
    register_view,
    view_class,
)
from .specs import parse_view, split_views

# -- the built-in views -------------------------------------------------------------------------------------

for _cls in (
    IdentityView, FlipView, HFlipView, RotateCWView, RotateCCWView, Rotate180View, TransposeView, NegateView,
    SkewView, PatchPermuteView, PixelPermuteView, JigsawView, InnerCircleView, SquareHingeView,
    IndexPermutationView, LowPassView, HighPassView, BandLowView, BandMidView, BandHighView, GrayscaleView,
    ColorView, MotionView, MotionResidualView, ScaleView, ScaleResidualView,
):
    register_view(_cls)
del _cls
register_view(FlipView, aliases=("vflip",))
register_view(RotateCWView, aliases=("rotate_90",))
register_view(RotateCCWView, aliases=("rotate_270",))

__all__ = [
    "ENTRY_POINT_GROUP", "LATENT", "PIXEL", "SPACES", "View", "ViewError", "FactorizedView", "PermutationView",
    "available", "coarsen_permutation", "describe", "expand_permutation", "from_config", "get_view",
    "invert_permutation", "is_permutation", "load_entry_points", "parse_view", "register_view",
    "split_views", "view_class",
    "IdentityView", "FlipView", "HFlipView", "RotateCWView", "RotateCCWView", "Rotate180View", "TransposeView",
    "NegateView", "SkewView", "PatchPermuteView", "PixelPermuteView", "JigsawView", "InnerCircleView",
    "SquareHingeView", "IndexPermutationView", "LowPassView", "HighPassView", "BandLowView", "BandMidView",
    "BandHighView", "GrayscaleView", "ColorView", "MotionView", "MotionResidualView", "ScaleView",
    "ScaleResidualView",
]
