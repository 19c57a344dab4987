"""`anagram batch`: many anagrams from a job file, resumable after any interruption, data parallel.

    anagram batch jobs.csv --out runs/eval
    torchrun --nproc_per_node 4 -m anagram.cli batch jobs.csv --out runs/eval        # 4 GPUs
    accelerate launch --multi_gpu --num_processes 4 -m anagram.cli batch jobs.csv --out runs/eval

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

Every line is validated before any model is loaded; if any line is bad the whole run fails up
front, listing every bad line as ``JOBS:LINE: message`` (nothing is generated, nothing is dropped
silently).

**Units, files and resume.** Every (job, seed) is one *unit*, named by a stable id: the sample's
usual stem (`anagram.generate.sample_stem`) plus a hash of the job's normalised parameters, e.g.
``a-red-fox-a-duck__identity-rotate_180__seed3__1f0c9a2b7e``; its files are ``<id>.png``,
``<id>.views.png`` and, written last, ``<id>.json``, each written atomically (temporary name, then
rename). The files are the ground truth: a unit is done when its three files exist, so the same
command resumes an interrupted run (Ctrl-C, SIGTERM, SIGKILL, full disk) and redoes nothing;
temporary files a killed process left behind are removed when the next run starts.

``DIR/manifest.jsonl`` is the index of finished units (one JSON line each: unit, job line, seed,
rank, files, time). While running, each process appends (flushed and fsynced) to its own
``DIR/manifest.rank{R}.jsonl``; the main process merges these into ``manifest.jsonl`` (rewritten
atomically) at the start and at the end of every run, dropping lines whose files are gone and
recovering units whose files exist without a line (killed between the two writes), so every unit
appears in it exactly once.

**Data parallel.** Under ``torchrun``/``accelerate launch`` the processes share the work through
accelerate's `PartialState`: the main process lists the pending units, broadcasts them, and
process R takes ``pending[R::world]`` (in job-file order), on its own device (``state.device``).
On CPU, ``torchrun --nproc_per_node 2 -m anagram.cli batch ...`` runs two processes over gloo
(``accelerate launch --cpu`` starts a single process unless given an MPI hostfile). With
several machines, DIR must be on a filesystem they share.

**Metrics.** At the end the main process calls ``anagram.evaluate.evaluate_folder(DIR)`` when that
module exists (``--no-evaluate`` skips it), else prints a one-line note.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import importlib
import io
import json
import os
import re
import signal
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterator, Optional

import typer

MANIFEST = "manifest.jsonl"
RANK_MANIFEST = "manifest.rank{rank}.jsonl"
KEYS = ("prompts", "views", "style", "negative", "seeds", "num_samples", "seed", "model", "revision", "steps",
        "guidance", "size", "dtype", "method", "upscaler", "upscaler_steps")
ALIASES = {"prompt": "prompts", "view": "views", "negative_prompt": "negative", "guidance_scale": "guidance",
           "num_inference_steps": "steps", "n": "num_samples"}
MAX_SEEDS_PER_JOB = 1_000_000
MAX_SEED = 2**63 - 1
# Ranks meet only at the start and the end; a long unbalanced run must not hit the default 30 min timeout.
PROCESS_GROUP_TIMEOUT = timedelta(hours=24)


class JobFileError(ValueError):
    """A job file with bad lines; `problems` holds one ``JOBS:LINE: message`` per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass
class Job:
    line: int  # 1-based line of the job file
    request: Any  # anagram.generate.Request
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
        from .generate import sample_files

        return sample_files(self.id)


@dataclass
class Plan:
    jobs: list[Job]
    units: list[Unit]
    notes: list[str] = field(default_factory=list)


# -- job file ----------------------------------------------------------------------------------------------


