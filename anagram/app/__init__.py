"""The web app (gradio): make anagrams in a browser, browse output folders, print sheets, translate images.

    anagram app                         # http://127.0.0.1:7860 on the built-in digits model
    anagram app --model stable-diffusion-v1-5/stable-diffusion-v1-5 --out outputs/app

A face over the engines like `anagram.cli`: `generation` (the Generate tab's form -> a `Request` ->
samples written as `anagram generate` writes them), `browse` (a folder's samples and scores),
`translation` (the Translate tab: translators found in the served folders, loaded once, images and
samples translated side by side), `results` (the output folder and the files offered for download),
`models` (one loaded pipeline per model, shared and taken in turns), `checks` (mistakes said
plainly), `thumbnails` (what each view does), `ui` (the page) and `server` (serving it). Importing this package is cheap; gradio is
imported by `ui` and `server.build_app`.
"""

from __future__ import annotations

from typing import Any


def build_app(*args: Any, **kwargs: Any):
    """`anagram.app.server.build_app`."""
    from .server import build_app as build

    return build(*args, **kwargs)


def launch(*args: Any, **kwargs: Any):
    """`anagram.app.server.launch`."""
    from .server import launch as serve

    return serve(*args, **kwargs)


__all__ = ["build_app", "launch"]
