"""The models a running app serves: each loaded once, reused by every request, used by one at a time.

A `ModelPool` knows which model names the app was started with (``anagram app --model ...``) and
loads each the first time a request names it. Requests for the same model share its
`anagram.runs.model.LoadedModel` (never reloaded per call) and take turns on it through a lock
held for the whole generation: the multi-task method installs attention-capture processors on
the UNet for the length of a call, so two calls on one pipeline at once would disturb each other.
The web page's queue (one generation at a time) already keeps requests apart; the lock also keeps
apart calls that reach the pool some other way (the gradio API, a second event).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

from ..pipelines.loading import builtin_models, locate
from ..runs.model import LoadedModel, model_defaults


class UnknownModelError(ValueError):
    """A request named a model the app does not serve."""


class ModelPool:
    """Loaded models by name; ``loader`` builds one (default `LoadedModel.load`)."""

    def __init__(self, names: Sequence[str], *, device: str | None = None, dtype: str = "fp32",
                 loader: Callable[..., LoadedModel] | None = None):
        if not names:
            raise ValueError("an app serves at least one model")
        self.names = list(dict.fromkeys(names))
        self.device, self.dtype = device, dtype
        self._loader = loader or LoadedModel.load
        self._loaded: dict[str, LoadedModel] = {}
        self._in_use: dict[str, threading.Lock] = {name: threading.Lock() for name in self.names}
        self._loading = threading.Lock()
        self.loads = 0  # how many times a model was loaded (each name at most once)

    @property
    def default(self) -> str:
        return self.names[0]

    def check(self, name: str) -> str:
        """``name`` if the app serves it, else `UnknownModelError` naming the ones it does."""
        name = (name or "").strip() or self.default
        if name not in self.names:
            builtin = ", ".join(sorted(builtin_models()))
            raise UnknownModelError(f"unknown model {name!r}: this app serves {', '.join(self.names)} "
                                    f"(start it with `anagram app --model NAME` for another; built in: {builtin})")
        return name

    def defaults(self, name: str) -> tuple[int, float]:
        """The steps and guidance a model's authors recommend, without loading its weights."""
        name = self.check(name)
        if name in self._loaded:
            loaded = self._loaded[name]
            return loaded.default_steps, loaded.default_guidance
        return model_defaults(locate(name))

    def get(self, name: str) -> LoadedModel:
        """The loaded model ``name`` (loaded now if this is its first request)."""
        name = self.check(name)
        with self._loading:
            if name not in self._loaded:
                self._loaded[name] = self._loader(name, dtype=self.dtype, device=self.device)
                self.loads += 1
            return self._loaded[name]

    @contextmanager
    def using(self, name: str) -> Iterator[LoadedModel]:
        """The loaded model ``name``, held by this caller alone until the block ends."""
        loaded = self.get(name)
        with self._in_use[self.check(name)]:
            yield loaded


__all__ = ["ModelPool", "UnknownModelError"]
