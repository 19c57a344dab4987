"""The multi-task method (spec §3-§5): its switches, its per-step hooks and the maths of each component.

Rooms: `switches` (`MultiTask`, `AntiSegregation`: what users set and outputs record), `hooks`
(what the sampling loop calls each step), and one file per piece of maths or machinery:
`balancing`, `rectification`, `anti_segregation`, `attention` (cross-attention capture),
`concepts` (which prompt tokens are the concept) and `scorers` (completion scores for balancing).
"""

from .concepts import ConceptError, parse_concept, strip_concept_marks
from .hooks import MethodHooks, predicted_clean
from .switches import (
    DEFAULT_ANTI_SEGREGATION_LAYERS,
    REFERENCE_ANTI_SEGREGATION_FRACTION,
    REFERENCE_ANTI_SEGREGATION_LAYERS,
    AntiSegregation,
    MultiTask,
    json_safe,
    method_from_switches,
    resolve_method,
)

__all__ = [
    "DEFAULT_ANTI_SEGREGATION_LAYERS",
    "REFERENCE_ANTI_SEGREGATION_FRACTION",
    "REFERENCE_ANTI_SEGREGATION_LAYERS",
    "AntiSegregation",
    "ConceptError",
    "MethodHooks",
    "MultiTask",
    "json_safe",
    "method_from_switches",
    "parse_concept",
    "predicted_clean",
    "resolve_method",
    "strip_concept_marks",
]
