"""Capture of cross-attention probabilities from a diffusers UNet (method spec §5, "Maps").

Anti-segregation and the attention-share scorer need the probability that each spatial
position of a UNet layer attends to each text token. `CrossAttentionCapture` installs a thin
processor on the cross-attention modules of the chosen blocks at one spatial resolution and
records those probabilities; every other module keeps its processor, and the exact original
processors are put back when the capture ends (also on an exception).

Supported layers:

* Stable Diffusion / SDXL: the ``attn2`` of the ``Transformer2DModel`` blocks (keys are the text
  encoder states);
* DeepFloyd IF: the added-KV attention of the ``SimpleCrossAttn*`` blocks, whose keys are
  ``cat([text keys, self keys])``; only the probabilities over the text tokens are kept (they sum
  to at most 1 per query, the rest of the mass goes to the image positions).

The recorded layer output is the original processor's own output, so it is bit-identical with
and without the capture; the probabilities are computed on the side with
``attn.get_attention_scores`` (the maths of diffusers' ``AttnProcessor`` / ``AttnAddedKVProcessor``)
for the kept batch rows only, and stay differentiable, so a loss on the maps can be
back-propagated to the UNet input.

Layer resolution: a module's level in the UNet is static (``down_blocks[i]`` runs at level ``i``,
the mid block at the deepest level, ``up_blocks[j]`` at level ``L-1-j``), and the grid of a level
follows from the sample's ``H x W`` by halving (rounded up, as the stride-2 convolutions do, or
down, as average pooling does). The capture selects modules by level from the announced sample
size (``sample_size``), checks at each UNet call that the sample has that size, and reads each
layer's grid from its hidden states (4-D) or as the level's grid whose area is the sequence
length (3-D), so non-square samples are handled exactly.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

__all__ = [
    "AttentionCaptureError",
    "CrossAttentionCapture",
    "available_resolutions",
    "capture_cross_attention",
    "cross_attention_modules",
]

BLOCKS = ("down", "mid", "up")


class CaptureComplete(Exception):
    """Raised by a capture with ``stop_when_complete`` once every chosen layer has recorded its maps.

    A caller that only needs the maps (the anti-segregation pass) catches it: the rest of the UNet
    forward, and so its backward, is skipped. The gradient of anything computed from the maps is
    unchanged, since nothing after the last captured layer influences them.
    """


class AttentionCaptureError(ValueError):
    """The requested cross-attention maps cannot be captured (no such layer, nothing recorded...)."""


# -- where the cross-attention layers are ---------------------------------------------------------


def _as_size(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def _level_sizes(height: int, width: int, level: int) -> list[tuple[int, int]]:
    """The possible grids after ``level`` halvings: rounded up (strided conv) and down (pooling)."""
    up, down = (height, width), (height, width)
    for _ in range(level):
        up = (-(-up[0] // 2), -(-up[1] // 2))
        down = (down[0] // 2, down[1] // 2)
    return list(dict.fromkeys([up, down]))


def _is_cross_attention(module: nn.Module) -> bool:
    # diffusers' Attention sets is_cross_attention from cross_attention_dim; self-attention
    # (attn1) has none. Duck-typed so that subclasses and look-alikes work too.
    return bool(getattr(module, "is_cross_attention", False)) and hasattr(module, "processor")


def cross_attention_modules(unet: nn.Module, layers: Iterable[str] = BLOCKS) -> list[tuple[str, int, nn.Module]]:
    """``(qualified name, level, module)`` of every cross-attention module in the chosen blocks."""
    layers = tuple(layers)
    unknown = [name for name in layers if name not in BLOCKS]
    if unknown:
        raise AttentionCaptureError(f"unknown UNet block group(s) {unknown}; choose among {BLOCKS}")
    down = list(getattr(unet, "down_blocks", []))
    up = list(getattr(unet, "up_blocks", []))
    deepest = len(down) - 1
    groups: list[tuple[str, int, nn.Module]] = []
    if "down" in layers:
        groups += [(f"down_blocks.{i}", i, block) for i, block in enumerate(down)]
    if "mid" in layers and getattr(unet, "mid_block", None) is not None:
        groups.append(("mid_block", deepest, unet.mid_block))
    if "up" in layers:
        groups += [(f"up_blocks.{j}", deepest - j, block) for j, block in enumerate(up)]
    found = []
    for prefix, level, block in groups:
        for name, module in block.named_modules():
            if _is_cross_attention(module):
                found.append((f"{prefix}.{name}", level, module))
    return found


def available_resolutions(
    unet: nn.Module, sample_height: int, sample_width: int, layers: Iterable[str] = ("down", "up")
) -> list[tuple[int, int]]:
    """The ``(h, w)`` grids, largest first, at which the chosen blocks have cross-attention layers
    for a ``sample_height x sample_width`` sample (latent size for latent models)."""
    levels = sorted({level for _, level, _ in cross_attention_modules(unet, layers)})
    return [_level_sizes(sample_height, sample_width, level)[0] for level in levels]


def _matches(resolution: int | tuple[int, int], size: tuple[int, int]) -> bool:
    """An int ``r`` means ``r x r``, or for a non-square grid the grid whose short side is ``r``."""
    if isinstance(resolution, int):
        return size == (resolution, resolution) or (size[0] != size[1] and min(size) == resolution)
    return tuple(resolution) == size


def _format(sizes: Iterable[tuple[int, int]]) -> str:
    return ", ".join(f"{h}x{w}" for h, w in sizes) or "nowhere"


# -- the probabilities of one layer ------------------------------------------------------------------


def _rows(tensor: torch.Tensor | None, rows: slice, batch: int) -> torch.Tensor | None:
    """Keep the batch rows ``rows`` of a per-sample tensor; broadcast tensors pass through."""
    if tensor is None or tensor.shape[0] != batch:
        return tensor
    return tensor[rows]


def _heads_batch(attn: nn.Module, x: torch.Tensor, norm: nn.Module | None) -> torch.Tensor:
    """``(b, s, heads*d)`` -> ``(b*heads, s, d)``, with the optional per-head q/k norm of SD3-style
    layers applied in the ``(b, heads, s, d)`` layout that AttnProcessor2_0 applies it in."""
    x = attn.head_to_batch_dim(x, out_dim=4)  # (b, heads, s, d)
    if norm is not None:
        x = norm(x)
    return x.flatten(0, 1)


def _standard_probs(attn, hidden, encoder, mask, temb) -> torch.Tensor:
    """Text probabilities ``(b*heads, s, T)`` of an ``attn2``-style layer (AttnProcessor maths)."""
    if getattr(attn, "spatial_norm", None) is not None:
        hidden = attn.spatial_norm(hidden, temb)
    if hidden.dim() == 4:
        hidden = hidden.flatten(2).transpose(1, 2)
    batch, tokens = encoder.shape[0], encoder.shape[1]
    mask = attn.prepare_attention_mask(mask, tokens, batch)
    if getattr(attn, "group_norm", None) is not None:
        hidden = attn.group_norm(hidden.transpose(1, 2)).transpose(1, 2)
    if attn.norm_cross:
        encoder = attn.norm_encoder_hidden_states(encoder)
    query = _heads_batch(attn, attn.to_q(hidden), getattr(attn, "norm_q", None))
    key = _heads_batch(attn, attn.to_k(encoder), getattr(attn, "norm_k", None))
    return attn.get_attention_scores(query, key, mask)


def _added_kv_probs(attn, hidden, encoder, mask) -> torch.Tensor:
    """Text part ``(b*heads, s, T)`` of an added-KV layer's probabilities (AttnAddedKVProcessor maths).

    The softmax runs over ``[text keys, self keys]`` together, so the self keys must be computed
    too; only the first ``T`` columns (the text tokens) are returned.
    """
    hidden = hidden.view(hidden.shape[0], hidden.shape[1], -1).transpose(1, 2)
    batch, length = hidden.shape[0], hidden.shape[1]
    mask = attn.prepare_attention_mask(mask, length, batch)
    if attn.norm_cross:
        encoder = attn.norm_encoder_hidden_states(encoder)
    hidden = attn.group_norm(hidden.transpose(1, 2)).transpose(1, 2)
    query = attn.head_to_batch_dim(attn.to_q(hidden))
    key = attn.head_to_batch_dim(attn.add_k_proj(encoder))
    if not attn.only_cross_attention:
        key = torch.cat([key, attn.head_to_batch_dim(attn.to_k(hidden))], dim=1)
    return attn.get_attention_scores(query, key, mask)[..., : encoder.shape[1]]


# -- the processor wrapper -----------------------------------------------------------------------------


class _CapturingProcessor:
    """Records the text probabilities of a cross-attention call, then defers to the original."""

    def __init__(self, original: Any, capture: CrossAttentionCapture, name: str, level: int):
        self.original = original
        self.capture = capture
        self.name = name
        self.level = level

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, **kwargs):
        if encoder_hidden_states is not None:
            self.capture._record(self, attn, hidden_states, encoder_hidden_states, attention_mask, kwargs.get("temb"))
        return self.original(
            attn, hidden_states, encoder_hidden_states=encoder_hidden_states, attention_mask=attention_mask, **kwargs
        )


def _wrap(original: Any, capture: CrossAttentionCapture, name: str, level: int) -> _CapturingProcessor:
    """A capturing processor that advertises the original's call signature.

    diffusers' ``Attention.forward`` drops every ``cross_attention_kwargs`` entry that the
    processor's ``__call__`` does not name; giving the wrapper the original's signature makes the
    wrapped layer receive exactly the arguments the original would have received.
    """
    try:
        signature = inspect.signature(type(original).__call__)
    except (TypeError, ValueError):
        return _CapturingProcessor(original, capture, name, level)

    def call(self, *args, **kwargs):
        return _CapturingProcessor.__call__(self, *args, **kwargs)

    call.__signature__ = signature
    cls = type("CapturingProcessor", (_CapturingProcessor,), {"__call__": call})
    return cls(original, capture, name, level)


# -- the capture ---------------------------------------------------------------------------------------


class CrossAttentionCapture:
    """Context manager that records cross-attention maps of one resolution.

    Args:
        unet: a diffusers ``UNet2DConditionModel`` (or one with the same block layout).
        resolution: the map grid, ``r`` for ``r x r`` (for a non-square sample, the grid whose short
            side is ``r``) or ``(h, w)``; see `available_resolutions`.
        sample_size: the UNet input's ``H x W`` (the latent size for latent models), used to pick
            the layers; defaults to ``unet.config.sample_size``. Each call is checked against the
            sample the UNet actually receives.
        layers: block groups to capture from, among ``"down"``, ``"mid"``, ``"up"`` (the reference
            uses down and up).
        batch_slice: the rows of the UNet batch to keep, e.g. ``slice(n, 2 * n)`` for the
            conditional half of a classifier-free-guidance batch of ``2 n`` rows; ``None`` keeps all.
        accumulate: keep the maps of successive UNet calls (``True``) instead of starting afresh at
            each UNet forward (``False``, the default, so `maps` is always the latest call's).

    Use::

        with CrossAttentionCapture(unet, 16, sample_size=(64, 64), batch_slice=slice(n, None)) as cap:
            unet(latents, t, encoder_hidden_states=emb)
            maps = cap.maps()          # (rows kept, 16, 16, T)

    The capture can be entered again after it exits (each entry installs, each exit restores).
    """

    def __init__(
        self,
        unet: nn.Module,
        resolution: int | tuple[int, int],
        *,
        sample_size: int | tuple[int, int] | None = None,
        layers: Iterable[str] = ("down", "up"),
        batch_slice: slice | None = None,
        accumulate: bool = False,
        stop_when_complete: bool = False,
    ):
        if sample_size is None:
            sample_size = getattr(getattr(unet, "config", None), "sample_size", None)
            if sample_size is None:
                raise AttentionCaptureError("pass sample_size=(H, W): the UNet config does not say its sample size")
        self.unet = unet
        self.sample_size = _as_size(sample_size)
        self.layers = tuple(layers)
        self.batch_slice = batch_slice if batch_slice is not None else slice(None)
        self.accumulate = accumulate
        self.stop_when_complete = stop_when_complete
        self._calls_this_forward = 0

        modules = cross_attention_modules(unet, self.layers)
        height, width = self.sample_size
        chosen = [(n, lvl, m) for n, lvl, m in modules if _matches(resolution, _level_sizes(height, width, lvl)[0])]
        if not chosen:
            where = "/".join(self.layers)
            raise AttentionCaptureError(
                f"no cross-attention layer at {_format([_as_size(resolution)])} in the {where} blocks of this UNet "
                f"for a {height}x{width} sample; it has them at "
                f"{_format(available_resolutions(unet, height, width, self.layers))}"
            )
        self.level = chosen[0][1]
        self.resolution = _level_sizes(height, width, self.level)[0]
        self._modules = [(n, m) for n, _, m in chosen]
        self._originals: list[tuple[nn.Module, Any]] | None = None
        self._hook = None
        self._maps: list[torch.Tensor] = []

    # -- lifecycle ---------------------------------------------------------------------------------

    @property
    def active(self) -> bool:
        """Whether the capturing processors are installed."""
        return self._originals is not None

    @property
    def layer_names(self) -> list[str]:
        """Qualified names of the captured modules."""
        return [name for name, _ in self._modules]

    def __enter__(self) -> CrossAttentionCapture:
        if self.active:
            raise AttentionCaptureError("this capture is already active; it cannot be entered twice")
        self.reset()
        self._originals = []
        try:
            self._hook = self.unet.register_forward_pre_hook(self._on_unet_call, with_kwargs=True)
            for name, module in self._modules:
                original = module.processor
                self._originals.append((module, original))
                module.set_processor(_wrap(original, self, name, self.level))
        except BaseException:
            self._restore()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._restore()

    def _restore(self) -> None:
        for module, original in reversed(self._originals or []):
            module.set_processor(original)
        if self._hook is not None:
            self._hook.remove()
        self._originals, self._hook = None, None

    def _on_unet_call(self, module, args, kwargs):
        sample = args[0] if args else kwargs.get("sample")
        if sample is not None and tuple(sample.shape[-2:]) != self.sample_size:
            # another sample size would put the chosen layers at another resolution
            raise AttentionCaptureError(
                f"the cross-attention capture was set up for a {self.sample_size[0]}x{self.sample_size[1]} sample "
                f"but the UNet got {sample.shape[-2]}x{sample.shape[-1]}; pass sample_size=(H, W) of the UNet input"
            )
        if not self.accumulate:
            self._maps = []
        self._calls_this_forward = 0

    # -- recording ---------------------------------------------------------------------------------

    def _layer_size(self, hidden: torch.Tensor, name: str) -> tuple[int, int]:
        """The layer's ``(h, w)`` grid: read from 4-D hidden states, else the grid of the layer's
        level whose area is the sequence length (this is what makes non-square samples exact)."""
        candidates = _level_sizes(*self.sample_size, self.level)
        size = tuple(hidden.shape[-2:]) if hidden.dim() == 4 else None
        for candidate in candidates:
            if size == candidate or (size is None and candidate[0] * candidate[1] == hidden.shape[1]):
                return candidate
        raise AttentionCaptureError(
            f"layer {name} got hidden states of shape {tuple(hidden.shape)}, which is not the "
            f"{_format(candidates)} grid of its level for a {self.sample_size[0]}x{self.sample_size[1]} sample"
        )

    def _record(self, proc, attn, hidden, encoder, mask, temb) -> None:
        h, w = self._layer_size(hidden, proc.name)
        batch = hidden.shape[0]
        rows = self.batch_slice
        hidden, encoder = hidden[rows], encoder[rows]
        if hidden.shape[0] == 0:
            raise AttentionCaptureError(
                f"batch_slice {self.batch_slice} keeps no row of the UNet batch of {batch} (use None when the UNet "
                "runs on the conditional rows only)"
            )
        mask, temb = _rows(mask, rows, batch), _rows(temb, rows, batch)
        if getattr(attn, "added_kv_proj_dim", None) is not None:
            probs = _added_kv_probs(attn, hidden, encoder, mask)
        else:
            probs = _standard_probs(attn, hidden, encoder, mask, temb)
        kept = hidden.shape[0]
        # sum over heads right away: it is what the loss uses and divides the memory by #heads
        probs = probs.view(kept, attn.heads, h * w, probs.shape[-1]).sum(1)
        self._maps.append(probs.view(kept, h, w, probs.shape[-1]))
        self._calls_this_forward += 1
        if self.stop_when_complete and self._calls_this_forward >= len(self._modules):
            raise CaptureComplete

    # -- results -------------------------------------------------------------------------------------

    @property
    def num_captured(self) -> int:
        """How many layer calls the current maps average over."""
        return len(self._maps)

    def reset(self) -> None:
        """Forget the recorded maps (and the autograd graph they hold)."""
        self._maps = []

    def maps(self) -> torch.Tensor:
        """Float32 maps ``(B_kept, h, w, T)``: per position and text token, the attention
        probability summed over heads, averaged over the captured layer calls."""
        if not self._maps:
            raise AttentionCaptureError(
                f"no cross-attention maps were captured at {self.resolution[0]}x{self.resolution[1]}; "
                "run the UNet inside the capture (`with capture: unet(...)`) before asking for maps"
            )
        return torch.stack([m.float() for m in self._maps]).mean(0)


def capture_cross_attention(unet: nn.Module, *, resolution: int | tuple[int, int], **options) -> CrossAttentionCapture:
    """A `CrossAttentionCapture` with the same keyword options, for
    ``with capture_cross_attention(unet, resolution=16) as cap:``."""
    return CrossAttentionCapture(unet, resolution, **options)
