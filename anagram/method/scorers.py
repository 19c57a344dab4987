"""Completion scorers for noise vector balancing (method spec §3).

A scorer rates, for each sample and view, how far view k of the current sample already shows its
prompt p_k: a ``(B, N)`` tensor of scores in (0, 1]; `anagram.balancing.balance_weights` turns
the scores into weights that favour the lagging views.

* `CLIPScorer`: cosine similarity of CLIP (transformers) embeddings of each view of the predicted
  clean sample and of its prompt; preprocessing is done in torch (no PIL round trip).
* `AttentionShareScorer`: a model-internal proxy that needs no extra network: the share of the
  cross-attention mass that lands on each view's concept tokens (see `concept_attention_share`).
* `CallableScorer`: any user function of `ScoreInputs`.

`make_scorer` builds one from a spec string ("clip:<hub id or folder>", "attention", "<name>:<arg>"),
a callable or a scorer.

Which scorer ``--method mtl`` uses (`resolve_scorer`): the method's default scorer is ``"auto"``,
which means the scorer the model declares in its folder's ``anagram_defaults.json`` (key
``"scorer"``: the glyph model declares its noise-aware CLIP ``"clip:../glyph_clip"``, the digits
model ``"attention"``), else, for a model that declares none (Stable Diffusion, DeepFloyd IF, any
folder or hub id without the file), a CLIP image-text model by hub id, :data:`DEFAULT_CLIP`,
downloaded on first use. A folder path in a declaration that starts with ``./`` or ``../`` is
relative to the model folder that declares it (`resolve_declared_scorer`). An explicit scorer
(``--scorer``, ``MultiTask(scorer=...)``) always wins. Names beyond the built-in two come from `register_scorer` or from the
``anagram.scorers`` entry-point group (each entry point a factory: called with the spec's argument
when it has one, with nothing otherwise), loaded lazily, once: that is how the digit testbed's
classifier becomes ``"digits"`` without this module importing the testbed.
"""

from __future__ import annotations

import functools
import json
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from .anti_segregation import sum_tokens

__all__ = [
    "AttentionShareScorer",
    "CLIPScorer",
    "CallableScorer",
    "ScoreInputs",
    "Scorer",
    "ScorerError",
    "ScorerLoadError",
    "AUTO",
    "DEFAULT_CLIP",
    "check_scorer_available",
    "concept_attention_share",
    "make_scorer",
    "register_scorer",
    "resolve_declared_scorer",
    "resolve_scorer",
    "scorer_label",
]

# Scores are clamped into [SCORE_EPS, 1]: a similarity <= 0 is "not started", not an error.
SCORE_EPS = 1e-4
# OpenAI CLIP's preprocessing statistics, used when a checkpoint ships no preprocessor config.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
#: The balancing scorer of a model that declares none: OpenAI's CLIP ViT-B/32 (about 600 MB, the
#: smallest of OpenAI's CLIPs: it runs on the decoded x0 of every view at every step, so its cost
#: matters; ``--scorer clip:openai/clip-vit-large-patch14`` is the larger alternative).
DEFAULT_CLIP = "openai/clip-vit-base-patch32"
#: The scorer spec that means "the model's declared scorer, else DEFAULT_CLIP" (MultiTask's default).
AUTO = "auto"
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


class ScorerError(ValueError):
    """A scorer cannot be built or cannot score the inputs it was given."""


class ScorerLoadError(ScorerError, OSError):
    """A scorer's model cannot be loaded (missing folder, offline hub...); the message says what to do."""


@dataclass
class ScoreInputs:
    """What a scorer may look at, at one denoising step.

    Attributes:
        x0_views: ``(N, B, C, H, W)``: view k of the predicted clean sample, in pixel space with
            values in [-1, 1] (decoded for latent models), or ``None`` when the scorer needs no
            images (``needs_images`` is False).
        prompts: the N prompts, as encoded (brackets removed).
        concept_attention: ``(N, B)`` share of cross-attention mass on each view's concept tokens
            (`concept_attention_share`), or ``None`` when not captured.
        step_index: ``i`` in 0..n-1.
        num_steps: ``n``.
    """

    x0_views: torch.Tensor | None
    prompts: Sequence[str]
    concept_attention: torch.Tensor | None = None
    step_index: int = 0
    num_steps: int = 1


