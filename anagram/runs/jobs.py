"""Job files of `anagram batch`: every line parsed and checked before any model loads.

**Job file.** CSV with a header row, or JSONL (one JSON object a line; chosen by the extension
``.csv`` / ``.jsonl``, else by the first character). One job a line; blank lines and lines starting
with ``#`` are ignored. Keys (CSV columns):

=============  ========================================================================================
prompts        required; one prompt per view, separated by ``|`` (JSONL: a list of strings, or ``|``)
views          view specs as on the command line (``identity,jigsaw:4,seed=3``; ``|`` also separates);
               JSONL: a list of specs or config dicts. Default: identity(,rotate_180)
style          prefix shared by every prompt ("an oil painting of")
negative       negative prompt (alias ``negative_prompt``)
seeds          ``0-9``, ``1,5,7`` or ``0-3,10`` (JSONL: also a list of ints, or one int)
num_samples    instead of ``seeds``: that many seeds from ``seed`` (default 0); default 1 sample
model          model name, folder or hub id (default: ``--model``); also ``revision``, ``dtype``,
               ``upscaler``, ``upscaler_steps`` (DeepFloyd IF)
steps          denoising steps (alias ``num_inference_steps``); default: the model's
guidance       guidance scale (alias ``guidance_scale``); default: the model's
size           image size in pixels (square)
method         ``baseline``, ...; JSONL: a string or an object of method settings
=============  ========================================================================================

If any line is bad, `read_jobs` raises `JobFileError` listing every bad line as ``JOBS:LINE:
message`` (nothing is generated, nothing is dropped silently).

**Units.** Every (job, seed) is one *unit*, named by a stable id: the sample's usual stem
(`anagram.runs.request.sample_name`: the readable stem plus a hash of the job's parameters), e.g.
``a-red-fox-a-duck__identity-rotate_180__seed3__1f0c9a2b7e``; a repeated job line adds only its new
seeds.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ..method import resolve_method
from ..outputs.records import sample_files
from ..pipelines.loading import ModelLoadError, locate, parse_dtype
from ..views import split_views
from .request import Request, sample_name
from .sizes import check_view_sizes, folder_grid

KEYS = ("prompts", "views", "style", "negative", "seeds", "num_samples", "seed", "model", "revision", "steps",
        "guidance", "size", "dtype", "method", "upscaler", "upscaler_steps")
ALIASES = {"prompt": "prompts", "view": "views", "negative_prompt": "negative", "guidance_scale": "guidance",
           "num_inference_steps": "steps", "n": "num_samples"}
MAX_SEEDS_PER_JOB = 1_000_000
MAX_SEED = 2**63 - 1


class JobFileError(ValueError):
    """A job file with bad lines; `problems` holds one ``JOBS:LINE: message`` per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass
class Job:
    line: int  # 1-based line of the job file
    request: Request
    seeds: list[int]
    key: str  # hash of the normalised parameters

    @property
    def model_key(self) -> tuple:
        r = self.request
        return (r.model, r.revision, r.dtype, r.upscaler if r.upscaler else None)


@dataclass
class Unit:
    id: str  # also the stem of its files
    job: Job
    seed: int

    def files(self) -> dict[str, str]:
        return sample_files(self.id)


@dataclass
class Plan:
    jobs: list[Job]
    units: list[Unit]
    notes: list[str] = field(default_factory=list)


