"""Cross-attention capture on tiny real UNets (Stable Diffusion attn2 and IF added-KV layers)."""

import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor2_0

from anagram.method.attention import (
    AttentionCaptureError,
    available_resolutions,
    capture_cross_attention,
    cross_attention_modules,
)
from tiny_models import if_unet, sd_unet

T = 8  # text tokens in these tests


@pytest.fixture(scope="module")
def sd():
    return sd_unet().requires_grad_(False)


@pytest.fixture(scope="module")
def deepfloyd():
    return if_unet().requires_grad_(False)


def inputs(channels, batch=4, size=(16, 16), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, channels, *size, generator=g), torch.randn(batch, T, 32, generator=g)


def processors(unet):
    return dict(unet.attn_processors)


def manual_probs(unet, x, emb, names):
    """Reference text probabilities of the named modules, computed by hand from their inputs."""
    seen = {}
    hooks = []
    for name in names:
        module = unet.get_submodule(name)

        def grab(mod, args, kwargs, name=name):
            seen.setdefault(name, (mod, args[0], kwargs["encoder_hidden_states"]))

        hooks.append(module.register_forward_pre_hook(grab, with_kwargs=True))
    try:
        unet(x, 10, encoder_hidden_states=emb)
    finally:
        for h in hooks:
            h.remove()
    out = []
    for name in names:
        attn, hidden, enc = seen[name]
        b = hidden.shape[0]
        if attn.added_kv_proj_dim is not None:  # IF: softmax over [text keys, self keys]
            h, w = hidden.shape[-2:]
            hidden = hidden.flatten(2).transpose(1, 2)
            enc = attn.norm_encoder_hidden_states(enc)
            hidden = attn.group_norm(hidden.transpose(1, 2)).transpose(1, 2)
            keys = torch.cat([attn.add_k_proj(enc), attn.to_k(hidden)], 1)
        else:
            h = w = int(hidden.shape[1] ** 0.5)
            keys = attn.to_k(enc)
        q = attn.to_q(hidden).view(b, -1, attn.heads, keys.shape[-1] // attn.heads).transpose(1, 2)
        k = keys.view(b, -1, attn.heads, keys.shape[-1] // attn.heads).transpose(1, 2)
        p = (q @ k.transpose(-1, -2) * attn.scale).softmax(-1)[..., : enc.shape[1]]
        out.append(p.sum(1).view(b, h, w, -1))
    return torch.stack(out).mean(0)


def test_sd_layers_and_resolutions(sd):
    assert available_resolutions(sd, 16, 16) == [(16, 16), (8, 8)]
    assert available_resolutions(sd, 16, 24, layers=("mid",)) == [(8, 12)]
    names = [n for n, _, _ in cross_attention_modules(sd)]
    assert names and all(n.endswith("attn2") for n in names)


@pytest.mark.parametrize("resolution", [16, 8])
def test_sd_maps_are_the_attention_probabilities(sd, resolution):
    x, emb = inputs(4)
    reference = sd(x, 10, encoder_hidden_states=emb).sample
    before = processors(sd)
    with capture_cross_attention(sd, resolution=resolution, batch_slice=slice(2, None)) as cap:
        out = sd(x, 10, encoder_hidden_states=emb).sample
        maps = cap.maps()
        names = cap.layer_names
    assert torch.equal(out, reference)  # the layer outputs are the original processors' own
    assert processors(sd) == before and all(processors(sd)[k] is v for k, v in before.items())
    assert len(names) == 3  # one down and two up attn2 layers at each level of the tiny UNet
    assert maps.shape == (2, resolution, resolution, T) and maps.dtype == torch.float32
    heads = sd.get_submodule(names[0]).heads
    # heads are summed: per position the token probabilities add up to the number of heads
    torch.testing.assert_close(maps.sum(-1), torch.full((2, resolution, resolution), float(heads)))
    assert (maps >= 0).all()
    torch.testing.assert_close(maps, manual_probs(sd, x[2:], emb[2:], names), rtol=1e-4, atol=1e-5)


def test_if_maps_are_the_text_part_of_added_kv_attention(deepfloyd):
    x, emb = inputs(3, batch=2)
    assert available_resolutions(deepfloyd, 16, 16) == [(8, 8)]
    reference = deepfloyd(x, 10, encoder_hidden_states=emb).sample
    before = processors(deepfloyd)
    with capture_cross_attention(deepfloyd, resolution=8, layers=("down", "mid", "up")) as cap:
        out = deepfloyd(x, 10, encoder_hidden_states=emb).sample
        maps = cap.maps()
        names = cap.layer_names
    assert torch.equal(out, reference)
    assert all(processors(deepfloyd)[k] is v for k, v in before.items())
    assert len(names) == 4 and "mid_block.attentions.0" in names
    heads = deepfloyd.get_submodule(names[0]).heads
    total = maps.sum(-1)
    assert maps.shape == (2, 8, 8, T)
    # the rest of each query's mass is on the image keys: the text part is below 1 per head
    assert (total > 0).all() and (total < heads).all()
    torch.testing.assert_close(maps, manual_probs(deepfloyd, x, emb, names), rtol=1e-4, atol=1e-5)


def test_batch_slice_keeps_the_conditional_rows(sd):
    x, emb = inputs(4)
    with capture_cross_attention(sd, resolution=8) as cap:
        sd(x, 10, encoder_hidden_states=emb)
        full = cap.maps()
    with capture_cross_attention(sd, resolution=8, batch_slice=slice(2, 4)) as cap:
        sd(x, 10, encoder_hidden_states=emb)
        kept = cap.maps()
    torch.testing.assert_close(kept, full[2:])


def test_processors_restored_after_an_exception(sd):
    before = processors(sd)
    with pytest.raises(RuntimeError, match="boom"):
        with capture_cross_attention(sd, resolution=16):
            assert any(type(p).__name__ == "CapturingProcessor" for p in processors(sd).values())
            raise RuntimeError("boom")
    assert all(processors(sd)[k] is v for k, v in before.items())
    assert not sd._forward_pre_hooks


def test_only_the_chosen_layers_are_wrapped(sd):
    before = processors(sd)
    with capture_cross_attention(sd, resolution=16, layers=("up",)) as cap:
        now = processors(sd)
        changed = {k for k in now if now[k] is not before[k]}
        assert changed == {n + ".processor" for n in cap.layer_names}
        assert all(n.startswith("up_blocks.1") for n in cap.layer_names)


def test_unavailable_resolution_is_a_clear_error(sd):
    with pytest.raises(AttentionCaptureError, match=r"no cross-attention layer at 12x12.*at 16x16, 8x8"):
        capture_cross_attention(sd, resolution=12)
    with pytest.raises(AttentionCaptureError, match="unknown UNet block"):
        capture_cross_attention(sd, resolution=8, layers=("middle",))


def test_maps_are_differentiable_wrt_the_input(sd):
    x, emb = inputs(4, batch=1)
    x.requires_grad_(True)
    with capture_cross_attention(sd, resolution=16) as cap:
        sd(x, 10, encoder_hidden_states=emb)
        (grad,) = torch.autograd.grad(cap.maps()[..., 3].pow(2).sum(), x)
    assert grad.abs().sum() > 0


def test_non_square_sample(sd):
    x, emb = inputs(4, batch=1, size=(16, 24))
    with capture_cross_attention(sd, resolution=(8, 12), sample_size=(16, 24)) as cap:
        sd(x, 10, encoder_hidden_states=emb)
        assert cap.maps().shape == (1, 8, 12, T)
    # an int names the grid by its short side
    assert capture_cross_attention(sd, resolution=8, sample_size=(16, 24)).resolution == (8, 12)
    # the sample must be the announced size
    with pytest.raises(AttentionCaptureError, match="set up for a 16x16 sample but the UNet got 16x24"):
        with capture_cross_attention(sd, resolution=8):
            sd(x, 10, encoder_hidden_states=emb)


def test_maps_are_per_unet_call_unless_accumulating(sd):
    x, emb = inputs(4, batch=1)
    with capture_cross_attention(sd, resolution=8) as cap:
        with pytest.raises(AttentionCaptureError, match="no cross-attention maps were captured"):
            cap.maps()
        sd(x, 10, encoder_hidden_states=emb)
        sd(x, 10, encoder_hidden_states=emb)
        assert cap.num_captured == 3
    with capture_cross_attention(sd, resolution=8, accumulate=True) as cap:
        sd(x, 10, encoder_hidden_states=emb)
        sd(x, 10, encoder_hidden_states=emb)
        assert cap.num_captured == 6


def test_capture_can_be_entered_again(sd):
    x, emb = inputs(4, batch=1)
    cap = capture_cross_attention(sd, resolution=8)
    for _ in range(2):
        with cap:
            sd(x, 10, encoder_hidden_states=emb)
            assert cap.maps().shape == (1, 8, 8, T)
        assert not cap.active


class KwargProcessor(AttnProcessor2_0):
    """A processor with an extra keyword argument, like the IP-adapter ones."""

    received = []

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, gain=None):
        self.received.append(gain)
        return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb)


def test_cross_attention_kwargs_still_reach_the_original_processor():
    unet = sd_unet().requires_grad_(False)
    name = "down_blocks.1.attentions.0.transformer_blocks.0.attn2"
    proc = KwargProcessor()
    unet.get_submodule(name).set_processor(proc)
    x, emb = inputs(4, batch=1)
    with capture_cross_attention(unet, resolution=8, layers=("down",)) as cap:
        unet(x, 10, encoder_hidden_states=emb, cross_attention_kwargs={"gain": 3})
        assert cap.layer_names == [name]
    assert proc.received == [3]
    assert unet.get_submodule(name).processor is proc


def test_batch_slice_that_keeps_nothing_is_an_error(sd):
    x, emb = inputs(4, batch=2)
    with pytest.raises(AttentionCaptureError, match="keeps no row"):
        with capture_cross_attention(sd, resolution=8, batch_slice=slice(2, None)):
            sd(x, 10, encoder_hidden_states=emb)
    assert not any(type(p).__name__ == "CapturingProcessor" for p in sd.attn_processors.values())
