"""Animations of anagrams: watch the image turn from one view into the next (GIF and MP4).

    from anagram.outputs.animation import write_animation
    write_animation("outputs/a-red-fox_a-duck__identity-rotate_180__seed0.png")   # .gif + .mp4 beside it
    write_animation("outputs/")                                                  # every sample of a run

The timeline, at ``fps`` frames per second, is a tour of the views:

* a *hold* of ``H = max(1, round(hold_seconds * fps))`` frames on a view, captioned with its prompt;
* a *transition* of ``T = round(transition_seconds * fps)`` frames to the next view on the tour, eased
  in and out (smoothstep); the caption of the view being left fades out during the first half and
  the next one fades in during the second half.

The tour visits the views in order and, with ``boomerang=True`` (the default), travels back through
them to the first one, so that a looping GIF/MP4 has no jump: ``0, 1, ..., V-1, V-2, ..., 1`` and then
the loop restarts at view 0. That is ``2 (V - 1) (H + T)`` frames for ``V >= 2`` views (``H`` for a
single view). Without boomerang the tour is ``0, 1, ..., V-1`` and ends on the hold of the last view:
``V H + (V - 1) T`` frames. `frame_count` computes this.

Transitions go through the canonical image. The transition from view ``a`` to view ``b`` is view
``a``'s own animation (`View.make_frame`) run backwards, then view ``b``'s run forwards, each leg
eased and taking half of the transition's frames. A leg of the identity view does nothing and is
skipped, so the usual ``identity -> view`` transition is exactly ``view.make_frame(image, ease(s))``
and ``view -> identity`` is the same motion backwards. (Going through the canonical image works for
every view, third-party and factorized ones included, at the price of not taking shortcuts: from a
90-degree rotation to a 180-degree one the image turns back to upright, then half a turn.)

Small images are enlarged to ``size`` (the long side of the image box) with nearest-neighbour by an
integer factor, so that the 32-px digits stay crisp, then resized to the box exactly (Lanczos, a
small step; larger images are just resized with Lanczos). Hold frames are exactly `View.view_image`
of the image, enlarged. Views that commute with the enlargement (rotations, flips, patch moves:
checked numerically) are animated on the enlarged image, so that a tiny image turns smoothly; the
others (pixel-grid permutations, frequency components) are animated at the image's own resolution,
where they are defined, and the frames enlarged.

Layout of a frame: the scaled image occupies the top ``(0, 0, width, height)`` box of the frame;
the caption band (if any caption is given) lies below it. Frame sizes are even (video encoders
need that), so ``width``/``height`` are the scaled image size rounded up to even numbers.

In the list that `animation_frames` returns, the frames of one hold are the same `PIL.Image.Image`
object; the GIF writer merges them into a single GIF frame with the hold's duration, so a GIF holds
``2 (V - 1) (1 + T)`` frames with boomerang (``V + (V - 1) T`` without). GIF durations are
multiples of 10 ms; they are rounded so that the cumulative time stays exact. The MP4 (H.264,
yuv420p, through imageio's ffmpeg plugin and the ffmpeg binary that imageio-ffmpeg ships) has one
video frame per list entry.

The GIF is the light preview, the MP4 the full one. GIF's LZW coding cannot use what H.264 uses
(motion, the repeated rows of an enlarged pixel), so a GIF costs about 2-4 bits per pixel per frame
however blocky the picture: at the MP4's 384 px and 20 fps one 32-px sample made a 3.1 MB GIF. So
the GIF's frames are drawn at ``gif_size`` (default ``min(size, 192)``) and ``gif_fps`` (default
``min(fps, 10)``), the same timeline in seconds, and coded with one palette for the whole animation
when the frames are grey (`gif_palette`: 32 greys found by median cut over all frames), mapped
without dithering (dither noise defeats LZW and makes the still areas shimmer); colour frames keep
Pillow's dithered palette per frame. Frames that repeat are merged and each frame after the first
stores only the box where it differs from the previous one (Pillow's delta frames). A 32-px digits
sample with two views: about 0.33 MB (tests/test_animate.py holds it under 450 kB).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..views import View, parse_view
from .atomic import atomic_write_bytes, temporary_path
from .pictures import NEAREST_FROM, PictureError, caption_font, scale_image, to_pil, to_tensor, wrap_text
from .records import MissingRecordError, StoredSample, find_samples

FORMATS = ("gif", "mp4")
DEFAULT_FPS = 20
DEFAULT_HOLD = 1.0
DEFAULT_TRANSITION = 1.5
DEFAULT_SIZE = 384
DEFAULT_FONT_SIZE = 20
DEFAULT_GIF_SIZE = 192  # the GIF's long side at most (see the module docstring)
DEFAULT_GIF_FPS = 10  # the GIF's frame rate at most
GREY_GIF_COLORS = 32  # palette entries for an animation whose frames are all grey


class AnimationError(ValueError):
    """An animation cannot be made as asked (bad options, an image that is not one)."""


# -- the timeline --------------------------------------------------------------------------------------


def ease_in_out(s: float) -> float:
    """Smoothstep ``3 s^2 - 2 s^3`` on [0, 1]: starts and ends at rest."""
    s = min(1.0, max(0.0, float(s)))
    return s * s * (3 - 2 * s)


def hold_frames(fps: float, hold_seconds: float) -> int:
    """Frames of a hold: at least one, so that every view is shown exactly."""
    return max(1, round(hold_seconds * fps))


def transition_frames(fps: float, transition_seconds: float) -> int:
    """Frames strictly between two holds (0: a cut)."""
    return max(0, round(transition_seconds * fps))


def tour(num_views: int, boomerang: bool = True) -> list[int]:
    """The order the views are visited in: ``[0, 1, 2, 1]`` for 3 views with boomerang."""
    forward = list(range(num_views))
    if boomerang and num_views > 1:
        return forward + forward[-2:0:-1]
    return forward


def frame_count(num_views: int, *, fps: float = DEFAULT_FPS, hold_seconds: float = DEFAULT_HOLD,
                transition_seconds: float = DEFAULT_TRANSITION, boomerang: bool = True) -> int:
    """Number of frames `animation_frames` returns (and MP4 frames `write_animation` writes)."""
    stops = len(tour(num_views, boomerang))
    transitions = stops if boomerang and num_views > 1 else stops - 1
    return stops * hold_frames(fps, hold_seconds) + transitions * transition_frames(fps, transition_seconds)


def _is_identity(view: View) -> bool:
    return view.name == "identity"


def _leg(start: View, end: View, t: float) -> tuple[View, bool, float] | None:
    """The leg of the ``start -> end`` transition at ``t``: (view, backwards, fraction of the leg)."""
    legs = [(view, backwards) for view, backwards in ((start, True), (end, False)) if not _is_identity(view)]
    if not legs:
        return None
    if len(legs) == 1:
        return legs[0][0], legs[0][1], t
    if t < 0.5:
        return start, True, 2 * t
    return end, False, 2 * t - 1


def transition_frame(image: torch.Tensor, start: View, end: View, t: float,
                     ease: Callable[[float], float] = ease_in_out) -> torch.Tensor:
    """The frame a fraction ``t`` of the way from ``start`` to ``end`` (through the canonical image).

    ``image`` is ``(C, H, W)`` in [0, 1]. Legs: ``start`` backwards, then ``end`` forwards, each eased;
    identity legs are skipped. ``t = 0`` and ``t = 1`` give ``start``/``end``'s `View.view_image`.
    """
    leg = _leg(start, end, t)
    if leg is None:
        return image.clone()
    view, backwards, local = leg
    s = ease(local)
    return view.make_frame(image, 1 - s if backwards else s)


# -- pictures ---------------------------------------------------------------------------------------------


def _even(n: int) -> int:
    return n + (n % 2)


def scaled_size(width: int, height: int, size: int | None) -> tuple[int, int]:
    """The image box of a frame: the long side ``size`` (``None``: as is), both sides even."""
    if size is None:
        return _even(width), _even(height)
    if size < 2:
        raise AnimationError(f"size must be at least 2 pixels, got {size}")
    scale = size / max(width, height)
    return _even(max(1, round(width * scale))), _even(max(1, round(height * scale)))


def enlargement(width: int, height: int, box: tuple[int, int]) -> int:
    """The integer nearest-neighbour factor that brings an image towards ``box`` (1: none, under 2x)."""
    factor = int(min(box[0] / width, box[1] / height) + 1e-9)
    return factor if factor >= NEAREST_FROM else 1


def upscale(tensor: torch.Tensor, factor: int) -> torch.Tensor:
    """Nearest-neighbour enlargement of ``(..., H, W)`` by an integer factor (every pixel a block)."""
    if factor == 1:
        return tensor
    return tensor.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)


def commutes_with_enlargement(view: View, image: torch.Tensor, factor: int) -> bool:
    """Whether the view of the enlarged image is the enlarged view (rotations, flips, patch moves).

    Such views are animated on the enlarged image, so that a 32-pixel digit turns smoothly instead
    of in jagged steps; the others (pixel-grid permutations, frequency components) on the image
    itself, then enlarged.
    """
    height, width = image.shape[-2:]
    try:
        view.check(height * factor, width * factor)
        return bool(torch.allclose(view.view_image(upscale(image, factor)), upscale(view.view_image(image), factor),
                                   atol=1e-5))
    except Exception:  # noqa: BLE001 - a view that cannot act on the enlarged grid is drawn at its own size
        return False


@dataclass
class _Captioner:
    """Draws captions centred in a band of fixed height under the image."""

    font: Any
    width: int
    line_height: int
    band: int
    pad: int

    @classmethod
    def for_captions(cls, captions: Sequence[str] | None, width: int, font_size: int, font_path: str | None):
        font = caption_font(font_size, font_path)
        pad = max(4, font_size // 2)
        line_height = int(round(font_size * 1.25))
        texts = [c for c in (captions or []) if c]
        if not texts:
            return cls(font, width, line_height, 0, pad)
        lines = max(len(wrap_text(text, font, width - 2 * pad)) for text in texts)
        return cls(font, width, line_height, lines * line_height + 2 * pad, pad)

    def draw(self, canvas: Image.Image, top: int, text: str | None, alpha: float) -> None:
        if not text or self.band == 0 or alpha <= 0:
            return
        grey = int(round(255 * (1 - min(1.0, alpha))))
        draw = ImageDraw.Draw(canvas)
        for i, line in enumerate(wrap_text(text, self.font, self.width - 2 * self.pad)):
            x = (self.width - self.font.getlength(line)) / 2
            draw.text((x, top + self.pad + i * self.line_height), line, fill=(grey, grey, grey), font=self.font)


# -- frames -------------------------------------------------------------------------------------------------


def animation_frames(
    image: Image.Image | torch.Tensor | np.ndarray,
    views: Sequence[View | str | dict],
    captions: Sequence[str] | None = None,
    *,
    fps: float = DEFAULT_FPS,
    hold_seconds: float = DEFAULT_HOLD,
    transition_seconds: float = DEFAULT_TRANSITION,
    size: int | None = DEFAULT_SIZE,
    font_size: int = DEFAULT_FONT_SIZE,
    font_path: str | None = None,
    boomerang: bool = True,
    ease: Callable[[float], float] = ease_in_out,
) -> list[Image.Image]:
    """The frames of the animation of ``image`` under ``views`` (see the module docstring).

    ``image``: the canonical image (PIL, HWC array, or ``(C, H, W)`` tensor in [0, 1]). ``views``:
    `View` objects, names or configs, in the order to visit. ``captions``: one per view (usually the
    prompts), or ``None`` for no caption band. ``size``: long side of the image box in pixels
    (``None``: the image's own size). Consecutive frames of a hold are one shared image object.
    """
    if fps <= 0:
        raise AnimationError(f"fps must be positive, got {fps}")
    if hold_seconds < 0 or transition_seconds < 0:
        raise AnimationError("hold and transition lengths cannot be negative")
    views = [parse_view(v) for v in views]
    if not views:
        raise AnimationError("give at least one view to animate")
    if captions is not None and len(captions) != len(views):
        raise AnimationError(f"give one caption per view: {len(views)} views, {len(captions)} captions")
    tensor = to_tensor(image)
    _, height, width = tensor.shape
    for view in views:
        view.check(height, width)
    box = scaled_size(width, height, size)
    captioner = _Captioner.for_captions(captions, box[0], font_size, font_path)
    frame_size = (box[0], _even(box[1] + captioner.band))
    factor = enlargement(width, height, box)
    smooth = [factor > 1 and commutes_with_enlargement(view, tensor, factor) for view in views]
    big = upscale(tensor, factor) if any(smooth) else tensor

    def compose(frame: torch.Tensor, labels: Sequence[tuple[str | None, float]]) -> Image.Image:
        canvas = Image.new("RGB", frame_size, "white")
        canvas.paste(scale_image(to_pil(frame), box), (0, 0))
        for text, alpha in labels:
            captioner.draw(canvas, box[1], text, alpha)
        return canvas

    def caption(k: int) -> str | None:
        return captions[k] if captions is not None else None

    n_hold = hold_frames(fps, hold_seconds)
    n_transition = transition_frames(fps, transition_seconds)
    stops = tour(len(views), boomerang)
    holds: dict[int, Image.Image] = {}
    frames: list[Image.Image] = []
    for position, k in enumerate(stops):
        if k not in holds:
            holds[k] = compose(upscale(views[k].view_image(tensor), factor), [(caption(k), 1.0)])
        frames.extend([holds[k]] * n_hold)
        last = position == len(stops) - 1
        if last and not (boomerang and len(views) > 1):
            break
        nxt = stops[(position + 1) % len(stops)]
        for j in range(n_transition):
            t = (j + 1) / (n_transition + 1)
            leg = _leg(views[k], views[nxt], t)
            on_big = leg is not None and smooth[k if leg[0] is views[k] else nxt]
            source, scale = (big, 1) if on_big else (tensor, factor)
            frame = upscale(transition_frame(source, views[k], views[nxt], t, ease), scale)
            labels = [(caption(k), ease(1 - 2 * t)), (caption(nxt), ease(2 * t - 1))]
            frames.append(compose(frame, labels))
    return frames


# -- files ---------------------------------------------------------------------------------------------------


def _runs(frames: Sequence[Image.Image]) -> list[list[Any]]:
    """Runs of the same image object: ``[[frame, count], ...]``."""
    runs: list[list[Any]] = []
    for frame in frames:
        if runs and runs[-1][0] is frame:
            runs[-1][1] += 1
        else:
            runs.append([frame, 1])
    return runs


def is_grey(frames: Sequence[Image.Image]) -> bool:
    """Whether every frame is grey (red = green = blue everywhere), as a 1-channel model's are."""
    for frame in frames:
        red, green, blue = frame.convert("RGB").split()
        if red.tobytes() != green.tobytes() or red.tobytes() != blue.tobytes():
            return False
    return True


def gif_palette(frames: Sequence[Image.Image], colors: int = GREY_GIF_COLORS) -> Image.Image:
    """One palette for the whole animation: median cut over all the (distinct) frames at once, so
    that a colour keeps its index from frame to frame (no palette flicker; Pillow's delta frames
    find the still areas)."""
    if not 2 <= colors <= 256:
        raise AnimationError(f"a GIF palette holds 2 to 256 colours, got {colors}")
    distinct = [frame for frame, _ in _runs(frames)]
    width, height = distinct[0].size
    mosaic = Image.new("RGB", (width, height * len(distinct)))
    for i, frame in enumerate(distinct):
        mosaic.paste(frame.convert("RGB"), (0, i * height))
    return mosaic.quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)


