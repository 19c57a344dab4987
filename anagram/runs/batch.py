"""The batch engine: every (job, seed) of a job file, resumable after any interruption, data parallel.

    result = run_batch("jobs.csv", "runs/eval", report=print_event)     # `anagram batch` is a face over this

It prints nothing: what happens goes to the ``report`` callback as `BatchEvent` values, and the run
returns a `BatchResult` (with the exit code the command should give).

**Files and resume.** A unit is done when its three files exist (`anagram.outputs.records`, the
JSON record written last, each file atomically), so the same call resumes an interrupted run
(Ctrl-C, SIGTERM, SIGKILL, full disk) and redoes nothing; temporary files a killed process left
behind are removed when the next run starts; `anagram.runs.manifest` keeps the index.

**Data parallel.** Under ``torchrun``/``accelerate launch`` the processes share the work through
accelerate's `PartialState`: the main process lists the pending units, broadcasts them, and process
R takes ``pending[R::world]`` (in job-file order), on its own device (``state.device``). On CPU,
``torchrun --nproc_per_node 2 -m anagram.cli batch ...`` runs two processes over gloo
(``accelerate launch --cpu`` starts a single process unless given an MPI hostfile). With several
machines, DIR must be on a filesystem they share. Only the main process reports what is shared
(the plan, the totals, notes); every process reports its own errors.

**Metrics.** ``evaluate(DIR)``, when given, runs on the main process at the end; a judge that cannot
run is reported in the result, not an error of the batch (the units are complete).
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from ..outputs.atomic import remove_stale_temporaries
from ..outputs.records import is_complete
from .jobs import JobFileError, Job, Plan, Unit, read_jobs
from .manifest import RankManifest, merge_manifest
from .model import LoadedModel, Sample

# Ranks meet only at the start and the end; a long unbalanced run must not hit the default 30 min timeout.
PROCESS_GROUP_TIMEOUT = timedelta(hours=24)
EXIT_DONE, EXIT_FAILURES, EXIT_BAD_JOBS, EXIT_INTERRUPTED = 0, 1, 2, 130


@dataclass
class BatchEvent:
    """Something the batch wants its user to know.

    ``kind``: ``"note"`` (information), ``"error"`` (a problem; the run goes on unless it says so),
    ``"bad_jobs"`` (the job file is refused: ``problems`` lists each bad line), ``"units"`` (this
    process starts ``total`` units; ``label`` names it), ``"loading"`` / ``"loaded"`` (a model
    load starts / ends; ``message`` names it), ``"unit"`` (one unit finished).
    """

    kind: str
    message: str = ""
    total: int = 0
    label: str = ""
    problems: list[str] = field(default_factory=list)


@dataclass
class BatchResult:
    """What a run did. ``exit_code``: 0 done, 1 failures, 2 bad job file, 130 interrupted."""

    exit_code: int
    units: int = 0
    done: int = 0
    generated: int = 0
    failures: list[str] = field(default_factory=list)
    metrics: Any = None
    metrics_error: str | None = None


Report = Callable[[BatchEvent], None]


def _ignore(event: BatchEvent) -> None:
    pass


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's preemption, `kill`), raised by the caller's signal handler: handled like Ctrl-C."""


class _WriteError(Exception):
    """An output file or manifest line could not be written (the OSError is its __cause__)."""


# -- the pieces ----------------------------------------------------------------------------------------------


def split_units(pending: list[Unit], rank: int, world: int) -> list[Unit]:
    """This process's share, deterministic: every `world`-th pending unit from `rank`."""
    return pending[rank::world]


def unit_batches(units: list[Unit], batch_size: int) -> Iterator[list[Unit]]:
    """Units grouped by model (each loaded once), then by job, in chunks of `batch_size`."""
    by_model: dict[tuple, dict[str, list[Unit]]] = {}
    for unit in units:
        by_model.setdefault(unit.job.model_key, {}).setdefault(unit.job.key, []).append(unit)
    for jobs in by_model.values():
        for job_units in jobs.values():
            for start in range(0, len(job_units), batch_size):
                yield job_units[start : start + batch_size]


def generate_units(model: LoadedModel, job: Job, units: list[Unit]) -> list[Sample]:
    """The samples of some units of one job (denoised together)."""
    return model.generate(job.request, [u.seed for u in units])


