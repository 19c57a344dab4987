"""Pipeline behaviour around the maths: input checks, outputs, callbacks, precision, memory switches."""

import pytest
import torch

from anagram import AnagramPipeline, IFAnagramPipeline
from anagram.sampler import NonFiniteSampleError
from anagram.views import ViewError, get_view
from anagram.views.base import View
from tiny_models import if_components, sd_components

PROMPTS = ["a painting of a red fox", "a painting of a duck"]


@pytest.fixture(scope="module")
def sd():
    pipe = AnagramPipeline(**sd_components())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run(pipe, prompts=PROMPTS, **kwargs):
    kwargs.setdefault("num_inference_steps", 2)
    kwargs.setdefault("generator", torch.Generator().manual_seed(0))
    return pipe(prompts, **kwargs)


def test_output_holds_every_view_of_every_image(sd):
    out = run(sd, views=["identity", "rotate_180"], num_images_per_prompt=3, output_type="pt")
    assert out.images.shape == (3, 3, 32, 32)
    assert len(out.views) == 3 and all(len(v) == 2 for v in out.views)
    torch.testing.assert_close(out.views[1][1], torch.rot90(out.images[1], 2, dims=(-2, -1)))
    assert out.prompts == PROMPTS
    pil = run(sd, views=["identity", "flip"], style="an oil painting of").views[0][1]
    assert pil.size == (32, 32)


def test_style_prefixes_every_prompt(sd):
    out = run(sd, ["a red fox", "a duck"], views=["identity", "flip"], style="an oil painting of", output_type="pt")
    assert out.prompts == ["an oil painting of a red fox", "an oil painting of a duck"]


@pytest.mark.parametrize("count", [3, 4])
def test_three_and_four_views(sd, count):
    names = ["identity", "rotate_cw", "rotate_180", "rotate_ccw"][:count]
    out = run(sd, ["a red fox", "a duck", "an old man", "a castle"][:count], views=names, output_type="pt")
    assert len(out.views[0]) == count


def test_prompt_count_must_match_views(sd):
    with pytest.raises(ValueError, match="3 prompt\\(s\\) for 2 view\\(s\\).*one prompt per view"):
        run(sd, ["a", "b", "c"], views=["identity", "flip"])


def test_views_must_suit_the_model_space_and_size(sd):
    with pytest.raises(ViewError, match="negate.*latent"):
        run(sd, views=["identity", "negate"])
    with pytest.raises(ViewError, match="square"):
        run(sd, views=["identity", "rotate_cw"], height=32, width=48)
    with pytest.raises(ViewError, match="unknown view.*rotate_180"):
        run(sd, views=["identity", "rotate_181"])


def test_negative_prompts_per_view_are_checked(sd):
    with pytest.raises(ValueError, match="negative prompts"):
        run(sd, views=["identity", "flip"], negative_prompt=["a", "b", "c"])
    run(sd, views=["identity", "flip"], negative_prompt=["blurry", "dark"], output_type="latent")


class ExplodingView(View):
    """A broken custom view: its inverse turns estimates into NaN after a few steps."""

    name = "exploding"

    def view(self, x):
        return x

    def inverse(self, x, noise_channels=None):
        return x * float("inf")


def test_nan_stops_the_run_with_the_step(sd):
    with pytest.raises(NonFiniteSampleError, match="step 1 of 2"):
        run(sd, views=["identity", ExplodingView()])


def test_callback_on_step_end_sees_and_can_replace_latents(sd):
    seen = []

    def callback(pipe, i, t, tensors):
        seen.append((i, tensors["latents"].shape, tensors["prompt_embeds"].shape[0]))
        return {"latents": torch.zeros_like(tensors["latents"])}

    out = run(sd, views=["identity", "flip"], callback_on_step_end=callback,
              callback_on_step_end_tensor_inputs=["latents", "prompt_embeds"], output_type="latent")
    assert [s[0] for s in seen] == [0, 1] and seen[0][1] == (1, 4, 16, 16) and seen[0][2] == 2
    assert torch.count_nonzero(out.images) == 0