def gif_bytes(frames: Sequence[Image.Image], fps: float, colors: int | None = None) -> bytes:
    """A looping GIF: runs of the same image object become one frame with the run's duration.

    Grey frames (a 1-channel model's) share one palette of ``colors`` greys (default 32, found by
    `gif_palette`), mapped without dithering; colour frames get Pillow's own palette per frame
    (dithered: a photograph needs more than one palette's 256 colours over a whole animation), or
    one shared palette of ``colors`` entries when ``colors`` is given.
    """
    runs = _runs(frames)
    durations, elapsed = [], 0
    for _, count in runs:
        start = round(elapsed * 100 / fps)
        elapsed += count
        durations.append(max(1, round(elapsed * 100 / fps) - start) * 10)  # GIF counts centiseconds
    distinct = [frame for frame, _ in runs]
    if colors is not None or is_grey(distinct):
        palette = gif_palette(distinct, colors or GREY_GIF_COLORS)
        distinct = [frame.convert("RGB").quantize(palette=palette, dither=Image.Dither.NONE) for frame in distinct]
    buffer = io.BytesIO()
    first, *rest = distinct
    first.save(buffer, format="GIF", save_all=True, append_images=rest, duration=durations, loop=0,
               disposal=1, optimize=False)
    return buffer.getvalue()


