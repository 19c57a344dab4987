"""Animations (GIF/MP4 of the transition between views) and contact sheets, on a real output folder."""

import csv
import json
import shutil

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from anagram import AnagramPipeline
from anagram.outputs.animation import (
    MissingRecordError,
    animation_frames,
    find_samples,
    frame_count,
    to_pil,
    tour,
    transition_frame,
    write_animation,
)
from anagram.cli import app
from anagram.outputs.contact_sheet import contact_sheets, read_metrics, write_contact_sheet
from anagram.views import get_view
from tiny_models import sd_components

runner = CliRunner()
FAST = dict(fps=10, hold_seconds=0.3, transition_seconds=0.4)  # 3 hold frames, 4 transition frames


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A real output folder: 2 samples of `anagram generate` on a tiny Stable Diffusion model, 32x32."""
    model = tmp_path_factory.mktemp("tiny-sd")
    AnagramPipeline(**sd_components()).save_pretrained(model)
    out = tmp_path_factory.mktemp("run")
    args = ["generate", "a red fox", "a duck", "--views", "identity,rotate_180", "--model", str(model),
            "--steps", "2", "--size", "32", "--seed", "3", "-n", "2", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return out


def image_area(frame: Image.Image, size: int) -> np.ndarray:
    return np.asarray(frame.convert("RGB"))[:size, :size].astype(int)


def enlarged(tensor: torch.Tensor, size: int) -> np.ndarray:
    return np.asarray(to_pil(tensor).resize((size, size), Image.NEAREST)).astype(int)


@pytest.fixture()
def picture():
    torch.manual_seed(0)
    return torch.rand(3, 16, 16)


def test_frames_follow_the_hold_transition_structure(picture):
    views = [get_view("identity"), get_view("rotate_180")]
    frames = animation_frames(picture, views, ["a red fox", "a duck"], size=64, **FAST)
    assert len(frames) == frame_count(2, **FAST) == 2 * (3 + 4)
    assert {f.size for f in frames} == {frames[0].size}
    assert frames[0].width == 64 and frames[0].height > 64  # caption band under the image
    # hold 1: view 1 captioned; transition; hold 2: view 2 exactly; transition back (boomerang)
    assert frames[0] is frames[1] is frames[2]
    assert np.array_equal(image_area(frames[0], 64), enlarged(picture, 64))
    assert np.array_equal(image_area(frames[7], 64), enlarged(views[1].view_image(picture), 64))
    assert frames[7] is frames[9] and frames[3] is not frames[4]
    # the caption band holds text on holds (prompt 1 and prompt 2 differ)
    band = lambda f: np.asarray(f.convert("L"))[64:]
    assert band(frames[0]).min() < 128 and not np.array_equal(band(frames[0]), band(frames[7]))
    # half-way through, the rotation is eased: the middle frame is rotated by 90 degrees
    middle = transition_frame(picture, views[0], views[1], 0.5)
    assert torch.allclose(middle, views[1].make_frame(picture, 0.5))
    # without boomerang the animation ends on the last view
    frames = animation_frames(picture, views, None, size=64, boomerang=False, **FAST)
    assert len(frames) == frame_count(2, boomerang=False, **FAST) == 3 + 4 + 3
    assert frames[0].size == (64, 64)  # no captions: no band
    assert np.array_equal(np.asarray(frames[-1]).astype(int), enlarged(views[1].view_image(picture), 64))


def test_three_views_are_visited_in_order_and_back(picture):
    views = [get_view("identity"), get_view("rotate_cw"), get_view("flip")]
    frames = animation_frames(picture, views, None, size=32, **FAST)
    assert tour(3) == [0, 1, 2, 1]
    assert len(frames) == frame_count(3, **FAST) == 4 * (3 + 4)
    for stop, k in enumerate(tour(3)):
        hold = np.asarray(frames[stop * 7]).astype(int)
        assert np.array_equal(hold, enlarged(views[k].view_image(picture), 32)), (stop, k)
    # a transition between two non-identity views passes through the canonical image
    assert torch.allclose(transition_frame(picture, views[1], views[2], 0.5), picture)


def test_gif_and_mp4_files(run_dir, tmp_path):
    sample = find_samples(run_dir)[0]
    written = write_animation(sample.image_path, tmp_path, size=96, **FAST)
    assert [p.name for p in written] == [f"{sample.stem}.gif", f"{sample.stem}.mp4"]
    frames = animation_frames(sample.load_image(), sample.views(), sample.prompts(), size=96, **FAST)
    width, height = frames[0].size
    assert width == 96 and height % 2 == 0

    gif = Image.open(written[0])
    # one GIF frame per hold (with the hold's duration), one per transition frame
    assert gif.n_frames == 2 * (1 + 4)
    durations = []
    for i in range(gif.n_frames):
        gif.seek(i)
        durations.append(gif.info["duration"])
        if i == 0:
            first = np.asarray(gif.convert("RGB")).astype(int)
    assert gif.size == (width, height)
    assert durations == [300, 100, 100, 100, 100] * 2 and gif.info.get("loop") == 0
    assert np.abs(first - np.asarray(frames[0]).astype(int)).mean() < 4  # palette quantisation only

    reader = imageio.get_reader(written[1], format="FFMPEG")
    video = [frame for frame in reader]
    assert reader.get_meta_data()["fps"] == 10
    reader.close()
    assert len(video) == len(frames) == 14
    assert video[0].shape == (height, width, 3)
    first, middle = video[0][:96, :96].astype(int), video[7][:96, :96].astype(int)
    assert np.abs(first - image_area(frames[0], 96)).mean() < 12  # lossy H.264
    assert np.abs(middle - image_area(frames[7], 96)).mean() < 12
    assert not list(tmp_path.glob(".*.tmp*")), "no temporary files are left behind"


def test_cli_animates_a_folder_and_explains_a_missing_json(run_dir, tmp_path):
    result = runner.invoke(app, ["animate", str(run_dir), "--out", str(tmp_path / "anim"), "--format", "gif",
                                 "--fps", "5", "--hold", "0.2", "--transition", "0.2", "--size", "64", "--no-captions"])
    assert result.exit_code == 0, result.output
    gifs = sorted((tmp_path / "anim").glob("*.gif"))
    assert len(gifs) == 2 and Image.open(gifs[0]).size == (64, 64)

    lonely = tmp_path / "lonely.png"
    shutil.copy(find_samples(run_dir)[0].image_path, lonely)
    with pytest.raises(MissingRecordError, match="lonely.json"):
        write_animation(lonely)
    result = runner.invoke(app, ["animate", str(lonely)])
    assert result.exit_code == 2
    message = " ".join(result.output.split())
    assert "lonely.json" in message and "anagram generate" in message
    result = runner.invoke(app, ["animate", str(tmp_path / "anim")])
    assert result.exit_code == 2 and "no samples" in result.output


def test_contact_sheet_with_scores_and_pages(run_dir, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(run_dir, folder)
    samples = find_samples(folder)
    with open(folder / "metrics.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["stem", "alignment", "concealment"])
        writer.writerow([samples[0].stem, "0.25", "0.5"])
        writer.writerow([samples[1].stem, "0.75", ""])
    assert read_metrics(folder / "metrics.csv")[samples[1].stem] == {"alignment": 0.75}

    pages = write_contact_sheet(folder, tile=64)
    assert [p.name for p in pages] == ["contact_sheet.png"]
    sheet = Image.open(pages[0])
    assert sheet.width >= 2 * 64 and sheet.height >= 2 * 64

    sheets = contact_sheets(folder, tile=64, rows_per_page=1, sort_by="alignment")
    assert len(sheets) == 2 and all(s.width >= 2 * 64 for s in sheets)
    # with scores the rows are taller than without
    bare = contact_sheets(folder, tile=64, rows_per_page=1, columns=[])
    assert sheets[0].height > bare[0].height

    result = runner.invoke(app, ["sheet", str(folder), "--rows-per-page", "1", "--tile", "48"])
    assert result.exit_code == 0, result.output
    assert (folder / "contact_sheet.png").is_file() and (folder / "contact_sheet_2.png").is_file()
    result = runner.invoke(app, ["sheet", str(folder), "--tile", "48"])
    assert result.exit_code == 0 and not (folder / "contact_sheet_2.png").exists()  # stale page removed
    result = runner.invoke(app, ["sheet", str(folder), "--sort-by", "nonsense"])
    assert result.exit_code == 2 and "alignment" in result.output
    record = json.loads(samples[0].record_path.read_text())
    assert record["files"]["image"] == samples[0].image_path.name


def test_gif_of_a_32px_sample_is_light_and_shows_the_rendered_frames(tmp_path):
    """A digits sample's GIF was 3.1 MB (384 px, 20 fps, a palette per frame, dithered); now a preview
    at 192 px, 10 fps, one palette of 32 greys: under 450 kB (measured 326 kB), each frame the rendered one."""
    from anagram.outputs.animation import gif_settings

    pipe = AnagramPipeline.from_pretrained("digits")
    prompts, views = ["a digit six", "a digit nine"], ["identity", "rotate_180"]
    image = pipe(prompts, views=views, num_inference_steps=15, generator=torch.Generator().manual_seed(0)).images[0]
    assert image.size == (32, 32)
    gif_path, mp4_path = write_animation(image, tmp_path / "six_nine", views=views, captions=prompts)
    assert gif_path.stat().st_size < 450_000, gif_path.stat().st_size
    assert oct(gif_path.stat().st_mode & 0o777) == oct(mp4_path.stat().st_mode & 0o777)  # both as umask says

    size, fps = gif_settings()
    assert (size, fps) == (192, 10)
    rendered = animation_frames(image, views, prompts, size=size, fps=fps)
    distinct = [f for i, f in enumerate(rendered) if i == 0 or f is not rendered[i - 1]]
    gif = Image.open(gif_path)
    assert gif.n_frames == len(distinct) == 2 * (1 + 15) and gif.size == distinct[0].size == (192, 238)
    worst = []
    for i, frame in enumerate(distinct):
        gif.seek(i)
        shown = np.asarray(gif.convert("RGB")).astype(int)
        expected = np.asarray(frame.convert("RGB")).astype(int)
        error = np.abs(shown - expected)
        worst.append((error.mean(), error.max()))
    # one palette of 32 greys, no dithering: every pixel within a palette step of the rendered one
    assert max(m for m, _ in worst) < 2.5 and max(x for _, x in worst) <= 12, worst  # measured 1.9, 9
    # the MP4 keeps the full size and rate
    reader = imageio.get_reader(mp4_path, format="FFMPEG")
    assert reader.get_meta_data()["fps"] == 20 and next(iter(reader)).shape[:2] == (430, 384)
    reader.close()
