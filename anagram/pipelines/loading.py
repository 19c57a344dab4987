"""Loading models by name, hub id or folder, with one clear message when that is impossible.

A built-in model is a pipeline folder shipped inside the package, ``anagram/models/<name>/`` with a
``model_index.json`` (``digits``...): it runs offline, and adding one needs no code. Anything else is
a local folder written by ``save_pretrained`` or a Hugging Face hub id; the pipeline class (Stable
Diffusion-like or DeepFloyd IF) is read from its ``model_index.json``. Weights are only ever loaded
as safetensors.
"""

from __future__ import annotations

import difflib
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"


def builtin_models() -> dict[str, Path]:
    """``{name: folder}`` of the generation models shipped in ``anagram/models/``.

    Only diffusion pipelines (their ``model_index.json`` names a ``unet``): the shipped translators
    (``typeset``, a ``TranslationPipeline``) sit beside them but are not models to generate with.
    """
    return {p.parent.name: p.parent for p in sorted(MODELS_DIR.glob("*/model_index.json")) if _has_unet(p)}


def _has_unet(model_index: Path) -> bool:
    try:
        return "unet" in json.loads(model_index.read_text())
    except (OSError, ValueError):
        return False


DEFAULTS_FILE = "anagram_defaults.json"
HUB_PROBE_SECONDS = 3.0
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def read_declared_defaults(location: str | Path) -> dict[str, Any]:
    """What a model folder declares about itself in ``anagram_defaults.json`` ({} if nothing)."""
    path = Path(str(location)).expanduser() / DEFAULTS_FILE
    if not path.is_file():
        return {}
    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return values if isinstance(values, dict) else {}


def read_call_defaults(location: str | Path) -> tuple[int, float] | None:
    """The steps and guidance a model folder declares (``anagram_defaults.json``), or None."""
    values = read_declared_defaults(location)
    try:
        return int(values["num_inference_steps"]), float(values["guidance_scale"])
    except (KeyError, TypeError, ValueError):
        return None


def read_declared_scorer(location: str | Path) -> str | None:
    """The balancing scorer a model folder declares (``anagram_defaults.json`` key ``"scorer"``), with a
    relative folder (``clip:../glyph_clip``) resolved against the model folder; None if it declares none."""
    from ..method.scorers import resolve_declared_scorer

    spec = read_declared_defaults(location).get("scorer")
    if not isinstance(spec, str) or not spec.strip():
        return None
    return resolve_declared_scorer(spec.strip(), Path(str(location)).expanduser().resolve())


def dtype_keyword() -> str:
    """The `from_pretrained` keyword for the weights' dtype: ``dtype`` where the installed diffusers
    has it (it warns that ``torch_dtype`` is deprecated), ``torch_dtype`` on older ones."""
    from diffusers import utils as diffusers_utils

    return "dtype" if hasattr(diffusers_utils, "_resolve_dtype") else "torch_dtype"


def hub_reachable(timeout: float = HUB_PROBE_SECONDS) -> bool:
    """Whether a TCP connection to the hub opens within `timeout` seconds (True behind a proxy,
    which only the proxy can answer). One short probe instead of a minute of retried requests."""
    if any(os.environ.get(name) for name in PROXY_VARIABLES):
        return True
    from huggingface_hub import constants

    endpoint = urlparse(constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname, port), timeout=timeout).close()
        return True
    except OSError:
        return False

DEFAULT_UPSCALER = "DeepFloyd/IF-II-L-v1.0"
DTYPES = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16,
          "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}
IF_CLASSES = {"IFPipeline", "IFAnagramPipeline"}
IF_UPSCALER_CLASSES = {"IFSuperResolutionPipeline", "IFSuperResolutionAnagramPipeline"}


class ModelLoadError(RuntimeError):
    """A model cannot be loaded; the message says why and what to do."""


@dataclass
class ModelSource:
    """Where a model comes from, as recorded in the JSON sidecar of every output."""

    name: str  # what the user typed
    location: str  # folder path or hub id
    is_folder: bool
    revision: str | None
    class_name: str
    local_only: bool = False  # the hub cannot be reached: load from the local cache without asking it

    def record(self) -> dict[str, Any]:
        return {"model": self.name, "location": self.location, "revision": self.revision,
                "pipeline_class": self.class_name}