@runtime_checkable
class Scorer(Protocol):
    """``scorer(inputs) -> (B, N)`` scores in (0, 1]; ``needs_images`` says whether it reads ``x0_views``."""

    needs_images: bool

    def __call__(self, inputs: ScoreInputs) -> torch.Tensor: ...


def _clamp_scores(scores: torch.Tensor) -> torch.Tensor:
    return scores.float().nan_to_num(nan=SCORE_EPS).clamp(SCORE_EPS, 1.0)


# -- CLIP ---------------------------------------------------------------------------------------------


def _preprocessor_stats(source: str) -> dict[str, Any]:
    """``image_mean``/``image_std``/``crop_size`` from the checkpoint's preprocessor config, if any."""
    try:
        if os.path.isdir(source):
            path = os.path.join(source, "preprocessor_config.json")
        else:
            from transformers.utils import cached_file

            path = cached_file(source, "preprocessor_config.json", _raise_exceptions_for_missing_entries=False)
        if path and os.path.isfile(path):
            with open(path) as f:
                return json.load(f)
    except (OSError, ValueError):
        pass
    return {}


class CLIPScorer:
    """CLIP alignment of each view of the predicted clean sample with its prompt.

    Args:
        model_id_or_path: a hub id (e.g. ``openai/clip-vit-large-patch14``) or a local folder with
            a ``CLIPModel`` (safetensors) and its tokenizer.
        device: where the model runs; ``None`` follows the images' device at the first call.
        dtype: model dtype (default float32).
        mapping: how the cosine similarity ``s`` becomes a score in (0, 1]. ``"cosine"`` (default,
            the reference, which balances with the raw CLIP similarity): ``s`` clamped into
            ``[1e-4, 1]``; ``"affine"``: ``(s + 1) / 2``, which never needs the clamp but compresses
            CLIP's usual 0.15-0.35 range and so weakens the balancing.

    Images are preprocessed in torch like CLIP's processor: [-1, 1] -> [0, 1], short side resized
    to the model's image size (bicubic, antialiased), centre crop, normalised with the
    checkpoint's mean/std. Prompt embeddings are cached per prompt list.
    """

    needs_images = True

    def __init__(self, model_id_or_path: str, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None, mapping: str = "cosine"):
        from transformers import AutoTokenizer, CLIPModel

        if mapping not in ("cosine", "affine"):
            raise ScorerError(f"unknown CLIP score mapping {mapping!r}; choose 'cosine' or 'affine'")
        self.source = model_id_or_path
        self.mapping = mapping
        self.dtype = dtype or torch.float32
        # cast after loading: the dtype keyword of from_pretrained changed name across transformers versions
        try:
            self.model = CLIPModel.from_pretrained(model_id_or_path, use_safetensors=True).to(self.dtype).eval()
            self.tokenizer = AutoTokenizer.from_pretrained(model_id_or_path)
        except (OSError, ValueError) as error:
            raise ScorerLoadError(f"cannot load the CLIP scorer '{model_id_or_path}': {error}. {_ALTERNATIVES}") from error
        self.model.requires_grad_(False)
        self.device = torch.device(device) if device is not None else None
        if self.device is not None:
            self.model.to(self.device)
        stats = _preprocessor_stats(model_id_or_path)
        crop = stats.get("crop_size", self.model.config.vision_config.image_size)
        self.image_size = int(crop["height"] if isinstance(crop, dict) else crop)
        self.mean = torch.tensor(stats.get("image_mean", CLIP_MEAN), dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(stats.get("image_std", CLIP_STD), dtype=torch.float32).view(1, -1, 1, 1)
        self._text_cache: dict[tuple[str, ...], torch.Tensor] = {}

    def __repr__(self) -> str:
        return f"CLIPScorer({self.source!r}, mapping={self.mapping!r})"

    def _to(self, device: torch.device) -> None:
        if self.device != device:
            self.model.to(device)
            self.device = device
            self._text_cache.clear()

    @staticmethod
    def _features(output: Any) -> torch.Tensor:
        # transformers < 5 returns the projected features, >= 5 an output whose pooler_output they are
        return output if isinstance(output, torch.Tensor) else output.pooler_output

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """``(M, C, H, W)`` in [-1, 1] -> CLIP pixel values ``(M, 3, S, S)`` (float32)."""
        x = ((images.float() + 1) / 2).clamp(0, 1)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)  # grayscale (digit testbed) -> RGB
        elif x.shape[1] != 3:
            raise ScorerError(f"CLIPScorer needs 1- or 3-channel images, got {x.shape[1]} channels")
        s = self.image_size
        h, w = x.shape[-2:]
        scale = s / min(h, w)
        size = (max(s, round(h * scale)), max(s, round(w * scale)))
        if size != (h, w):
            x = F.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
        top, left = (size[0] - s) // 2, (size[1] - s) // 2
        x = x[..., top : top + s, left : left + s]
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    @torch.no_grad()
    def text_embeddings(self, prompts: Sequence[str]) -> torch.Tensor:
        """Unit-norm prompt embeddings ``(N, D)``, cached."""
        key = tuple(prompts)
        if key not in self._text_cache:
            tokens = self.tokenizer(list(prompts), padding=True, truncation=True, return_tensors="pt")
            tokens = {k: v.to(self.model.device) for k, v in tokens.items()}
            emb = self._features(self.model.get_text_features(**tokens)).float()
            self._text_cache[key] = F.normalize(emb, dim=-1)
        return self._text_cache[key]

    @torch.no_grad()
    def image_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        """Unit-norm image embeddings ``(M, D)`` of images ``(M, C, H, W)`` in [-1, 1]."""
        pixels = self.preprocess(images).to(self.model.device, self.dtype)
        return F.normalize(self._features(self.model.get_image_features(pixel_values=pixels)).float(), dim=-1)

    def similarity(self, inputs: ScoreInputs) -> torch.Tensor:
        """Raw cosine similarity ``(B, N)`` of view k's image with prompt k."""
        x0 = inputs.x0_views
        if x0 is None:
            raise ScorerError("CLIPScorer needs the views of the predicted clean sample (ScoreInputs.x0_views)")
        n, b = x0.shape[:2]
        if len(inputs.prompts) != n:
            raise ScorerError(f"{n} views but {len(inputs.prompts)} prompts")
        if self.device is None or self.device != x0.device:
            self._to(x0.device)
        image = self.image_embeddings(x0.flatten(0, 1)).view(n, b, -1)
        text = self.text_embeddings(inputs.prompts).to(image.device)
        return torch.einsum("nbd,nd->bn", image, text)

    def __call__(self, inputs: ScoreInputs) -> torch.Tensor:
        sim = self.similarity(inputs)
        return _clamp_scores((sim + 1) / 2 if self.mapping == "affine" else sim)