def read_jobs(path: str | Path, default_model: str = "digits") -> Plan:
    """Parse and validate every line of a job file; `JobFileError` lists all the bad ones."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise JobFileError([f"{path}: cannot read the job file: {error}"]) from None
    problems: list[str] = []
    jobs: list[Job] = []
    located: dict[tuple, str | None] = {}
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
    from .generate import Request
    from .loading import ModelLoadError, locate, parse_dtype
    from .method import resolve_method

    prompts = _prompts(row.get("prompts"))
    views = _views(row.get("views"))
    seeds = _seeds(row)
    dtype = _text(row, "dtype") or "fp32"
    try:
        dtype = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}.get(dtype.lower(), dtype.lower())
        parse_dtype(dtype)
    except ValueError as error:
        raise ValueError(str(error)) from None
    method = row.get("method")
    method = "baseline" if method is None else method
    if not isinstance(method, (str, dict)):
        raise ValueError(f"'method' is a name or (JSONL) an object of settings, got {method!r}")
    if isinstance(method, str) and method.strip().startswith("{"):
        try:
            method = json.loads(method)
        except ValueError as error:
            raise ValueError(f"'method' is not valid JSON: {error}") from None
    request = Request(
        prompts=prompts, views=views, style=_text(row, "style"), negative_prompt=_text(row, "negative"),
        model=_text(row, "model") or default_model, revision=_text(row, "revision"),
        steps=_int(row, "steps", minimum=1), guidance_scale=_float(row, "guidance"),
        size=_int(row, "size", minimum=8), dtype=dtype, method=method.strip() if isinstance(method, str) else method,
        upscaler=_text(row, "upscaler"), upscaler_steps=_int(row, "upscaler_steps", minimum=1),
    )
    if request.size is not None and request.size % 8:
        raise ValueError(f"'size' must be a multiple of 8, got {request.size}")
    try:
        request.validate()  # unknown views, bad specs, prompt/view count mismatch
    except (ValueError, TypeError) as error:
        raise ValueError(str(error)) from None
    try:
        resolve_method(request.method)
    except NotImplementedError:
        raise ValueError(f"method {request.method!r} is not available in this version (use 'baseline')") from None
    except (ValueError, TypeError) as error:
        raise ValueError(f"bad method {request.method!r}: {error}") from None
    where = (request.model, request.revision)
    if where not in located:  # reads model_index.json only, no weights
        try:
            locate(*where)
            located[where] = None
        except ModelLoadError as error:
            located[where] = str(error)
    if located[where]:
        raise ValueError(located[where])
    return Job(line=line, request=request, seeds=seeds, key=job_key(request))


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
    from .cli import split_views

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


def job_key(request) -> str:
    """A stable hash of everything that determines a job's images (its seeds aside)."""
    from dataclasses import asdict, is_dataclass

    method = asdict(request.method) if is_dataclass(request.method) else request.method
    payload = {
        "prompts": list(request.prompts), "views": request.view_configs(), "style": request.style,
        "negative_prompt": request.negative_prompt, "model": request.model, "revision": request.revision,
        "steps": request.steps, "guidance_scale": request.guidance_scale, "size": request.size,
        "dtype": request.dtype, "method": method, "upscaler": request.upscaler,
        "upscaler_steps": request.upscaler_steps,
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def unit_id(job: Job, seed: int) -> str:
    from .generate import sample_stem

    return f"{sample_stem(job.request, seed)}__{job.key}"


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


# -- files on disk -----------------------------------------------------------------------------------------


def unit_done(out_dir: Path, files: dict[str, str]) -> bool:
    return all((out_dir / name).is_file() for name in files.values())


def remove_stale_temporaries(out_dir: Path) -> int:
    """Delete the temporary files (``.NAME.XXXX.tmp``, see `anagram.io`) a killed process left behind."""
    removed = 0
    for tmp in out_dir.glob(".*.tmp"):
        try:
            tmp.unlink()
            removed += 1
        except FileNotFoundError:
            pass
    return removed


def _read_lines(path: Path) -> list[dict]:
    entries = []
    try:
        text = path.read_text()
    except FileNotFoundError:
        return entries
    for raw in text.splitlines():
        try:
            entry = json.loads(raw)
        except ValueError:
            continue  # a line torn by a kill: the unit's files (the ground truth) recover it
        if isinstance(entry, dict) and isinstance(entry.get("unit"), str) and isinstance(entry.get("files"), dict):
            entries.append(entry)
    return entries


def merge_manifest(out_dir: Path, units: list[Unit]) -> dict[str, dict]:
    """Rebuild ``manifest.jsonl`` from itself, the per-process manifests and the files on disk.

    Only the main process calls this, while no other process writes. Keeps one line per unit whose
    files all exist (first line wins), adds the units of `units` whose files exist without a line,
    writes the result atomically, then removes the per-process files. Returns {unit id: entry}.
    """
    from .io import atomic_write_bytes

    rank_files = sorted(out_dir.glob(RANK_MANIFEST.format(rank="*")))
    entries: dict[str, dict] = {}
    for path in [out_dir / MANIFEST, *rank_files]:
        for entry in _read_lines(path):
            if entry["unit"] not in entries and unit_done(out_dir, entry["files"]):
                entries[entry["unit"]] = entry
    for unit in units:
        if unit.id not in entries and unit_done(out_dir, unit.files()):
            entries[unit.id] = _entry(unit, rank=None, recovered=True)
    text = "".join(json.dumps(e) + "\n" for e in entries.values())
    old = out_dir / MANIFEST
    if rank_files or not old.is_file() or old.read_text() != text:
        atomic_write_bytes(old, text.encode())
    for path in rank_files:
        path.unlink(missing_ok=True)
    return entries


def _entry(unit: Unit, rank: int | None, recovered: bool = False) -> dict:
    entry = {"unit": unit.id, "job_line": unit.job.line, "job": unit.job.key, "seed": unit.seed, "rank": rank,
             "files": unit.files(), "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if recovered:
        entry["recovered"] = True  # files found without a manifest line (killed between the two writes)
    return entry


class RankManifest:
    """This process's append-only manifest: one fsynced line per finished unit."""

    def __init__(self, out_dir: Path, rank: int):
        self.rank = rank
        self.path = out_dir / RANK_MANIFEST.format(rank=rank)
        self.handle = None

    def append(self, unit: Unit) -> None:
        if self.handle is None:
            self.handle = open(self.path, "a", encoding="utf-8")
        self.handle.write(json.dumps(_entry(unit, self.rank)) + "\n")
        self.handle.flush()
        os.fsync(self.handle.fileno())

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


def save_unit(out_dir: Path, generator, sample, unit: Unit) -> dict[str, str]:
    """`anagram.generate.save_sample` under the unit's name (the sidecar last marks the unit complete)."""
    from .generate import save_sample

    return save_sample(out_dir, generator, sample, stem=unit.id)


# -- running -----------------------------------------------------------------------------------------------


def split_units(pending: list[Unit], rank: int, world: int) -> list[Unit]:
    """This process's share, deterministic: every `world`-th pending unit from `rank`."""
    return pending[rank::world]


def _generator_for(base, request):
    """`base` (a loaded `Generator`) retargeted to another request on the same model: no reload."""
    from .generate import model_defaults

    generator = copy.copy(base)
    generator.request = request
    steps, guidance = model_defaults(base.source)
    generator.steps = request.steps or steps
    generator.guidance = request.guidance_scale if request.guidance_scale is not None else guidance
    return generator


def _load_generator(request, device, cpu_offload: bool):
    from .generate import Generator

    generator = Generator(request, cpu_offload=False, device=None if cpu_offload else str(device))
    if cpu_offload:  # on this process's own GPU, not always the first one
        for pipe in filter(None, (generator.pipe, generator.upscaler)):
            pipe.enable_model_cpu_offload(device=device)
    return generator


def _batches(units: list[Unit], batch_size: int) -> Iterator[list[Unit]]:
    """Units grouped by model (each loaded once), then by job, in chunks of `batch_size`."""
    by_model: dict[tuple, dict[str, list[Unit]]] = {}
    for unit in units:
        by_model.setdefault(unit.job.model_key, {}).setdefault(unit.job.key, []).append(unit)
    for jobs in by_model.values():
        for job_units in jobs.values():
            for start in range(0, len(job_units), batch_size):
                yield job_units[start : start + batch_size]


def evaluation_hook(out_dir: Path, console) -> None:
    """Metrics over everything in `out_dir`, when `anagram.evaluate.evaluate_folder` exists.

    The units are complete whatever happens here: a judge that cannot run (e.g. no automatic judge for
    this model) is reported on one line, pointing to `anagram evaluate DIR`, and is not an error of the batch.
    """
    from rich.markup import escape

    try:
        module = importlib.import_module("anagram.evaluate")
    except ModuleNotFoundError as error:
        if error.name != "anagram.evaluate":
            raise
        module = None
    evaluate_folder = getattr(module, "evaluate_folder", None)
    if evaluate_folder is None:
        console.print("metrics: not computed (anagram.evaluate.evaluate_folder is not available in this version)",
                      soft_wrap=True)
        return
    try:
        result = evaluate_folder(out_dir)
    except Exception as error:  # noqa: BLE001 - metrics are an extra; the batch itself succeeded
        console.print(f"[yellow]metrics: not computed[/] ({type(error).__name__}: {escape(str(error))}); the units "
                      f"are complete, run `anagram evaluate {escape(str(out_dir))}` (see --help)", soft_wrap=True)
        return
    if isinstance(result, dict):
        parts = []
        for key, value in result.items():
            value = value.get("mean", value) if isinstance(value, dict) else value
            parts.append(f"{key} {value:.3f}" if isinstance(value, float) else f"{key} {value}")
        console.print(f"metrics: {escape(', '.join(parts))} (means; `anagram evaluate {escape(str(out_dir))}` for "
                      "the full table)", soft_wrap=True)
    elif result is not None:
        console.print(result)


def _wants_cpu(device: Optional[str]) -> bool:
    from accelerate.utils import parse_flag_from_env

    if device is not None:
        return device.split(":")[0] == "cpu"
    if parse_flag_from_env("ACCELERATE_USE_CPU"):
        return True
    import torch

    accelerator = getattr(torch, "accelerator", None)
    has_accelerator = accelerator.is_available() if accelerator is not None else torch.cuda.is_available()
    # torchrun on a machine without GPUs: accelerate's MULTI_CPU (gloo) needs cpu=True
    return not has_accelerator and int(os.environ.get("WORLD_SIZE", "1")) > 1


class _WriteError(Exception):
    """An output file or manifest line could not be written (the OSError is its __cause__)."""


class _Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's preemption, `kill`) handled like Ctrl-C."""


def _on_sigterm(signum, frame):
    raise _Terminated()


def batch_command(
    jobs: Path = typer.Argument(..., metavar="JOBS", help="Job file: CSV with a header row, or JSONL; one job a line."),
    out: Path = typer.Option(..., "--out", metavar="DIR", help="Output folder (also holds manifest.jsonl)."),
    model: str = typer.Option("digits", help="Model of the jobs that name none ('digits', a hub id or folder)."),
    batch_size: int = typer.Option(8, min=1, help="Samples of one job denoised together."),
    device: Optional[str] = typer.Option(None, help="Device (default: this process's, from accelerate)."),
    cpu_offload: bool = typer.Option(False, "--cpu-offload", help="Model CPU offload (accelerate)."),
    evaluate: bool = typer.Option(True, "--evaluate/--no-evaluate", help="Compute the metrics over DIR at the end."),
):
    """Generate every (job, seed) of a job file into --out; resumable and data parallel.

    Job file columns (CSV header / JSONL keys): prompts (separated by |), views (comma-separated
    specs), style, negative, seeds (0-9 or 1,5,7) or num_samples (+ seed), model, steps, guidance,
    size, method, dtype, revision, upscaler, upscaler_steps. Every line is checked before any model
    loads: if any line is bad, the run fails up front listing each as JOBS:LINE: message.

    Finished units are recorded in DIR/manifest.jsonl and files are written atomically, so running
    the same command again after an interruption resumes, skipping what is done. Under
    `torchrun --nproc_per_node N -m anagram.cli batch ...` (or `accelerate launch --multi_gpu`) the
    units are split between the processes, one per GPU (on CPU, gloo).
    """
    from .cli import console

    out_dir = Path(out)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous_sigterm = signal.signal(signal.SIGTERM, _on_sigterm) if in_main_thread else None
    try:
        code = _run(jobs, out_dir, model, batch_size, device, cpu_offload, evaluate)
    except KeyboardInterrupt:  # before or after the generation loop (which reports by itself)
        console.print("interrupted: finished units are kept; run the same command again to resume")
        code = 130
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous_sigterm)
    if code:
        raise typer.Exit(code=code)


def _run(jobs: Path, out_dir: Path, model: str, batch_size: int, device: Optional[str], cpu_offload: bool,
         evaluate: bool) -> int:
    """The batch in this process; returns the exit code (0 done, 1 failures, 2 bad job file, 130 interrupted)."""
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list, gather_object
    from rich.markup import escape
    from rich.progress import Progress

    from .cli import console, progress_bar, quiet_library_progress_bars

    state = PartialState(cpu=_wants_cpu(device), timeout=PROCESS_GROUP_TIMEOUT)
    rank, world, is_main = state.process_index, state.num_processes, state.is_main_process
    say = console.print if is_main else (lambda *a, **k: None)
    launched_by_accelerate_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true")
    if world == 1 and launched_by_accelerate_cpu and "MASTER_ADDR" in os.environ and "WORLD_SIZE" not in os.environ:
        say("note: `accelerate launch --cpu` started a single process; for several processes on CPU use `accelerate "
            "launch --multi_gpu --num_processes N` or `torchrun --nproc_per_node N` (gloo)", soft_wrap=True)

    try:
        plan = read_jobs(jobs, default_model=model)
    except JobFileError as error:
        count = len(error.problems)
        say(f"[bold red]error:[/] {escape(str(jobs))}: {count} bad line{'s' * (count != 1)}, nothing was run "
            "(fix them and run again):")
        for problem in error.problems:
            say(escape(problem), soft_wrap=True, highlight=False)
        return 2
    for note in plan.notes:
        say(f"note: {escape(str(jobs))}:{escape(note)}", soft_wrap=True, highlight=False)  # JOBS:LINE: note

    units_by_id = {u.id: u for u in plan.units}
    pending_ids: list[str] | None = None
    if is_main:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            removed = remove_stale_temporaries(out_dir)
            merge_manifest(out_dir, plan.units)
        except OSError as error:
            say(f"[bold red]error:[/] cannot prepare {escape(str(out_dir))}: {escape(str(error))}")
            pending_ids = []  # still broadcast, so the other processes do not wait forever
            removed = -1
        else:
            pending_ids = [u.id for u in plan.units if not unit_done(out_dir, u.files())]
            if removed:
                say(f"removed {removed} temporary file(s) left by an interrupted run")
            say(f"{len(plan.units)} units in {len(plan.jobs)} jobs: {len(plan.units) - len(pending_ids)} already done, "
                f"{len(pending_ids)} to generate" + (f" on {world} processes" if world > 1 else ""))
    [pending_ids, removed] = broadcast_object_list([pending_ids, removed if is_main else None])
    if removed == -1:
        return 1
    mine = split_units([units_by_id[i] for i in pending_ids], rank, world)

    manifest = RankManifest(out_dir, rank)
    failures: list[str] = []
    generated = 0
    stopped = 0  # the exit code when the run stops early
    try:
        quiet_library_progress_bars()
        with progress_bar() if is_main and mine else Progress(disable=True) as progress:
            label = f"units (process {rank} of {world})" if world > 1 else "units"
            task = progress.add_task(label, total=len(mine))
            loaded_key, base = None, None
            failed_jobs: set[str] = set()
            for batch in _batches(mine, batch_size):
                job = batch[0].job
                if job.key in failed_jobs:
                    continue
                try:
                    if job.model_key != loaded_key:
                        base = loaded_key = None
                        _free_memory()
                        with console.status(f"loading {job.request.model}") if is_main else nullcontext():
                            base = _load_generator(job.request, device or state.device, cpu_offload)
                        loaded_key = job.model_key
                    generator = _generator_for(base, job.request)
                    samples = generator([u.seed for u in batch])
                    for unit, sample in zip(batch, samples):
                        try:
                            save_unit(out_dir, generator, sample, unit)
                            manifest.append(unit)
                        except OSError as error:  # full disk, lost mount...: every later unit would fail too
                            raise _WriteError(error) from error
                        generated += 1
                        progress.advance(task)
                except (_WriteError, KeyboardInterrupt):
                    raise
                except Exception as error:  # noqa: BLE001 - one failing job must not stop the others
                    failed_jobs.add(job.key)
                    left = sum(1 for u in mine if u.job.key == job.key and not unit_done(out_dir, u.files()))
                    failures.append(f"{jobs}:{job.line}: {type(error).__name__}: {error} ({left} unit(s) not done)")
                    console.print(f"[bold red]error:[/] {escape(failures[-1])}", soft_wrap=True, highlight=False)
    except KeyboardInterrupt as signal_:
        stopped = 130
        reason = "terminated" if isinstance(signal_, _Terminated) else "interrupted"
        console.print(f"{reason}{f' (process {rank})' if world > 1 else ''}: {generated} unit(s) written now; "
                      "finished units are kept, run the same command again to resume", soft_wrap=True)
    except _WriteError as error:
        console.print(f"[bold red]error:[/] writing to {escape(str(out_dir))} failed: {escape(str(error.__cause__))}; "
                      "finished units are kept (nothing half-written): free space or fix the folder, then run the "
                      "same command again to resume", soft_wrap=True)
        stopped = 1
    finally:
        manifest.close()
    if stopped:
        if world == 1:  # alone, nobody else writes: index what is done now (the next run would do it anyway)
            try:
                merge_manifest(out_dir, plan.units)
            except OSError:
                pass
        return stopped

    reports = gather_object([{"rank": rank, "generated": generated, "failures": failures}])
    state.wait_for_everyone()
    all_failures = [f for report in reports for f in report["failures"]]
    if is_main:
        entries = merge_manifest(out_dir, plan.units)
        done = sum(1 for u in plan.units if u.id in entries)
        generated_total = sum(r["generated"] for r in reports)
        split = ", ".join(f"process {r['rank']}: {r['generated']}" for r in reports) if world > 1 else ""
        say(f"{generated_total} unit(s) generated{f' ({split})' if split else ''}; {done}/{len(plan.units)} units "
            f"done in {escape(str(out_dir))}")
        if all_failures:
            say(f"[bold red]{len(all_failures)} job(s) failed[/] (listed above); fix them and run the same command "
                "again to finish")
        if evaluate:
            evaluation_hook(out_dir, console)
    return 1 if all_failures else 0


def _free_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()

