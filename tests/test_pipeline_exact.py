"""The anagram pipelines against diffusers' own: one identity view must reproduce them exactly,
and several views must give exactly the spec's combination of separate UNet calls."""

import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    IFPipeline,
    IFSuperResolutionPipeline,
    StableDiffusionPipeline,
)

from anagram import AnagramPipeline, IFAnagramPipeline, IFSuperResolutionAnagramPipeline
from anagram.views import get_view
from tiny_models import if_components, if_sr_components, sd_components

SD_SCHEDULERS = {
    "ddim": lambda: DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                  clip_sample=False, set_alpha_to_one=False, steps_offset=1),
    "dpm_multistep": lambda: DPMSolverMultistepScheduler(beta_start=0.00085, beta_end=0.012,
                                                         beta_schedule="scaled_linear"),
}


def quiet(pipe):
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("scheduler", sorted(SD_SCHEDULERS))
@pytest.mark.parametrize("guidance_scale", [1.0, 6.0])
def test_single_identity_view_reproduces_stable_diffusion(scheduler, guidance_scale):
    components = sd_components(scheduler=SD_SCHEDULERS[scheduler]())
    reference = quiet(StableDiffusionPipeline(**components, safety_checker=None, feature_extractor=None,
                                              requires_safety_checker=False))
    if scheduler == "ddim":
        anagram = quiet(AnagramPipeline.from_pipe(reference))
        assert anagram.unet is reference.unet  # modules shared, not copied
    else:  # built on its own, with a legacy scheduler config that both pipelines must fix alike
        components["scheduler"] = SD_SCHEDULERS[scheduler]()
        anagram = quiet(AnagramPipeline(**components))
    kwargs = dict(num_inference_steps=4, guidance_scale=guidance_scale, output_type="np", height=32, width=32,
                  negative_prompt="a photo of a dog", num_images_per_prompt=2)
    expected = reference("a painting of a red fox", generator=torch.Generator().manual_seed(3), **kwargs).images
    result = anagram(["a painting of a red fox"], views=["identity"], generator=torch.Generator().manual_seed(3),
                     **kwargs)
    assert result.images.shape == expected.shape == (2, 32, 32, 3)
    assert (result.images == expected).all()
    assert (result.views[1][0] == expected[1]).all()


def test_single_identity_view_reproduces_deepfloyd_if_both_stages():
    reference = quiet(IFPipeline(**if_components(), requires_safety_checker=False))
    anagram = quiet(IFAnagramPipeline.from_pipe(reference))
    kwargs = dict(num_inference_steps=4, guidance_scale=5.0, output_type="pt", clean_caption=False,
                  negative_prompt="a photo of a dog")
    expected = reference("a painting of a red fox", generator=torch.Generator().manual_seed(1), **kwargs).images
    stage1 = anagram(["a painting of a red fox"], views=["identity"], generator=torch.Generator().manual_seed(1),
                     **kwargs).images
    assert torch.equal(stage1, expected)

    reference_sr = quiet(IFSuperResolutionPipeline(**if_sr_components(), requires_safety_checker=False))
    anagram_sr = quiet(IFSuperResolutionAnagramPipeline.from_pipe(reference_sr))
    kwargs.update(noise_level=100)
    expected_sr = reference_sr(prompt="a painting of a red fox", image=expected,
                               generator=torch.Generator().manual_seed(2), **kwargs).images
    result_sr = anagram_sr(["a painting of a red fox"], image=stage1, views=["identity"],
                           generator=torch.Generator().manual_seed(2), **kwargs).images
    assert result_sr.shape == (1, 3, 32, 32)
    assert torch.equal(result_sr, expected_sr)


def _spec_noise(unet, sample, t, views, cond, uncond, w, noise_channels):
    """The spec's formula, one view and one branch at a time (separate UNet calls)."""
    estimates = []
    for view, c, u in zip(views, cond, uncond):
        out_c = view.inverse(unet(view.view(sample), t, encoder_hidden_states=c).sample, noise_channels)
        out_u = view.inverse(unet(view.view(sample), t, encoder_hidden_states=u).sample, noise_channels)
        noise = out_u[:, :noise_channels] + w * (out_c[:, :noise_channels] - out_u[:, :noise_channels])
        estimates.append(torch.cat([noise, out_c[:, noise_channels:]], 1))
    return torch.stack(estimates).mean(0)


