"""`anagram app`: the web app (gradio) on this machine, on the built-in model unless told otherwise.

    anagram app                                   # http://127.0.0.1:7860
    anagram app --model stable-diffusion-v1-5/stable-diffusion-v1-5 --port 8000 --out outputs/app
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .terminal import console, fail


def app_command(
    model: List[str] = typer.Option(["digits"], "--model", help="Model to serve ('digits', a hub id or a folder); "
                                    "repeat to serve several (the first is the default)."),
    out: Path = typer.Option(Path("outputs/app"), "--out", help="Output folder: every result is written here "
                             "as `anagram generate` writes it."),
    browse: List[Path] = typer.Option([], "--browse", help="Another folder the Browse tab may open (repeatable)."),
    translator: List[Path] = typer.Option([], "--translator", help="A translator (run or model folder of `anagram "
                                          "translate train`, or a folder of them) the Translate tab offers (repeatable)."),
    host: str = typer.Option("127.0.0.1", help="Address to bind (127.0.0.1: this machine only)."),
    port: int = typer.Option(7860, help="Port."),
    share: bool = typer.Option(False, "--share", help="Also make a public gradio share link (off unless asked)."),
    device: Optional[str] = typer.Option(None, help="Device, e.g. cuda (default: cuda if available, else cpu)."),
    dtype: str = typer.Option("fp32", help="fp32, fp16 or bf16."),
):
    """Start the web app: generate anagrams, browse output folders, make print sheets, translate images."""
    try:
        from ..app.server import build_app, launch
    except ImportError as error:
        fail(f"the web app needs gradio ({error}): pip install 'anagram[app]'")
    from ..pipelines.loading import ModelLoadError
    from .terminal import quiet_library_progress_bars

    quiet_library_progress_bars()
    try:
        with console.status(f"loading {model[0]}"):
            demo, config = build_app(out, model, browse, device=device, dtype=dtype, translators=translator)
    except (ModelLoadError, ValueError) as error:
        fail(str(error))
    console.print(f"serving {', '.join(model)}; results go to {config.out_dir}")
    launch(demo, config, host=host, port=port, share=share)