def read_jobs(path: str | Path, default_model: str = "digits") -> Plan:
    """Parse and validate every line of a job file; `JobFileError` lists all the bad ones."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise JobFileError([f"{path}: cannot read the job file: {error}"]) from None
    problems: list[str] = []
    jobs: list[Job] = []
    located: dict[tuple, Any] = {}  # (model, revision): why it cannot be found; ("size", model): its grid
    for line, row in _rows(path, text, problems):
        try:
            jobs.append(_job(line, row, default_model, located))
        except ValueError as error:
            problems.append(f"{path}:{line}: {error}")
    if not jobs and not problems:
        problems.append(f"{path}: no jobs (one job a line: a CSV with a header row, or JSONL)")
    if problems:
        raise JobFileError(problems)
    return plan_units(jobs)


def _is_jsonl(path: Path, text: str) -> bool:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return True
    if suffix in (".csv", ".tsv"):
        return False
    first = next((s for s in (ln.strip() for ln in text.splitlines()) if s and not s.startswith("#")), "")
    return first.startswith("{")


def _rows(path: Path, text: str, problems: list[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, {key: value}) for every job line; problems of the file's shape go to `problems`."""
    if _is_jsonl(path, text):
        for number, raw in enumerate(text.splitlines(), start=1):
            if not raw.strip() or raw.lstrip().startswith("#"):
                continue
            try:
                row = json.loads(raw)
            except ValueError as error:
                problems.append(f"{path}:{number}: invalid JSON ({error})")
                continue
            if not isinstance(row, dict):
                problems.append(f"{path}:{number}: a job is a JSON object, got {type(row).__name__}")
                continue
            keys, bad = _normalise_keys(list(row))
            if bad:
                problems.append(f"{path}:{number}: {bad}")
                continue
            yield number, dict(zip(keys, row.values()))
        return
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
    header: list[str] | None = None
    start = 1
    try:
        for cells in reader:
            line, start = start, reader.line_num + 1
            if not any(c.strip() for c in cells) or cells[0].lstrip().startswith("#"):
                continue
            if header is None:
                header, bad = _normalise_keys(cells)
                if not bad and "prompts" not in header:
                    bad = f"missing column 'prompts' (the header has: {', '.join(header)})"
                if bad:
                    problems.append(f"{path}:{line}: {bad} (the first line is the header)")
                    return
                continue
            if len(cells) != len(header):
                problems.append(f"{path}:{line}: {len(cells)} fields but the header has {len(header)} "
                                "(quote a field that contains commas: \"identity,rotate_180\")")
                continue
            yield line, {k: (v.strip() or None) for k, v in zip(header, cells)}
    except csv.Error as error:
        problems.append(f"{path}:{reader.line_num}: {error}")


def _normalise_keys(names: list[str]) -> tuple[list[str], str | None]:
    keys = [ALIASES.get(str(n).strip().lower(), str(n).strip().lower()) for n in names]
    unknown = [n for n, k in zip(names, keys) if k not in KEYS]
    if unknown:
        return keys, f"unknown column(s) {', '.join(map(repr, unknown))}; known: {', '.join(KEYS)}"
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        return keys, f"column(s) given twice: {', '.join(repeated)}"
    return keys, None


def _job(line: int, row: dict[str, Any], default_model: str, located: dict) -> Job:
    prompts = _prompts(row.get("prompts"))
    views = _views(row.get("views"))
    seeds = _seeds(row)
    dtype = _text(row, "dtype") or "fp32"
    dtype = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}.get(dtype.lower(), dtype.lower())
    parse_dtype(dtype)
    method = _method(row.get("method"))
    size = _int(row, "size", minimum=0)  # the size rule is `Request.build`'s, as for `anagram generate`
    try:
        parsed_method = resolve_method(method)
    except NotImplementedError:
        raise ValueError(f"method {method!r} is not available in this version (use 'baseline')") from None
    except (ValueError, TypeError) as error:
        raise ValueError(f"bad method {method!r}: {error}") from None
    try:  # unknown views, bad specs, prompt/view count mismatch
        request = Request.build(
            prompts, views, method=parsed_method, style=_text(row, "style"), negative_prompt=_text(row, "negative"),
            model=_text(row, "model") or default_model, revision=_text(row, "revision"),
            steps=_int(row, "steps", minimum=1), guidance_scale=_float(row, "guidance"), size=size, dtype=dtype,
            upscaler=_text(row, "upscaler"), upscaler_steps=_int(row, "upscaler_steps", minimum=1),
        )
    except (ValueError, TypeError) as error:
        raise ValueError(str(error)) from None
    where = (request.model, request.revision)
    if where not in located:  # reads model_index.json only, no weights
        try:
            locate(*where)
            located[where] = None
        except ModelLoadError as error:
            located[where] = str(error)
    if located[where]:
        raise ValueError(located[where])
    grid = ("size", request.model)  # a model folder's side and space, read once per model
    if grid not in located:
        located[grid] = folder_grid(request.model)
    check_view_sizes(request, located[grid])  # a jigsaw:5 on 32 px: said with the file's other problems
    return Job(line=line, request=request, seeds=seeds, key=job_key(request))


def _method(value: Any) -> Any:
    """The ``method`` cell: a name, or settings as a JSON object (JSONL, or JSON text in a CSV cell)."""
    if value is None:
        return "baseline"
    if not isinstance(value, (str, dict)):
        raise ValueError(f"'method' is a name or (JSONL) an object of settings, got {value!r}")
    if isinstance(value, str) and value.strip().startswith("{"):
        try:
            return json.loads(value)
        except ValueError as error:
            raise ValueError(f"'method' is not valid JSON: {error}") from None
    return value.strip() if isinstance(value, str) else value