# -- attention share -----------------------------------------------------------------------------------


def concept_attention_share(
    attn_maps: torch.Tensor, token_indices: Sequence[Sequence[int]], num_views: int
) -> torch.Tensor:
    """``(N, B)`` share of the text attention mass on each view's concept tokens.

    ``attn_maps`` ``(N*B, h, w, T)`` are captured maps (`CrossAttentionCapture.maps`), rows
    view-major. Per position, the concept tokens' probability divided by the total over text
    tokens (1 per head for Stable Diffusion; less for IF, whose keys include the image), averaged
    over positions. No view inverse is needed: a mean over positions is frame-independent.
    """
    per_view = attn_maps.float().unflatten(0, (num_views, -1))  # (N, B, h, w, T)
    total = per_view.sum(-1).clamp_min(1e-12)
    shares = [sum_tokens(per_view[k], tokens) / total[k] for k, tokens in enumerate(token_indices)]
    return torch.stack(shares).mean((-2, -1))


class AttentionShareScorer:
    """Scores from ``ScoreInputs.concept_attention``: a view whose concept draws little attention
    lags. No extra network and no decoding; the shares are used as they are (clamped into (0, 1]),
    since balancing only depends on their ratios."""

    needs_images = False

    def __repr__(self) -> str:
        return "AttentionShareScorer()"

    def __call__(self, inputs: ScoreInputs) -> torch.Tensor:
        if inputs.concept_attention is None:
            raise ScorerError(
                "the attention scorer needs ScoreInputs.concept_attention (capture the cross-attention maps "
                "and pass concept_attention_share(...))"
            )
        return _clamp_scores(inputs.concept_attention.transpose(0, 1))