def spy_scheduler_steps(monkeypatch, pipe) -> list:
    """Record (noise, t, sample) of every scheduler step: on the class, since each call steps its own copy."""
    captured = []
    scheduler_class = type(pipe.scheduler)
    original_step = scheduler_class.step

    def spy_step(self, noise, t, sample, **kwargs):
        captured.append((noise.clone(), t, sample.clone()))
        return original_step(self, noise, t, sample, **kwargs)

    monkeypatch.setattr(scheduler_class, "step", spy_step)
    return captured


@pytest.mark.parametrize("names", [("identity", "rotate_180"), ("identity", "flip", "rotate_cw")])
def test_several_views_combine_by_the_spec_formula(names, monkeypatch):
    components = sd_components()
    pipe = quiet(AnagramPipeline(**components))
    views = [get_view(n) for n in names]
    prompts = ["a painting of a red fox", "a painting of a duck", "an old man"][: len(views)]
    captured = spy_scheduler_steps(monkeypatch, pipe)
    pipe(prompts, views=views, num_inference_steps=2, guidance_scale=4.0, height=32, width=32,
         generator=torch.Generator().manual_seed(0), output_type="latent")
    cond, uncond = pipe.encode_prompt(prompts, "cpu", 1, True)
    assert len(captured) == 2
    with torch.no_grad():
        for noise, t, sample in captured:
            expected = _spec_noise(pipe.unet, sample, t, views, cond[:, None], uncond[:, None], 4.0, 4)
            torch.testing.assert_close(noise, expected, rtol=1e-5, atol=1e-5)


def test_if_several_views_keep_variance_channels_and_negate_noise_only(monkeypatch):
    pipe = quiet(IFAnagramPipeline(**if_components()))
    views = [get_view("identity"), get_view("negate")]
    prompts = ["a painting of a red fox", "a painting of a duck"]
    captured = spy_scheduler_steps(monkeypatch, pipe)
    pipe(prompts, views=views, num_inference_steps=2, guidance_scale=3.0, generator=torch.Generator().manual_seed(0),
         output_type="pt")
    cond, uncond = pipe.encode_prompt(prompts, True, device="cpu")
    assert len(captured) == 2
    with torch.no_grad():
        for noise, t, sample in captured:
            assert noise.shape[1] == 6
            expected = _spec_noise(pipe.unet, sample, t, views, cond[:, None], uncond[:, None], 3.0, 3)
            torch.testing.assert_close(noise, expected, rtol=1e-5, atol=1e-5)


def test_shared_unconditional_branch_uses_one_untransformed_evaluation(monkeypatch):
    pipe = quiet(AnagramPipeline(**sd_components()))
    views = [get_view("identity"), get_view("rotate_180")]
    prompts = ["a painting of a red fox", "a painting of a duck"]
    batches = []
    original_forward = pipe.unet.forward

    def spy_forward(sample, *args, **kwargs):
        batches.append(sample.shape[0])
        return original_forward(sample, *args, **kwargs)

    captured = spy_scheduler_steps(monkeypatch, pipe)
    pipe.unet.forward = spy_forward
    pipe(prompts, views=views, num_inference_steps=2, guidance_scale=4.0, share_unconditional=True,
         generator=torch.Generator().manual_seed(0), output_type="latent", num_images_per_prompt=2)
    pipe.unet.forward = original_forward
    assert batches == [2 + 4, 2 + 4]  # B unconditional + N*B conditional rows
    assert len(captured) == 2
    cond, uncond = pipe.encode_prompt(prompts, "cpu", 1, True)
    with torch.no_grad():
        for noise, t, sample in captured:
            shared = pipe.unet(sample, t, encoder_hidden_states=uncond[:1].expand(2, -1, -1)).sample
            guided = [shared + 4.0 * (v.inverse(pipe.unet(v.view(sample), t, encoder_hidden_states=c[None].expand(
                2, -1, -1)).sample) - shared) for v, c in zip(views, cond)]
            torch.testing.assert_close(noise, torch.stack(guided).mean(0), rtol=1e-5, atol=1e-5)
