"""`anagram batch`: the terminal face of the batch engine (`anagram.runs.batch`).

    anagram batch jobs.csv --out runs/eval
    torchrun --nproc_per_node 4 -m anagram.cli batch jobs.csv --out runs/eval        # 4 GPUs
    accelerate launch --multi_gpu --num_processes 4 -m anagram.cli batch jobs.csv --out runs/eval

The engine reports events; this module draws them (a progress bar, a spinner while a model loads,
notes and errors) and turns SIGTERM into a clean stop, like Ctrl-C.
"""

from __future__ import annotations

import signal
import threading
from contextlib import ExitStack
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from .terminal import console, progress_bar, quiet_library_progress_bars


class _TerminalReport:
    """Draws `BatchEvent`s: notes and errors as lines, the units as a progress bar."""

    def __init__(self, stack: ExitStack):
        self.stack, self.progress, self.task, self.status = stack, None, None, None

    def __call__(self, event) -> None:
        kind, text = event.kind, escape(event.message)
        if kind == "note":
            self._print(text)
        elif kind == "error":
            self._print(f"[bold red]error:[/] {text}")
        elif kind == "bad_jobs":
            count = len(event.problems)
            self._print(f"[bold red]error:[/] {text}: {count} bad line{'s' * (count != 1)}, nothing was run "
                        "(fix them and run again):")
            for problem in event.problems:
                self._print(escape(problem))
        elif kind == "units":
            self.progress = self.stack.enter_context(progress_bar())
            self.task = self.progress.add_task(event.label, total=event.total)
        elif kind == "unit" and self.progress is not None:
            self.progress.advance(self.task)
        elif kind == "loading":
            self.status = console.status(f"loading {text}")
            self.status.start()
        elif kind == "loaded" and self.status is not None:
            self.status.stop()
            self.status = None

    def _print(self, markup: str) -> None:
        target = self.progress.console if self.progress is not None else console
        target.print(markup, soft_wrap=True, highlight=False)


def metrics_line(metrics, out_dir: Path) -> str:
    """One line of summary means (the full table is `anagram evaluate DIR`)."""
    if not isinstance(metrics, dict):
        return str(metrics)
    parts = []
    for key, value in metrics.items():
        value = value.get("mean", value) if isinstance(value, dict) else value
        if isinstance(value, list):  # the samples the judge skipped: how many
            if value:
                parts.append(f"{key} {len(value)}")
            continue
        parts.append(f"{key} {value:.3f}" if isinstance(value, float) else f"{key} {value}")
    return f"metrics: {', '.join(parts)} (means; `anagram evaluate {out_dir}` for the full table)"


def _on_sigterm(signum, frame):
    from ..runs.batch import Terminated

    raise Terminated()


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
    from .. import evaluation
    from ..runs.batch import run_batch

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous_sigterm = signal.signal(signal.SIGTERM, _on_sigterm) if in_main_thread else None
    try:
        quiet_library_progress_bars()
        with ExitStack() as stack:
            report = _TerminalReport(stack)
            result = run_batch(jobs, out, model=model, batch_size=batch_size, device=device, cpu_offload=cpu_offload,
                               evaluate=(lambda folder: evaluation.evaluate_folder(folder)) if evaluate else None,
                               report=report)
        if result.metrics is not None:
            console.print(escape(metrics_line(result.metrics, out)), soft_wrap=True)
        elif result.metrics_error is not None:
            console.print(f"[yellow]metrics: not computed[/] ({escape(result.metrics_error)}); the units are "
                          f"complete, run `anagram evaluate {escape(str(out))}` (see --help)", soft_wrap=True)
        code = result.exit_code
    except KeyboardInterrupt:  # before or after the generation loop (which reports by itself)
        console.print("interrupted: finished units are kept; run the same command again to resume")
        code = 130
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous_sigterm)
    if code:
        raise typer.Exit(code=code)