def write_gif(path: str | os.PathLike, frames: Sequence[Image.Image], fps: float, colors: int | None = None) -> Path:
    return atomic_write_bytes(path, gif_bytes(frames, fps, colors))


def write_mp4(path: str | os.PathLike, frames: Sequence[Image.Image], fps: float, quality: float = 8) -> Path:
    """H.264 MP4 (yuv420p, plays everywhere), written to a temporary file and renamed into place."""
    import imageio.v2 as imageio

    with temporary_path(path, suffix=".tmp.mp4") as tmp:  # ffmpeg picks the container from the suffix
        writer = imageio.get_writer(tmp, format="FFMPEG", mode="I", fps=fps, codec="libx264", quality=quality,
                                    pixelformat="yuv420p", macro_block_size=2, ffmpeg_log_level="error",
                                    output_params=["-movflags", "+faststart"])
        try:
            for frame in frames:
                writer.append_data(np.asarray(frame.convert("RGB")))
        finally:
            writer.close()
    return Path(path)


WRITERS = {"gif": write_gif, "mp4": write_mp4}  # the formats; `write_animation` calls each with its frames


def parse_formats(formats: str | Sequence[str]) -> tuple[str, ...]:
    """``"gif,mp4"`` or ``["gif"]`` -> validated, de-duplicated lower-case formats."""
    items = formats.split(",") if isinstance(formats, str) else list(formats)
    chosen: list[str] = []
    for item in (str(i).strip().lower().lstrip(".") for i in items):
        if not item:
            continue
        if item not in WRITERS:
            raise AnimationError(f"unknown animation format {item!r}; choose from {', '.join(FORMATS)}")
        if item not in chosen:
            chosen.append(item)
    if not chosen:
        raise AnimationError(f"give at least one animation format ({', '.join(FORMATS)})")
    return tuple(chosen)