def parse_dtype(name: str) -> torch.dtype:
    try:
        return DTYPES[name.lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; use one of fp32, fp16, bf16") from None


def locate(model: str, revision: str | None = None) -> ModelSource:
    """Resolve a built-in name, folder or hub id and read its model_index.json (no weights yet)."""
    folder = builtin_models().get(model, Path(model).expanduser())
    if folder.is_dir():
        index = folder / "model_index.json"
        if not index.is_file():
            raise ModelLoadError(
                f"folder '{folder}' has no model_index.json: it is not a diffusers pipeline folder "
                "(write one with `pipeline.save_pretrained(folder)`)"
            )
        config = json.loads(index.read_text())
        return ModelSource(model, str(folder), True, None, config.get("_class_name", ""))
    if model.startswith((".", "/", "~")) or model.count("/") > 1:
        raise ModelLoadError(f"no such model folder: '{model}'")
    close = difflib.get_close_matches(model, list(builtin_models()), n=1, cutoff=0.75) if "/" not in model else []
    if close:  # a typo of a built-in name, not a hub id (those are owner/name)
        raise ModelLoadError(f"no built-in model '{model}': did you mean '{close[0]}'? (built-in: "
                             f"{', '.join(builtin_models())}; anything else is a folder or a hub id such as "
                             "stable-diffusion-v1-5/stable-diffusion-v1-5)")
    return _locate_on_hub(model, revision)


def _locate_on_hub(repo_id: str, revision: str | None) -> ModelSource:
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import (
        GatedRepoError, HFValidationError, LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError,
    )

    offline = bool(constants.HF_HUB_OFFLINE)
    try:
        path = Path(hf_hub_download(repo_id, "model_index.json", revision=revision, local_files_only=True))
        cached = True
    except HFValidationError:
        raise ModelLoadError(f"'{repo_id}' is neither a local folder nor a valid Hugging Face hub id: check the "
                             "spelling (e.g. stable-diffusion-v1-5/stable-diffusion-v1-5), or use the built-in "
                             f"offline model: --model {_first_builtin()}") from None
    except (LocalEntryNotFoundError, OSError):
        cached = False
    reachable = not offline and hub_reachable()
    if not cached:
        if not reachable:
            why = ("HF_HUB_OFFLINE is set, so the hub is not asked (unset it to download)" if offline else
                   f"the hub ({urlparse(constants.ENDPOINT).hostname}) cannot be reached from this machine")
            raise ModelLoadError(
                f"cannot load '{repo_id}': it is not in the local Hugging Face cache and {why}. Download it once on "
                "a connected machine, pass a local folder made with save_pretrained, or use the built-in offline "
                f"model: --model {_first_builtin()}")
        try:
            path = Path(hf_hub_download(repo_id, "model_index.json", revision=revision))
        except GatedRepoError:
            raise ModelLoadError(
                f"'{repo_id}' is gated: accept its license on its Hugging Face page, then log in here with "
                "`hf auth login` (DeepFloyd IF needs this)"
            ) from None
        except RevisionNotFoundError:
            raise ModelLoadError(f"'{repo_id}' has no revision '{revision}'") from None
        except RepositoryNotFoundError:
            raise ModelLoadError(
                f"'{repo_id}' is neither a local folder nor a model on the Hugging Face hub: check the spelling "
                "(e.g. stable-diffusion-v1-5/stable-diffusion-v1-5, DeepFloyd/IF-I-XL-v1.0), or use the built-in "
                f"offline model: --model {_first_builtin()}"
            ) from None
        except (LocalEntryNotFoundError, OSError) as error:
            raise ModelLoadError(f"cannot download '{repo_id}' from the hub: {error}") from None
    config = json.loads(path.read_text())
    commit = path.parent.name if path.parent.parent.name == "snapshots" else revision
    return ModelSource(repo_id, repo_id, False, commit, config.get("_class_name", ""), local_only=not reachable)


def _first_builtin() -> str:
    return next(iter(builtin_models()), "digits")


def load_pipeline(source: ModelSource, torch_dtype: torch.dtype = torch.float32, **kwargs):
    """The anagram pipeline for a located model (`AnagramPipeline` or `IFAnagramPipeline`)."""
    from . import AnagramPipeline, IFAnagramPipeline

    if source.class_name in IF_UPSCALER_CLASSES:
        raise ModelLoadError(f"'{source.name}' is a DeepFloyd IF stage II (upscaler); give it as the upscaler "
                             "and a stage I model (e.g. DeepFloyd/IF-I-XL-v1.0) as the model")
    cls = IFAnagramPipeline if source.class_name in IF_CLASSES else AnagramPipeline
    if cls is IFAnagramPipeline and torch_dtype == torch.float16:
        kwargs.setdefault("variant", "fp16")
    return _from_pretrained(cls, source, torch_dtype, **kwargs)


def load_upscaler(source: ModelSource, stage_one, torch_dtype: torch.dtype = torch.float32):
    """DeepFloyd IF stage II sharing stage I's text encoder (one copy of T5 in memory)."""
    from . import IFSuperResolutionAnagramPipeline

    kwargs = {"text_encoder": stage_one.text_encoder, "tokenizer": stage_one.tokenizer}
    if torch_dtype == torch.float16:
        kwargs["variant"] = "fp16"
    return _from_pretrained(IFSuperResolutionAnagramPipeline, source, torch_dtype, **kwargs)


def _from_pretrained(cls, source: ModelSource, torch_dtype, **kwargs):
    if source.local_only:
        kwargs["local_files_only"] = True  # a hub that cannot be reached is not asked again, file by file
    try:
        return cls.from_pretrained(source.location, torch_dtype=torch_dtype, revision=source.revision,
                                   use_safetensors=True, **kwargs)
    except (OSError, ValueError, EnvironmentError) as error:
        raise ModelLoadError(f"could not load '{source.name}' as {cls.__name__}: {error}") from error