def test_given_latents_and_per_sample_generators_are_reproducible(sd):
    a = run(sd, views=["identity", "flip"], num_images_per_prompt=2, output_type="latent",
            generator=[torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)]).images
    b = run(sd, views=["identity", "flip"], output_type="latent", generator=torch.Generator().manual_seed(2)).images
    torch.testing.assert_close(a[1:], b, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="3 generators for 2 images"):
        run(sd, views=["identity", "flip"], num_images_per_prompt=2, generator=[torch.Generator()] * 3)
    with pytest.raises(ValueError, match="latents must have shape"):
        run(sd, views=["identity", "flip"], latents=torch.zeros(1, 4, 8, 8))


def test_bfloat16_and_memory_switches_pass_through():
    pipe = AnagramPipeline(**sd_components()).to(dtype=torch.bfloat16)
    pipe.set_progress_bar_config(disable=True)
    pipe.enable_attention_slicing(1)
    pipe.vae.enable_tiling()  # diffusers 0.36+: tiling lives on the VAE
    out = run(pipe, views=["identity", "rotate_180"], output_type="pt")
    assert out.images.dtype == torch.bfloat16 and torch.isfinite(out.images.float()).all()


def test_factorized_views_sum_and_cannot_mix_with_spatial(sd):
    out = run(sd, views=["low_pass", "high_pass"], output_type="latent")
    assert torch.isfinite(out.images).all()
    with pytest.raises(ValueError, match="factorized"):
        run(sd, views=["identity", "high_pass"])


def test_if_pixel_views_including_jigsaw():
    pipe = IFAnagramPipeline(**if_components())
    pipe.set_progress_bar_config(disable=True)
    out = run(pipe, views=["identity", "jigsaw"], output_type="np")
    assert out.images.shape == (1, 16, 16, 3)
    assert 0 <= out.images.min() and out.images.max() <= 1


def test_stage_two_calls_interleaved_from_two_threads_keep_their_own_inputs():
    """One IF stage II pipeline serving two calls at once (a web server's requests): each call's image,
    noise level and steps travel with the call, so interleaving changes no byte of either result."""
    import threading

    from anagram import IFSuperResolutionAnagramPipeline
    from tiny_models import if_sr_components

    pipe = IFSuperResolutionAnagramPipeline(**if_sr_components())
    pipe.set_progress_bar_config(disable=True)
    images = [torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(s)) * 2 - 1 for s in (1, 2)]
    calls = [
        dict(prompt=["a red fox", "a duck"], image=images[0], views=["identity", "rotate_180"], noise_level=250,
             num_inference_steps=3, guidance_scale=4.0, seed=0),
        dict(prompt=["an old man", "a waterfall"], image=images[1], views=["identity", "flip"], noise_level=50,
             num_inference_steps=4, guidance_scale=2.0, seed=7),  # its own timesteps too
    ]

    def run(call, callback=None):
        kwargs = {k: v for k, v in call.items() if k != "seed"}
        return pipe(generator=torch.Generator().manual_seed(call["seed"]), output_type="pt",
                    callback_on_step_end=callback, **kwargs).images

    alone = [run(call) for call in calls]
    assert not torch.equal(alone[0], alone[1])

    barrier = threading.Barrier(2, timeout=60)
    steps_seen: list[tuple[int, int]] = []
    results: dict[int, torch.Tensor] = {}
    errors: list[BaseException] = []

    def worker(index):
        def in_lockstep(pipeline, i, t, tensors):
            steps_seen.append((index, i))
            if i < 3:
                barrier.wait()  # neither call takes step i + 1 before the other has finished step i
            return {}

        try:
            results[index] = run(calls[index], in_lockstep)
        except BaseException as error:  # noqa: BLE001 - re-raised in the main thread
            errors.append(error)
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(k,)) for k in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert sorted(steps_seen) == [(0, i) for i in range(3)] + [(1, i) for i in range(4)]
    assert torch.equal(results[0], alone[0]) and torch.equal(results[1], alone[1])