# -- user functions and resolution ---------------------------------------------------------------------

_ALTERNATIVES = ("Pass --scorer attention (no extra network; scorer='attention' in Python), "
                 "--scorer clip:/path/to/a/clip/folder (a CLIPModel saved with save_pretrained), or --no-balance")


def resolve_declared_scorer(spec: Any, folder: str | os.PathLike | None) -> Any:
    """A model folder's declared scorer with its relative folder made absolute: in
    ``"clip:./x"`` or ``"clip:../x"`` the path is relative to ``folder`` (the model folder that
    declares it); a hub id, an absolute path or another scorer name is returned unchanged."""
    if not isinstance(spec, str) or folder is None:
        return spec
    prefix, sep, arg = spec.partition(":")
    arg = arg.strip()
    if sep and prefix.strip().lower() == "clip" and arg.startswith(("./", "../", ".\\", "..\\")):
        return f"clip:{os.path.normpath(os.path.join(os.fspath(folder), arg))}"
    return spec


def resolve_scorer(spec: Any, declared: Any = None) -> Any:
    """The scorer that runs for ``spec``: itself, unless it is ``"auto"`` (or None): then the model's
    ``declared`` scorer (already made absolute, `resolve_declared_scorer`), else ``"clip:"`` +
    :data:`DEFAULT_CLIP`."""
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == AUTO):
        return declared if declared else f"clip:{DEFAULT_CLIP}"
    return spec


def scorer_label(spec: Any) -> str:
    """How records name a scorer: the spec string, or the scorer object's repr."""
    return spec.strip() if isinstance(spec, str) else repr(spec)


def _hub_clip_id(spec: Any) -> str | None:
    """The hub id of a ``clip:<hub id>`` spec (None for a folder, another scorer or an object)."""
    if not isinstance(spec, str):
        return None
    prefix, _, arg = spec.partition(":")
    arg = arg.strip()
    if prefix.strip().lower() != "clip" or not arg or arg.startswith(("/", ".", "~")) or arg.count("/") > 1 \
            or os.path.isdir(os.path.expanduser(arg)):
        return None  # a folder (CLIPScorer says when it is missing)
    return arg


def _cached_locally(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, "config.json")
        return isinstance(found, str) and os.path.isfile(found)
    except Exception:  # noqa: BLE001 - an invalid id is for from_pretrained to report
        return False


