"""Switches of the multi-task method (spec §3-§5) and their per-step hooks into the sampling loop."""

from __future__ import annotations


def resolve_method(method):
    """None for the baseline sampler; otherwise the multi-task configuration."""
    if method is None or method == "baseline":
        return None
    raise NotImplementedError
