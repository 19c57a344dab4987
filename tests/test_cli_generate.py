"""`anagram generate` end to end on a tiny Stable Diffusion folder, and model-loading errors."""

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from anagram import AnagramPipeline
from anagram.cli import app
from anagram.views import split_views
from anagram.outputs.atomic import read_png_metadata
from anagram.pipelines.loading import ModelLoadError, locate
from tiny_models import sd_components

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_sd_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-sd")
    AnagramPipeline(**sd_components()).save_pretrained(folder)
    return folder


def test_from_pretrained_of_a_saved_folder_round_trips(tiny_sd_folder):
    pipe = AnagramPipeline.from_pretrained(tiny_sd_folder, use_safetensors=True)
    assert pipe.vae is not None and pipe.sample_space == "latent"
    assert not list(tiny_sd_folder.rglob("*.bin")), "weights must be saved as safetensors only"


def test_generate_writes_image_strip_and_sidecar_that_reproduces(tiny_sd_folder, tmp_path):
    out = tmp_path / "out"
    args = ["generate", "a red fox", "a duck", "--views", "identity,rotate_180", "--model", str(tiny_sd_folder),
            "--steps", "2", "--size", "32", "--seed", "5", "-n", "2", "--out", str(out), "--style", "a painting of"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    records = sorted(out.glob("*.json"))
    assert len(records) == 2
    record = json.loads(records[0].read_text())
    assert record["seed"] == 5 and record["num_inference_steps"] == 2
    assert record["full_prompts"] == ["a painting of a red fox", "a painting of a duck"]
    assert [v["name"] for v in record["views"]] == ["identity", "rotate_180"]
    assert record["scheduler"]["class"] == "DDIMScheduler"
    assert {"torch", "diffusers", "transformers", "anagram"} <= set(record["versions"])
    image_path = out / record["files"]["image"]
    assert read_png_metadata(image_path)["seed"] == 5
    strip = Image.open(out / record["files"]["views"])
    assert strip.width > 2 * 32
    assert not list(out.glob(".*.tmp")), "no temporary files are left behind"

    again = tmp_path / "again"
    result = runner.invoke(app, ["generate", "--from-json", str(records[0]), "--out", str(again)])
    assert result.exit_code == 0, result.output
    regenerated = again / record["files"]["image"]
    assert np.array_equal(np.asarray(Image.open(regenerated)), np.asarray(Image.open(image_path)))


def test_generate_rejects_prompt_view_mismatch(tiny_sd_folder, tmp_path):
    result = runner.invoke(app, ["generate", "a red fox", "--views", "identity,flip", "--model",
                                 str(tiny_sd_folder), "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "one prompt per view" in " ".join(result.output.split())
    assert "Loading" not in result.output  # refused before any model was loaded


def test_missing_folder_and_offline_hub_id_give_one_clear_message(tmp_path):
    with pytest.raises(ModelLoadError, match="no such model folder"):
        locate(str(tmp_path / "nowhere" / "model"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="model_index.json"):
        locate(str(tmp_path / "empty"))
    with pytest.raises(ModelLoadError, match="not in the local Hugging Face cache|neither a local folder"):
        locate("someone/no-such-model-anywhere")
    result = runner.invoke(app, ["generate", "a", "b", "--model", "someone/no-such-model-anywhere"])
    assert result.exit_code == 2 and "error" in result.output


def test_view_list_parsing_keeps_spec_parameters():
    assert split_views("identity,jigsaw:4,seed=3,rotate_180") == ["identity", "jigsaw:4,seed=3", "rotate_180"]


def test_views_command_lists_every_view_with_properties():
    from anagram.views import available

    result = runner.invoke(app, ["views"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    for name in available():
        assert name in result.output
    assert "orthogonal" in result.output and "square only" in result.output


def test_atomic_writes_leave_ordinary_permissions(tmp_path):
    import os
    import stat

    from anagram.outputs.atomic import write_json

    path = write_json(tmp_path / "x.json", {"a": 1})
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_generate_with_deepfloyd_if_stage_one_and_two_folders(tmp_path):
    from anagram import IFAnagramPipeline, IFSuperResolutionAnagramPipeline
    from tiny_models import if_components, if_sr_components

    IFAnagramPipeline(**if_components()).save_pretrained(tmp_path / "if-i")
    IFSuperResolutionAnagramPipeline(**if_sr_components()).save_pretrained(tmp_path / "if-ii")
    out = tmp_path / "out"
    result = runner.invoke(app, ["generate", "a red fox", "a duck", "--views", "identity,rotate_cw", "--model",
                                 str(tmp_path / "if-i"), "--upscaler", str(tmp_path / "if-ii"), "--steps", "2",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    record = json.loads(next(out.glob("*.json")).read_text())
    assert record["model"]["pipeline_class"] == "IFAnagramPipeline"
    assert record["upscaler"]["location"] == str(tmp_path / "if-ii")
    assert Image.open(out / record["files"]["image"]).size == (32, 32)  # stage II upscaled 16 -> 32