def check_scorer_available(spec: Any, hub_reachable: Callable[[], bool] | None = None) -> str | None:
    """Say early (before sampling) what a resolved scorer needs from the network.

    For ``clip:<hub id>`` that is not in the local Hugging Face cache: raises `ScorerError` when the
    hub is off (``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE``, or ``hub_reachable()`` is False), saying
    what to pass instead; otherwise returns a note that it will be downloaded now. None when
    nothing is needed (a folder, a cached model, a scorer without a network).
    """
    repo_id = _hub_clip_id(spec)
    if repo_id is None or _cached_locally(repo_id):
        return None
    offline = [name for name in OFFLINE_VARIABLES if os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")]
    if offline or (hub_reachable is not None and not hub_reachable()):
        why = (f"{offline[0]} is set, so the hub is not asked" if offline else
               "the Hugging Face hub cannot be reached from this machine")
        default = (" (what --method mtl balances with on a model whose folder declares no scorer)"
                   if repo_id == DEFAULT_CLIP else "")
        raise ScorerError(
            f"the balancing scorer 'clip:{repo_id}'{default} is not in the local Hugging Face cache and {why}. "
            f"Download it once on a connected machine (it is fetched on first use), or instead: {_ALTERNATIVES[0].lower()}{_ALTERNATIVES[1:]}")
    return f"downloading the balancing scorer's CLIP model '{repo_id}' from the Hugging Face hub (first use only)"


class CallableScorer:
    """Wraps ``fn(inputs: ScoreInputs) -> (B, N)``; the result is clamped into (0, 1]."""

    def __init__(self, fn: Callable[[ScoreInputs], torch.Tensor], needs_images: bool = True):
        self.fn = fn
        self.needs_images = needs_images

    def __repr__(self) -> str:
        return f"CallableScorer({getattr(self.fn, '__name__', self.fn)!r})"

    def __call__(self, inputs: ScoreInputs) -> torch.Tensor:
        scores = torch.as_tensor(self.fn(inputs))
        if inputs.x0_views is not None:
            expected = (inputs.x0_views.shape[1], inputs.x0_views.shape[0])
            if tuple(scores.shape) != expected:
                raise ScorerError(f"scorer {self!r} returned shape {tuple(scores.shape)}, expected (B, N) = {expected}")
        return _clamp_scores(scores)


ENTRY_POINT_GROUP = "anagram.scorers"

@functools.lru_cache(maxsize=2)
def _load_clip(source: str) -> CLIPScorer:
    """A CLIP scorer per source, loaded once per process (batch runs call the pipeline many times)."""
    return CLIPScorer(source)


_FACTORIES: dict[str, Callable[[str], Scorer]] = {
    "clip": lambda arg: _load_clip(os.path.expanduser(arg)),
    "attention": lambda arg: AttentionShareScorer(),
}
_entry_points_loaded = False


def register_scorer(prefix: str, factory: Callable[[str], Scorer]) -> None:
    """Make ``make_scorer("<prefix>:<arg>")`` call ``factory(arg)`` (``arg`` may be empty)."""
    _FACTORIES[prefix] = factory


def _from_entry_point(factory: Callable[..., Scorer]) -> Callable[[str], Scorer]:
    return lambda arg: factory(arg) if arg else factory()


def _factories() -> dict[str, Callable[[str], Scorer]]:
    """The registered factories, with the ``anagram.scorers`` entry points loaded on first use."""
    global _entry_points_loaded
    if not _entry_points_loaded:
        _entry_points_loaded = True
        for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
            if entry.name in _FACTORIES:
                continue  # registered in code: that wins
            try:
                _FACTORIES[entry.name] = _from_entry_point(entry.load())
            except Exception as error:  # noqa: BLE001 - one broken plugin must not hide the others
                warnings.warn(f"ignoring scorer entry point {entry.name!r} ({entry.value}): {error}", stacklevel=2)
    return _FACTORIES


def make_scorer(spec: str | Scorer | Callable[[ScoreInputs], torch.Tensor] | None, declared: Any = None) -> Scorer:
    """A scorer from ``"clip:<hub id or folder>"``, ``"attention"``, ``"auto"`` (the ``declared`` scorer of
    the model, else CLIP :data:`DEFAULT_CLIP`, see `resolve_scorer`), a `Scorer` or a callable."""
    spec = resolve_scorer(spec, declared)
    if isinstance(spec, str):
        prefix, _, arg = spec.partition(":")
        factories = _factories()
        factory = factories.get(prefix.strip().lower())
        if factory is None:
            known = ", ".join(f"'{p}:...'" if p == "clip" else f"'{p}'" for p in factories)
            raise ScorerError(f"unknown scorer {spec!r}; use one of {known}, a Scorer or a callable")
        if prefix.strip().lower() == "clip" and not arg.strip():
            raise ScorerError("the CLIP scorer needs a model: 'clip:openai/clip-vit-large-patch14' or 'clip:/path/to/folder'")
        return factory(arg.strip())
    if isinstance(spec, Scorer):
        return spec
    if callable(spec):
        return CallableScorer(spec)
    raise ScorerError(f"cannot make a scorer from {spec!r} ({type(spec).__name__})")