# -- the whole thing ----------------------------------------------------------------------------------------------


def gif_settings(size: int | None = DEFAULT_SIZE, fps: float = DEFAULT_FPS, gif_size: int | None = None,
                 gif_fps: float | None = None) -> tuple[int | None, float]:
    """The GIF's long side and frame rate: as given, else ``min(size, 192)`` and ``min(fps, 10)``."""
    if gif_size is None:
        gif_size = DEFAULT_GIF_SIZE if size is None else min(size, DEFAULT_GIF_SIZE)
    if gif_fps is None:
        gif_fps = min(fps, DEFAULT_GIF_FPS)
    if gif_fps <= 0:
        raise AnimationError(f"gif_fps must be positive, got {gif_fps}")
    return gif_size, gif_fps


def write_animation(
    path_or_image: str | os.PathLike | Image.Image | torch.Tensor | np.ndarray,
    out: str | os.PathLike | None = None,
    formats: str | Sequence[str] = FORMATS,
    *,
    views: Sequence[View | str | dict] | None = None,
    captions: Sequence[str] | None = None,
    show_captions: bool = True,
    on_written: Callable[[Path], None] | None = None,
    gif_size: int | None = None,
    gif_fps: float | None = None,
    gif_colors: int | None = None,
    **options: Any,
) -> list[Path]:
    """Write GIF/MP4 animations; returns the files written.

    ``path_or_image``: an output image (its JSON record beside it), a JSON record, or an output
    folder (every sample): the views and prompts come from the record(s) and the files go to
    ``out`` (a folder; default: the input's folder) as ``<stem>.gif``/``<stem>.mp4``. Or an
    in-memory image with ``views`` (and optionally ``captions``): then ``out`` is required and is
    the file name without extension (or with a ``.gif``/``.mp4`` one, which is replaced).
    ``show_captions=False`` leaves the prompts off. ``options`` go to `animation_frames` (``fps``,
    ``hold_seconds``, ``transition_seconds``, ``size``, ``font_size``, ``font_path``, ``boomerang``);
    the GIF is drawn at ``gif_size``/``gif_fps`` (`gif_settings`) with ``gif_colors`` palette
    entries (`gif_palette`), the MP4 at ``size``/``fps``.
    """
    formats = parse_formats(formats)
    fps = options.get("fps", DEFAULT_FPS)
    gif_size, gif_fps = gif_settings(options.get("size", DEFAULT_SIZE), fps, gif_size, gif_fps)
    gif_options = {**options, "size": gif_size, "fps": gif_fps}
    jobs: list[tuple[Any, list, Sequence[str] | None, Path]] = []
    if isinstance(path_or_image, (str, os.PathLike)):
        if views is not None:
            raise AnimationError("views come from the record when animating a file; pass an image to set them")
        path = Path(path_or_image)
        folder = Path(out) if out is not None else (path if path.is_dir() else path.parent)
        for sample in find_samples(path):
            prompts = sample.prompts() if captions is None else list(captions)
            jobs.append((sample, sample.views(), prompts, folder / sample.stem))
    else:
        if views is None:
            raise AnimationError("give the views to animate an image (or animate a generated file)")
        if out is None:
            raise AnimationError("give `out`, the path of the animation files (without extension)")
        base = Path(out)
        if base.suffix.lower().lstrip(".") in FORMATS:
            base = base.with_suffix("")
        jobs.append((path_or_image, list(views), captions, base))

    written: list[Path] = []
    for source, job_views, job_captions, base in jobs:
        image = source.load_image() if isinstance(source, StoredSample) else source
        shown = job_captions if show_captions else None
        for fmt in formats:
            target = base.parent / f"{base.name}.{fmt}"
            if fmt == "gif":
                write_gif(target, animation_frames(image, job_views, shown, **gif_options), gif_fps, gif_colors)
            else:
                write_mp4(target, animation_frames(image, job_views, shown, **options), fps)
            written.append(target)
            if on_written is not None:
                on_written(target)
    return written


__all__ = [
    "AnimationError", "MissingRecordError", "animation_frames", "ease_in_out", "find_samples",
    "frame_count", "gif_bytes", "gif_palette", "gif_settings", "hold_frames", "is_grey", "parse_formats",
    "scaled_size", "to_pil", "tour", "transition_frame",
    "transition_frames", "write_animation", "write_gif", "write_mp4",
]
