"""View specs as users type them: ``"jigsaw:4,seed=3"``, config dicts, lists on the command line.

A view can be named (``"rotate_cw"``), given as a string spec (``"name"`` or
``"name:a,b,key=value"``, positional values filling the class's `View.positional` parameters),
as a config dict (``view.config()``) or as a `View`. `split_views` cuts a comma-separated list of
specs (``"identity,jigsaw:4,seed=3"``) into specs, keeping each spec's own commas.
"""

from __future__ import annotations

import json
from typing import Any

from .base import View, ViewError
from .registry import _positional, _signature_text, available, from_config, get_view, view_class


def parse_view(spec: View | str | dict | type) -> View:
    """A `View` from a view, a registry name, a string spec (``"jigsaw:4,seed=3"``), a config dict,
    or a `View` subclass (built with its defaults)."""
    if isinstance(spec, View):
        return spec
    if isinstance(spec, type) and issubclass(spec, View):
        return spec()
    if isinstance(spec, dict):
        return from_config(spec)
    if isinstance(spec, str):
        return _parse_spec(spec)
    raise ViewError(f"cannot make a view from {spec!r}: give a View, a name, a 'name:args' spec or a config dict")


def _parse_spec(spec: str) -> View:
    """``name`` or ``name:a,b,key=value`` -> the view (positional values fill `View.positional`)."""
    name, _, arguments = spec.strip().partition(":")
    cls = view_class(name.strip())
    positional_names = _positional(cls)
    params: dict[str, Any] = {}
    positional_done = False
    for index, token in enumerate(_split_arguments(arguments)):
        key, sep, text = token.partition("=")
        if sep:
            key = key.strip()
            positional_done = True
        elif positional_done:
            raise ViewError(f"bad view spec {spec!r}: positional value {token!r} after key=value ones")
        elif index >= len(positional_names):
            raise ViewError(f"bad view spec {spec!r}: too many values; {name} accepts {_signature_text(cls)}")
        else:
            key, text = positional_names[index], token
        if not key or key in params:
            raise ViewError(f"bad view spec {spec!r}: empty or repeated parameter {key!r}")
        params[key] = _parse_value(text.strip())
    return get_view(name.strip(), **params)


def _split_arguments(text: str) -> list[str]:
    """Split ``a,b,key=[1,2]`` on the commas that are not inside brackets (JSON values)."""
    tokens, depth, current = [], 0, ""
    for char in text:
        depth += (char in "[{") - (char in "]}")
        if char == "," and depth == 0:
            tokens.append(current.strip())
            current = ""
        else:
            current += char
    if current.strip() or tokens:
        tokens.append(current.strip())
    return tokens


def _parse_value(text: str) -> Any:
    """A spec value: bool, None, int, float, JSON list/object, else the string itself."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    if text[:1] in "[{":
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text


def split_views(views: str | None) -> list[str] | None:
    """``"identity,patch_permute:8"`` -> names/specs; a spec's own commas are kept (``jigsaw:4,seed=3``)."""
    if not views:
        return None
    names = set(available())
    parts: list[str] = []
    for token in views.split(","):
        token = token.strip()
        head = token.split(":", 1)[0]
        if parts and ":" in parts[-1] and head not in names:
            parts[-1] += "," + token  # a parameter of the previous spec
        else:
            parts.append(token)
    return parts
