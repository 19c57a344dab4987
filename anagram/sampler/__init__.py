"""The multi-view denoising loop (spec §2): views, one batched model call, inverse views, combination.

Rooms: `loop` (`denoise`, the ~35-line loop and its `LoopSpec`), `guidance` (the batched per-view
model call and classifier-free guidance) and `combine` (weighted combination of the estimates).
The sampler sees a model call, ``(model_input, t) -> output``, never a UNet's insides.
"""

from .combine import REDUCTIONS, combine_estimates, view_weights, weighted_sum
from .guidance import ModelCall, apply_views, guide, invert_views, per_view_noise
from .loop import LoopSpec, NonFiniteSampleError, denoise, raise_if_non_finite, record_non_finite

__all__ = [
    "REDUCTIONS",
    "LoopSpec",
    "ModelCall",
    "NonFiniteSampleError",
    "apply_views",
    "combine_estimates",
    "denoise",
    "guide",
    "invert_views",
    "per_view_noise",
    "raise_if_non_finite",
    "record_non_finite",
    "view_weights",
    "weighted_sum",
]
