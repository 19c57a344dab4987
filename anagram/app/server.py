"""Starting the app: the served folders, gradio's own file cache inside the output folder, the queue.

What a page can download is what gradio's file route serves: the ``allowed_paths`` of `launch`
plus gradio's upload/cache folder. Both are put inside the app's output folder (the cache as
``<out>/.gradio``, a dot-folder that the sample readers skip), so no file outside it (and outside
the ``--browse`` folders the person starting the app names) is ever served; the folder paths a
page sends (Browse, a chosen sample) are checked by `results.inside` before anything reads them.
The server binds 127.0.0.1 unless told otherwise, and makes a public share link only when asked.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from .models import ModelPool

CACHE_FOLDER = ".gradio"
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 7860
MAX_QUEUE = 64  # requests waiting at once; more are told to come back


def build_app(out_dir: str | Path = "outputs/app", models: Sequence[str] = ("digits",),
              browse: Sequence[str | Path] = (), *, device: str | None = None, dtype: str = "fp32",
              preload: bool = True, pool: ModelPool | None = None, translators: Sequence[str | Path] = ()):
    """``(blocks, config)``: the page over a pool of ``models`` (the first is the default, loaded now
    unless ``preload=False``), writing into ``out_dir``. The Translate tab offers the translators of
    the shipped models folder, of ``translators`` (folders, searched too) and of the served folders."""
    out = Path(out_dir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    roots = [Path(p).expanduser().resolve() for p in browse]
    for root in roots:
        if not root.is_dir():
            raise ValueError(f"no such folder to browse: {root}")
    offered = [Path(p).expanduser().resolve() for p in translators]
    for folder in offered:
        if not folder.is_dir():
            raise ValueError(f"no such translator folder: {folder}")
    # gradio reads its cache folder when components are made: set it before building the page.
    os.environ["GRADIO_TEMP_DIR"] = str(out / CACHE_FOLDER)
    os.environ["GRADIO_EXAMPLES_CACHE"] = str(out / CACHE_FOLDER / "examples")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

    from .translation import SHIPPED, TranslatorPool
    from .ui import AppConfig, build_blocks

    if pool is None:
        if device is None:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        pool = ModelPool(list(models), device=device, dtype=dtype)
    if preload:
        pool.get(pool.default)
    config = AppConfig(pool, out, roots, TranslatorPool([SHIPPED, *offered, out, *roots], device=pool.device))
    demo = build_blocks(config)
    demo.queue(max_size=MAX_QUEUE, default_concurrency_limit=1)
    return demo, config


def launch(demo, config, host: str = DEFAULT_HOST, port: int | None = DEFAULT_PORT, share: bool = False,
           block: bool = True, quiet: bool = False):
    """Serve the page; returns gradio's ``(app, local_url, share_url)`` when ``block=False``."""
    return demo.launch(server_name=host, server_port=port, share=share, allowed_paths=[str(r) for r in config.roots],
                       prevent_thread_lock=not block, quiet=quiet, show_error=True, footer_links=["gradio"],
                       inbrowser=False)


__all__ = ["CACHE_FOLDER", "DEFAULT_HOST", "DEFAULT_PORT", "build_app", "launch"]