def save_unit(out_dir: Path, model: LoadedModel, job: Job, sample: Sample, unit: Unit) -> dict[str, str]:
    """The sample's files under the unit's name (the record last marks the unit complete)."""
    return model.save_sample(out_dir, job.request, sample, stem=unit.id)


def wants_cpu(device: Optional[str]) -> bool:
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


def free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# -- the run -------------------------------------------------------------------------------------------------


def run_batch(jobs: str | Path, out_dir: str | Path, *, model: str = "digits", batch_size: int = 8,
              device: Optional[str] = None, cpu_offload: bool = False,
              evaluate: Callable[[Path], Any] | None = None, report: Report = _ignore) -> BatchResult:
    """Generate every unit of the job file ``jobs`` into ``out_dir`` (this process's share of them).

    ``model`` is the model of jobs that name none. A KeyboardInterrupt (Ctrl-C; the CLI turns SIGTERM
    into one) stops the run cleanly: finished units are kept and the result says 130.
    """
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list

    out_dir = Path(out_dir)
    state = PartialState(cpu=wants_cpu(device), timeout=PROCESS_GROUP_TIMEOUT)
    rank, world, is_main = state.process_index, state.num_processes, state.is_main_process
    shared: Report = report if is_main else _ignore  # what every process would say alike
    launched_by_accelerate_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true")
    if world == 1 and launched_by_accelerate_cpu and "MASTER_ADDR" in os.environ and "WORLD_SIZE" not in os.environ:
        shared(BatchEvent("note", "`accelerate launch --cpu` started a single process; for several processes on "
                                  "CPU use `accelerate launch --multi_gpu --num_processes N` or `torchrun "
                                  "--nproc_per_node N` (gloo)"))
    try:
        plan = read_jobs(jobs, default_model=model)
    except JobFileError as error:
        shared(BatchEvent("bad_jobs", str(jobs), problems=error.problems))
        return BatchResult(EXIT_BAD_JOBS)
    for note in plan.notes:
        shared(BatchEvent("note", f"{jobs}:{note}"))  # JOBS:LINE: note

    pending_ids = _prepare_folder(out_dir, plan, world, shared) if is_main else None
    [pending_ids] = broadcast_object_list([pending_ids])
    if pending_ids is None:
        return BatchResult(EXIT_FAILURES, units=len(plan.units))
    units_by_id = {u.id: u for u in plan.units}
    mine = split_units([units_by_id[i] for i in pending_ids], rank, world)

    result = BatchResult(EXIT_DONE, units=len(plan.units))
    stopped = _generate_share(jobs, out_dir, mine, batch_size, device or state.device, cpu_offload, rank, world,
                              is_main, report, result)
    if stopped:
        if world == 1:  # alone, nobody else writes: index what is done now (the next run would do it anyway)
            try:
                merge_manifest(out_dir, plan.units)
            except OSError:
                pass
        result.exit_code = stopped
        return result
    return _finish(out_dir, plan, state, result, evaluate, shared)


