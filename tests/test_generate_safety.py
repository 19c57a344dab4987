"""`anagram generate` never loses work: distinct names for distinct parameters, no silent overwrite,
the output folder and device checked before any model loads, the PNG read back as a record."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from anagram.cli import app
from anagram.runs.request import Request, sample_name

runner = CliRunner()
FAST = ["--steps", "2"]


def run(*args):
    result = runner.invoke(app, ["generate", *args], env={"COLUMNS": "200"})
    return result, " ".join(result.output.split())


def names(folder: Path) -> set[str]:
    return {p.name for p in folder.glob("*.png") if not p.name.endswith(".views.png")}


@pytest.mark.parametrize("left, right", [
    (dict(views=["identity", "jigsaw:4,seed=3"]), dict(views=["identity", "jigsaw:2,seed=9"])),
    (dict(views=["identity", "jigsaw:4,seed=3"]), dict(views=["identity", "jigsaw:4,seed=3"], method="mtl")),
    (dict(size=48), dict(size=32)),
    (dict(prompts=("A Digit Six", "a digit nine")), dict(prompts=("a digit six", "a digit nine"))),
    (dict(steps=30), dict(steps=31)),
    (dict(guidance_scale=3.0), dict(guidance_scale=4.0)),
    (dict(style="a drawing of"), dict()),
    (dict(), dict(share_unconditional=True)),
])
def test_names_differ_when_any_image_parameter_differs(left, right):
    def build(settings):
        settings = dict(settings)
        prompts = settings.pop("prompts", ("a digit six", "a digit nine"))
        views = settings.pop("views", None)
        return Request.build(prompts, views, method=settings.pop("method", "baseline"), **settings)

    assert sample_name(build(left), 0) != sample_name(build(right), 0)
    assert sample_name(build(left), 0) == sample_name(build(left), 0)  # and stays the same for the same request


def test_baseline_then_mtl_keeps_both_and_a_rerun_refuses_to_overwrite(tmp_path):
    common = ["a digit one", "a digit seven", "--views", "identity,jigsaw:4,seed=3", *FAST, "--out", str(tmp_path)]
    assert run(*common)[0].exit_code == 0
    assert run(*common, "--method", "mtl", "--anti-seg-fraction", "0.5")[0].exit_code == 0
    assert len(names(tmp_path)) == 2  # the baseline was not replaced by the mtl sample
    before = {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    result, text = run(*common)
    assert result.exit_code == 2 and "already exist" in text and "--overwrite" in text
    assert {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before  # nothing was touched
    assert run(*common, "--overwrite")[0].exit_code == 0


def test_bad_out_is_refused_before_the_model_loads(tmp_path):
    a_file = tmp_path / "taken"
    a_file.write_text("not a folder")
    result, text = run("a digit six", "a digit nine", "--out", str(a_file))
    assert result.exit_code == 2 and "is a file, not a folder" in text and "denoising" not in text


def test_from_json_or_png_regenerates_beside_the_original_without_touching_it(tmp_path):
    out = tmp_path / "out"
    assert run("a digit six", "a digit nine", *FAST, "--out", str(out))[0].exit_code == 0
    [image] = [out / n for n in names(out)]
    original = image.read_bytes()
    for source in (image, image.with_suffix(".json")):  # the PNG carries the same record as the JSON
        result, text = run("--from-json", str(source), "--overwrite")
        assert result.exit_code == 0, text
        again = out / "regenerated" / image.name
        assert np.array_equal(np.asarray(Image.open(again)), np.asarray(Image.open(image)))
    assert image.read_bytes() == original
    record = json.loads(image.with_suffix(".json").read_text())
    assert record["model"]["model"] == "digits"
    strip = out / record["files"]["views"]
    result, text = run("--from-json", str(strip))
    assert result.exit_code == 2 and "carries no anagram record" in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_one_clear_message():
    result, text = run("a digit six", "a digit nine", "--device", "cuda")
    assert result.exit_code == 2 and "--device cuda" in text and "--device cpu" in text
    assert "Traceback" not in text and "AssertionError" not in text


def test_fp16_on_cpu_is_said_once(tmp_path):
    result, text = run("a digit six", "a digit nine", "--dtype", "fp16", "--device", "cpu", "--steps", "1",
                       "--out", str(tmp_path))
    assert result.exit_code == 0, text
    assert text.count("fp16 on a CPU") == 1 and "cannot run with `cpu`" not in text


def test_one_size_rule_for_generate_and_batch(tmp_path):
    result, text = run("a digit six", "a digit nine", "--size", "30", "--out", str(tmp_path))
    assert result.exit_code == 2 and "multiple of 8" in text
    jobs = tmp_path / "jobs.csv"
    jobs.write_text('prompts,size\na digit six|a digit nine,30\n')
    result = runner.invoke(app, ["batch", str(jobs), "--out", str(tmp_path / "b")], env={"COLUMNS": "200"})
    assert result.exit_code == 2 and "multiple of 8" in " ".join(result.output.split())


def test_generate_shows_no_torch_dtype_future_warning(tmp_path):
    import warnings

    from anagram.runs.model import LoadedModel

    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        LoadedModel.load("digits")


def test_unreachable_hub_fails_fast_with_one_correct_message(monkeypatch):
    import time

    from huggingface_hub import constants

    from anagram.pipelines.loading import ModelLoadError, locate

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    start = time.monotonic()
    with pytest.raises(ModelLoadError) as error:
        locate("someone/not-in-any-cache")
    assert time.monotonic() - start < 5
    assert "cannot be reached" in str(error.value) and "HF_HUB_OFFLINE" not in str(error.value)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelLoadError, match="HF_HUB_OFFLINE is set"):
        locate("someone/not-in-any-cache")


def test_from_json_refuses_options_it_would_ignore(tmp_path):
    """`--from-json X --seed 5 --steps 1` used to remake seed 0 at 30 steps without a word."""
    out = tmp_path / "out"
    assert run("a digit six", "a digit nine", *FAST, "--out", str(out))[0].exit_code == 0
    record = out / [n for n in names(out)][0]
    result, text = run("--from-json", str(record.with_suffix(".json")), "--seed", "5", "--steps", "1")
    assert result.exit_code == 2 and "--steps, --seed cannot be used" in text and "denoising" not in text
    assert not (out / "regenerated").exists()
    assert run("--from-json", str(record), "--device", "cpu")[0].exit_code == 0  # where it runs is free
    result, text = run("--from-json", str(record))
    assert result.exit_code == 2 and "choose another --out" in text and "--seed" not in text


def test_a_space_after_a_comma_in_views_is_explained():
    """`--views identity, rotate_180`: the shell makes 'rotate_180' a prompt; it used to say "unknown view ''"."""
    result, text = run("a digit six", "a digit nine", "--views", "identity,", "rotate_180")
    assert result.exit_code == 2 and "'rotate_180' was meant as a view" in text and "identity,rotate_180" in text