def _text(row: dict, key: str) -> str | None:
    value = row.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"'{key}' must be text, got {value!r}")
    return value.strip() or None


def _int(row: dict, key: str, minimum: int = 0) -> int | None:
    value = row.get(key)
    if value is None:
        return None
    if isinstance(value, str) and re.fullmatch(r"\s*\d+\s*", value):
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"'{key}' must be a whole number >= {minimum}, got {row[key]!r}")
    return value


def _float(row: dict, key: str) -> float | None:
    value = row.get(key)
    if value is None:
        return None
    try:
        if isinstance(value, bool):
            raise ValueError
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"'{key}' must be a number, got {value!r}") from None


def _prompts(value: Any) -> list[str]:
    if isinstance(value, str):
        value = value.split("|")
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise ValueError("missing 'prompts': one prompt per view, separated by '|' (JSONL: a list of strings)"
                         if value is None else f"'prompts' must be text or a list of strings, got {value!r}")
    prompts = [p.strip() for p in value]
    if not prompts or not all(prompts):
        raise ValueError(f"empty prompt in {value!r}: give one non-empty prompt per view")
    return prompts


def _views(value: Any) -> list | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [v.strip() for v in value.split("|")] if "|" in value else split_views(value)
    if isinstance(value, list) and value and all(isinstance(v, (str, dict)) for v in value):
        return value
    raise ValueError(f"'views' must be a comma-separated text or a list of view specs, got {value!r}")


def parse_seeds(value: Any) -> list[int]:
    """``"0-9"``, ``"1,5,7"``, ``"0-3,10"``, an int or a list of ints -> sorted distinct seeds."""
    if isinstance(value, bool):
        raise ValueError(f"bad seeds {value!r}")
    if isinstance(value, int):
        value = [value]
    if isinstance(value, str):
        seeds: list[int] = []
        for part in value.replace(" ", "").split(","):
            match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
            if not match:
                raise ValueError(f"bad seeds {value!r}: use e.g. 0-9, 1,5,7 or 0-3,10 (whole numbers >= 0)")
            first, last = int(match[1]), int(match[2] or match[1])
            if last < first:
                raise ValueError(f"bad seed range {part!r}: the end is below the start")
            if last - first >= MAX_SEEDS_PER_JOB:
                raise ValueError(f"seed range {part!r} is too large (at most {MAX_SEEDS_PER_JOB} seeds a job)")
            seeds.extend(range(first, last + 1))
        value = seeds
    if not isinstance(value, list) or not value or not all(isinstance(s, int) and not isinstance(s, bool)
                                                           for s in value):
        raise ValueError(f"bad seeds {value!r}: use e.g. 0-9, 1,5,7 or a list of whole numbers")
    if any(s < 0 or s > MAX_SEED for s in value):
        raise ValueError(f"seeds must be between 0 and {MAX_SEED}")
    if len(value) > MAX_SEEDS_PER_JOB:
        raise ValueError(f"too many seeds (at most {MAX_SEEDS_PER_JOB} a job)")
    return sorted(set(value))


def _seeds(row: dict) -> list[int]:
    if row.get("seeds") is not None:
        if row.get("num_samples") is not None or row.get("seed") is not None:
            raise ValueError("give either 'seeds' or 'num_samples' (+ 'seed', the first seed), not both")
        return parse_seeds(row["seeds"])
    count = _int(row, "num_samples", minimum=1) or 1
    if count > MAX_SEEDS_PER_JOB:
        raise ValueError(f"too many samples (at most {MAX_SEEDS_PER_JOB} a job)")
    start = _int(row, "seed") or 0
    return list(range(start, start + count))


def job_key(request: Request) -> str:
    """A stable hash of everything that determines a job's images (its seeds aside): `Request.key`."""
    return request.key()


def unit_id(job: Job, seed: int) -> str:
    return sample_name(job.request, seed)  # the name `anagram generate` gives the same sample


def plan_units(jobs: list[Job]) -> Plan:
    """Every (job, seed) once, in job-file order; a repeated job line adds only its new seeds."""
    units: dict[str, Unit] = {}
    notes = []
    for job in jobs:
        repeated = 0
        for seed in job.seeds:
            uid = unit_id(job, seed)
            if uid in units:
                repeated += 1
            else:
                units[uid] = Unit(uid, job, seed)
        if repeated:
            notes.append(f"{job.line}: {repeated} of its units repeat an earlier line's (same parameters and "
                         "seed); each is generated once")
    return Plan(jobs, list(units.values()), notes)