def _prepare_folder(out_dir: Path, plan: Plan, world: int, report: Report) -> list[str] | None:
    """Main process: clean up after an interrupted run, repair the manifest, list the pending units."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        removed = remove_stale_temporaries(out_dir)
        merge_manifest(out_dir, plan.units)
    except OSError as error:
        report(BatchEvent("error", f"cannot prepare {out_dir}: {error}"))
        return None  # still broadcast, so the other processes do not wait forever
    pending = [u.id for u in plan.units if not is_complete(out_dir, u.files())]
    if removed:
        report(BatchEvent("note", f"removed {removed} temporary file(s) left by an interrupted run"))
    report(BatchEvent("note", f"{len(plan.units)} units in {len(plan.jobs)} jobs: {len(plan.units) - len(pending)} "
                              f"already done, {len(pending)} to generate" + (f" on {world} processes" if world > 1 else "")))
    return pending


def _generate_share(jobs, out_dir: Path, mine: list[Unit], batch_size: int, device, cpu_offload: bool, rank: int,
                    world: int, is_main: bool, report: Report, result: BatchResult) -> int:
    """Generate this process's units; returns 0, or the exit code when the run had to stop early."""
    manifest = RankManifest(out_dir, rank)
    progress: Report = report if is_main else _ignore
    try:
        if mine:
            progress(BatchEvent("units", total=len(mine),
                                label=f"units (process {rank} of {world})" if world > 1 else "units"))
        loaded_key, loaded = None, None
        failed_jobs: set[str] = set()
        warned_jobs: set[str] = set()
        for batch in unit_batches(mine, batch_size):
            job = batch[0].job
            if job.key in failed_jobs:
                continue
            try:
                if job.model_key != loaded_key:
                    loaded = loaded_key = None
                    free_memory()
                    progress(BatchEvent("loading", job.request.model))
                    loaded = LoadedModel.for_request(job.request, device=device, cpu_offload=cpu_offload)
                    progress(BatchEvent("loaded", job.request.model))
                    loaded_key = job.model_key
                if job.key not in warned_jobs:  # words the model cannot read, a size it was not trained at...
                    warned_jobs.add(job.key)
                    for warning in loaded.warnings(job.request):
                        progress(BatchEvent("note", f"{jobs}:{job.line}: warning: {warning}"))
                    for note in filter(None, [loaded.check_scorer(job.request)]):  # offline hub CLIP: fails the job here
                        progress(BatchEvent("note", f"{jobs}:{job.line}: {note}"))
                for unit, sample in zip(batch, generate_units(loaded, job, batch)):
                    try:
                        save_unit(out_dir, loaded, job, sample, unit)
                        manifest.append(unit)
                    except OSError as error:  # full disk, lost mount...: every later unit would fail too
                        raise _WriteError(error) from error
                    result.generated += 1
                    progress(BatchEvent("unit"))
            except (_WriteError, KeyboardInterrupt):
                raise
            except Exception as error:  # noqa: BLE001 - one failing job must not stop the others
                failed_jobs.add(job.key)
                left = sum(1 for u in mine if u.job.key == job.key and not is_complete(out_dir, u.files()))
                result.failures.append(f"{jobs}:{job.line}: {type(error).__name__}: {error} ({left} unit(s) not done)")
                report(BatchEvent("error", result.failures[-1]))
    except KeyboardInterrupt as interrupt:
        reason = "terminated" if isinstance(interrupt, Terminated) else "interrupted"
        report(BatchEvent("note", f"{reason}{f' (process {rank})' if world > 1 else ''}: {result.generated} unit(s) "
                                  "written now; finished units are kept, run the same command again to resume"))
        return EXIT_INTERRUPTED
    except _WriteError as error:
        report(BatchEvent("error", f"writing to {out_dir} failed: {error.__cause__}; finished units are kept "
                                   "(nothing half-written): free space or fix the folder, then run the same "
                                   "command again to resume"))
        return EXIT_FAILURES
    finally:
        manifest.close()
    return 0


def _finish(out_dir: Path, plan: Plan, state, result: BatchResult, evaluate, report: Report) -> BatchResult:
    """Gather the processes' reports, merge the manifest, run the metrics (main process)."""
    from accelerate.utils import gather_object

    reports = gather_object([{"rank": state.process_index, "generated": result.generated,
                              "failures": result.failures}])
    state.wait_for_everyone()
    result.failures = [f for r in reports for f in r["failures"]]
    result.exit_code = EXIT_FAILURES if result.failures else EXIT_DONE
    if not state.is_main_process:
        return result
    entries = merge_manifest(out_dir, plan.units)
    result.done = sum(1 for u in plan.units if u.id in entries)
    result.generated = sum(r["generated"] for r in reports)
    split = ", ".join(f"process {r['rank']}: {r['generated']}" for r in reports) if len(reports) > 1 else ""
    report(BatchEvent("note", f"{result.generated} unit(s) generated{f' ({split})' if split else ''}; "
                              f"{result.done}/{len(plan.units)} units done in {out_dir}"))
    if result.failures:
        report(BatchEvent("error", f"{len(result.failures)} job(s) failed (listed above); fix them and run the same "
                                   "command again to finish"))
    if evaluate is not None:
        try:
            result.metrics = evaluate(out_dir)
        except Exception as error:  # noqa: BLE001 - metrics are an extra; the batch itself succeeded
            result.metrics_error = f"{type(error).__name__}: {error}"
    return result


__all__ = ["BatchEvent", "BatchResult", "Terminated", "run_batch", "split_units", "unit_batches"]
