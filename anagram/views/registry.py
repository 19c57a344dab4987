"""The view registry: names -> `View` classes, with plug-ins from the ``anagram.views`` entry points.

Third-party packages add views through the ``anagram.views`` entry-point group (each entry point
resolving to a `View` subclass), loaded lazily, once, the first time the registry is consulted::

    [project.entry-points."anagram.views"]
    spiral = "my_package.views:SpiralView"
"""

from __future__ import annotations

import difflib
import inspect
import warnings
from importlib import metadata
from typing import Any

from .base import View, ViewError

ENTRY_POINT_GROUP = "anagram.views"

_REGISTRY: dict[str, type[View]] = {}
_ALIASES: dict[str, str] = {}
_entry_points_loaded = False


# -- registration ------------------------------------------------------------------------------------


def register_view(cls: type[View] | None = None, *, name: str | None = None, aliases=(), replace: bool = False):
    """Add a `View` subclass to the registry under ``name`` (default: ``cls.name``).

    Usable as ``register_view(MyView)``, ``@register_view`` or ``@register_view(aliases=("x",))``.
    Registering a different class under a taken name raises `ViewError` unless ``replace=True``.
    """
    if cls is None:
        return lambda klass: register_view(klass, name=name, aliases=aliases, replace=replace)
    if not (isinstance(cls, type) and issubclass(cls, View)):
        raise ViewError(f"only View subclasses can be registered, got {cls!r}")
    key = name or cls.name
    if not key or key == View.name:
        raise ViewError(f"{cls.__name__} needs a registry name: set the class attribute `name`")
    taken = _REGISTRY.get(key)
    if taken is not None and taken is not cls and not replace:
        raise ViewError(f"view name {key!r} is already registered by {_qualname(taken)}; pass replace=True")
    _REGISTRY[key] = cls
    _ALIASES.pop(key, None)
    for alias in aliases:
        _ALIASES[alias] = key
    return cls


def load_entry_points(force: bool = False) -> list[str]:
    """Register the views that installed packages declare in the ``anagram.views`` group.

    Runs once (again with ``force=True``); returns the names it registered. A broken plugin is
    reported with a warning rather than breaking every view lookup.
    """
    global _entry_points_loaded
    if _entry_points_loaded and not force:
        return []
    _entry_points_loaded = True
    loaded = []
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = entry.load()
            if not (isinstance(cls, type) and issubclass(cls, View)):
                raise TypeError(f"it resolves to {cls!r}, not a View subclass")
            key = cls.name if cls.name != View.name else entry.name
            register_view(cls, name=key, aliases=(entry.name,) if entry.name != key else ())
            loaded.append(key)
        except Exception as error:  # noqa: BLE001 - one bad plugin must not hide the others
            warnings.warn(f"ignoring view entry point {entry.name!r} ({entry.value}): {error}", stacklevel=2)
    return loaded


def _registry() -> dict[str, type[View]]:
    load_entry_points()
    return _REGISTRY


# -- lookup -----------------------------------------------------------------------------------------------


def available() -> list[str]:
    """The registered view names, sorted (aliases are not listed)."""
    return sorted(_registry())


def view_class(name: str) -> type[View]:
    """The class registered under ``name`` (or an alias); `ViewError` naming the options if none."""
    registry = _registry()
    key = _ALIASES.get(name, name)
    if key in registry:
        return registry[key]
    names = sorted(registry)
    close = difflib.get_close_matches(name, names + sorted(_ALIASES), n=1)
    hint = f" Did you mean {_ALIASES.get(close[0], close[0])!r}?" if close else ""
    raise ViewError(f"unknown view {name!r}.{hint} Available views: {', '.join(names)}")


def get_view(name: str, **params: Any) -> View:
    """An instance of the view ``name`` with constructor ``params``."""
    cls = view_class(name)
    try:
        inspect.signature(cls).bind(**params)
        return cls(**params)
    except ViewError:
        raise
    except (TypeError, ValueError) as error:  # a missing/unknown parameter, or a value of the wrong type
        raise ViewError(f"bad parameters for view {name!r}: {error}; it accepts {_signature_text(cls)}") from None


def from_config(config: dict[str, Any]) -> View:
    """The view that ``view.config()`` describes (``{"name": ..., **params}``)."""
    if not isinstance(config, dict) or "name" not in config:
        raise ViewError(f"a view config is a dict with a 'name' key, got {config!r}")
    params = dict(config)
    return get_view(params.pop("name"), **params)


# -- description (for `anagram views` and docs) -----------------------------------------------------------


def _parameters(cls: type[View]) -> list[inspect.Parameter]:
    """The constructor parameters a user can set (no self, no *args/**kwargs)."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p for p in inspect.signature(cls).parameters.values() if p.kind in kinds]


def _positional(cls: type[View]) -> tuple[str, ...]:
    if cls.positional is not None:
        return tuple(cls.positional)
    return tuple(p.name for p in _parameters(cls))


def _signature_text(cls: type[View]) -> str:
    parts = [p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default!r}" for p in _parameters(cls)]
    return f"({', '.join(parts)})" if parts else "no parameters"


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _summary(cls: type[View]) -> str:
    doc = inspect.getdoc(cls) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def describe() -> list[dict[str, Any]]:
    """One JSON-serialisable dict per registered view, sorted by name: its declared properties,
    its parameters with their defaults (``None`` for required ones, also listed in ``required``)
    and a one-line description."""
    registry = _registry()
    rows = []
    for name in sorted(registry):
        cls = registry[name]
        parameters = _parameters(cls)
        rows.append({
            "name": name,
            "class": _qualname(cls),
            "orthogonal": cls.orthogonal,
            "spaces": list(cls.spaces),
            "square_only": cls.square_only,
            "factorized": cls.factorized,
            "invertible": cls.invertible,
            "parameters": {p.name: None if p.default is inspect.Parameter.empty else p.default for p in parameters},
            "required": [p.name for p in parameters if p.default is inspect.Parameter.empty],
            "positional": list(_positional(cls)),
            "aliases": sorted(alias for alias, target in _ALIASES.items() if target == name),
            "description": _summary(cls),
        })
    return rows
