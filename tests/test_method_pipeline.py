"""The multi-task method inside the pipelines: switches, scorers, anti-segregation, restored processors."""

import pytest
import torch
from typer.testing import CliRunner

from anagram import AnagramPipeline, IFAnagramPipeline
from anagram.cli import app
from anagram.method.concepts import ConceptError
from anagram.method import AntiSegregation, MultiTask, predicted_clean, resolve_method
from tiny_models import if_components, sd_components

PROMPTS = ["a painting of a red fox", "a painting of a duck"]
OFF = dict(balance=False, rectify=None, anti_segregation=None)


@pytest.fixture(scope="module")
def sd():
    pipe = AnagramPipeline(**sd_components())
    pipe.set_progress_bar_config(disable=True)
    pipe.declared_scorer = "attention"  # "mtl" balances with the declared scorer (else a hub CLIP, offline here)
    return pipe


def latents(pipe, method, views=("identity", "rotate_180"), prompts=PROMPTS, **kwargs):
    return pipe(list(prompts), views=list(views), num_inference_steps=3, method=method, output_type="latent",
                generator=torch.Generator().manual_seed(0), **kwargs).images


def test_every_switch_off_is_exactly_the_baseline(sd):
    baseline = latents(sd, "baseline")
    assert torch.equal(latents(sd, MultiTask(**OFF)), baseline)
    assert torch.equal(latents(sd, OFF), baseline)
    assert resolve_method(MultiTask(**OFF)) is None


@pytest.mark.parametrize("component", [
    dict(balance=True, scorer="attention"),
    dict(rectify="product"),
    dict(rectify="correlation"),
    dict(anti_segregation=AntiSegregation(step_size=500.0)),
])
def test_each_component_alone_changes_the_result(sd, component):
    baseline = latents(sd, "baseline")
    result = latents(sd, MultiTask(**{**OFF, **component}))
    assert torch.isfinite(result).all()
    assert not torch.allclose(result, baseline, atol=1e-6)


def test_rectification_scales_the_noise_up_for_decorrelated_views(sd, monkeypatch):
    seen = []
    scheduler_class = type(sd.scheduler)
    original = scheduler_class.step

    def spy(self, noise, t, sample, **kwargs):  # on the class: each call steps its own copy of the scheduler
        seen.append(noise.std().item())
        return original(self, noise, t, sample, **kwargs)

    monkeypatch.setattr(scheduler_class, "step", spy)
    latents(sd, "baseline", views=("identity", "jigsaw"))
    latents(sd, MultiTask(**{**OFF, "rectify": "product"}), views=("identity", "jigsaw"))
    assert len(seen) == 6
    baseline, rectified = seen[:3], seen[3:]
    assert all(r > b for r, b in zip(rectified, baseline))


def test_image_scorer_sees_every_view_of_the_decoded_clean_estimate(sd):
    seen = []

    def lagging_second_view(inputs):
        seen.append((tuple(inputs.x0_views.shape), list(inputs.prompts), inputs.step_index, inputs.num_steps))
        batch = inputs.x0_views.shape[1]
        return torch.tensor([[0.9, 0.0]] * batch)  # a score of 0 must not produce NaN

    result = latents(sd, MultiTask(balance=True, scorer=lagging_second_view, rectify=None, anti_segregation=None),
                     num_images_per_prompt=2)
    assert torch.isfinite(result).all()
    assert seen[0] == ((2, 2, 3, 32, 32), PROMPTS, 0, 3) and [s[2] for s in seen] == [0, 1, 2]


def test_predicted_clean_inverts_the_forward_process(sd):
    sd.scheduler.set_timesteps(10)
    x0, noise = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    t = sd.scheduler.timesteps[3]
    noisy = sd.scheduler.add_noise(x0, noise, t[None])
    torch.testing.assert_close(predicted_clean(sd.scheduler, noisy, noise, t), x0, rtol=1e-4, atol=1e-4)


def test_processors_are_restored_after_the_call_and_after_an_error(sd):
    before = dict(sd.unet.attn_processors)
    latents(sd, "mtl")
    assert sd.unet.attn_processors == before

    def boom(pipe, i, t, tensors):
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        latents(sd, "mtl", callback_on_step_end=boom)
    assert sd.unet.attn_processors == before


def test_permutation_views_run_with_the_full_method_on_both_backends(sd):
    for view in ("jigsaw", "inner_circle", "patch_permute:4", "square_hinge"):
        assert torch.isfinite(latents(sd, "mtl", views=("identity", view))).all()
    pipe = IFAnagramPipeline(**if_components())
    pipe.set_progress_bar_config(disable=True)
    pipe.declared_scorer = "attention"
    for view in ("jigsaw", "inner_circle"):
        assert torch.isfinite(latents(pipe, "mtl", views=("identity", view))).all()


def test_three_views_with_the_full_method(sd):
    result = latents(sd, "mtl", views=("identity", "rotate_cw", "rotate_180"),
                     prompts=PROMPTS + ["an old man"])
    assert torch.isfinite(result).all()


def test_marked_concepts_and_missing_concepts(sd):
    assert torch.isfinite(latents(sd, "mtl", prompts=["a painting of a [red fox] in snow", PROMPTS[1]])).all()
    too_long = "a painting of a red fox in the snow and a castle and a tree and a dog and a ship and a duck"
    with pytest.raises(ConceptError, match="duck"):
        latents(sd, "mtl", prompts=[too_long, PROMPTS[1]])
    with pytest.raises(ConceptError):
        latents(sd, "mtl", prompts=["a painting of a [red fox", PROMPTS[1]])


def test_cli_method_switches_are_recorded(tmp_path):
    import json

    folder = tmp_path / "model"
    AnagramPipeline(**sd_components()).save_pretrained(folder)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [
        "generate", *PROMPTS, "--model", str(folder), "--steps", "2", "--size", "32", "--out", str(out),
        "--method", "mtl", "--no-balance", "--rectify", "correlation", "--anti-seg-step-size", "50"])
    assert result.exit_code == 0, result.output
    record = json.loads(next(out.glob("*.json")).read_text())
    assert record["method"]["balance"] is False and record["method"]["rectify"] == "correlation"
    assert record["method"]["anti_segregation"]["step_size"] == 50
    # the cheaper anti-segregation variants of the speed benchmark, from the command line
    cheap = tmp_path / "cheap"
    result = CliRunner().invoke(app, [
        "generate", *PROMPTS, "--model", str(folder), "--steps", "3", "--size", "32", "--out", str(cheap),
        "--method", "mtl", "--anti-seg-layers", "down", "--anti-seg-interval", "2", "--scorer", "attention"])
    assert result.exit_code == 0, result.output
    settings = json.loads(next(cheap.glob("*.json")).read_text())["method"]["anti_segregation"]
    assert settings["layers"] == ["down"] and settings["interval"] == 2


def test_anti_segregation_schedule_follows_the_reference_and_the_interval():
    reference = AntiSegregation()
    assert [i for i in range(30) if reference.active_at(i, 30)] == list(range(26))
    every_other = AntiSegregation(interval=2)
    assert [i for i in range(30) if every_other.active_at(i, 30)] == list(range(0, 26, 2))
