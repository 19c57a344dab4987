"""Tiny real models for offline tests: diffusers/transformers classes built from config.

Every component is the real class a user loads from the hub (UNet2DConditionModel, AutoencoderKL,
CLIPTextModel, T5EncoderModel, DDIM/DDPM schedulers), just with a few thousand parameters, and the
tokenizers are built in memory from a vocabulary, so the tests need no network and no weights.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, UNet2DConditionModel
from diffusers.models.attention_processor import AttnAddedKVProcessor
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel, T5Tokenizer

WORDS = (
    "a an the of in on and painting drawing photo oil watercolor digit number handwritten "
    "zero one two three four five six seven eight nine rabbit duck old man woman young lady "
    "red fox snow waterfall castle dog cat tree ship skull flowers house bird kitchen "
    "0 1 2 3 4 5 6 7 8 9 , . [ ]"
).split()


def clip_tokenizer(words=WORDS, max_length: int = 16) -> CLIPTokenizer:
    """A CLIP BPE tokenizer whose merges spell each of `words` as one token."""
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    merges: list[tuple[str, str]] = []

    def add(token: str) -> None:
        vocab.setdefault(token, len(vocab))

    for char in "abcdefghijklmnopqrstuvwxyz0123456789,.[]":
        add(char)
        add(char + "</w>")
    for word in words:
        symbols = list(word[:-1]) + [word[-1] + "</w>"]
        merged = symbols[0]
        for symbol in symbols[1:]:
            merges.append((merged, symbol))
            merged += symbol
            add(merged)
    merges = list(dict.fromkeys(merges))
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=max_length)


def t5_tokenizer(words=WORDS, max_length: int = 16) -> T5Tokenizer:
    """A T5 unigram tokenizer knowing `words` as whole pieces (and single letters as fallback)."""
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [("\u2581" + w, -1.0) for w in words]
    pieces += [(c, -5.0) for c in "abcdefghijklmnopqrstuvwxyz0123456789,.[]"]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=max_length)


def clip_text_encoder(vocab_size: int, seed: int = 0, hidden: int = 32) -> CLIPTextModel:
    torch.manual_seed(seed)
    config = CLIPTextConfig(
        bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=hidden, intermediate_size=37,
        num_attention_heads=4, num_hidden_layers=2, vocab_size=vocab_size, max_position_embeddings=77,
        projection_dim=hidden,
    )
    return CLIPTextModel(config).eval()


def t5_text_encoder(vocab_size: int, seed: int = 0, d_model: int = 32) -> T5EncoderModel:
    torch.manual_seed(seed)
    config = T5Config(vocab_size=vocab_size, d_model=d_model, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
                      decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    return T5EncoderModel(config).eval()


def sd_unet(seed: int = 0, sample_size: int = 16, cross_attention_dim: int = 32) -> UNet2DConditionModel:
    """A two-level SD-style UNet: cross-attention (`attn2`) at 1/1 and 1/2 of the latent size."""
    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=sample_size, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(8, 16), norm_num_groups=4, attention_head_dim=4,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_attention_dim,
    ).eval()


def sd_vae(seed: int = 0) -> AutoencoderKL:
    torch.manual_seed(seed)
    return AutoencoderKL(
        block_out_channels=(8, 8), in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=4,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        sample_size=32,
    ).eval()


def sd_components(seed: int = 0, scheduler=None) -> dict:
    """Components of a tiny Stable Diffusion (latent 16x16 -> image 32x32)."""
    tokenizer = clip_tokenizer()
    return dict(
        vae=sd_vae(seed), text_encoder=clip_text_encoder(len(tokenizer), seed), tokenizer=tokenizer,
        unet=sd_unet(seed),
        scheduler=scheduler or DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                             clip_sample=False, set_alpha_to_one=False, steps_offset=1),
    )


def if_unet(seed: int = 0, sample_size: int = 16, super_resolution: bool = False) -> UNet2DConditionModel:
    """A DeepFloyd-IF-style UNet: added-KV attention, 6 output channels (noise + learned variance)."""
    torch.manual_seed(seed)
    extra = dict(class_embed_type="timestep", mid_block_scale_factor=1.414, time_embedding_act_fn="gelu",
                 time_embedding_dim=32) if super_resolution else {}
    unet = UNet2DConditionModel(
        sample_size=sample_size, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn",
        up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
        in_channels=6 if super_resolution else 3, out_channels=6, cross_attention_dim=32, encoder_hid_dim=32,
        attention_head_dim=8, addition_embed_type="text", addition_embed_type_num_heads=2,
        cross_attention_norm="group_norm", resnet_time_scale_shift="scale_shift", act_fn="gelu",
        norm_num_groups=8, **extra,
    )
    unet.set_attn_processor(AttnAddedKVProcessor())
    return unet.eval()


def if_scheduler() -> DDPMScheduler:
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", thresholding=True,
                         dynamic_thresholding_ratio=0.95, sample_max_value=1.0, prediction_type="epsilon",
                         variance_type="learned_range")


def if_components(seed: int = 0) -> dict:
    """Components of a tiny DeepFloyd IF stage I (16x16 pixels, T5 text encoder)."""
    tokenizer = t5_tokenizer()
    return dict(tokenizer=tokenizer, text_encoder=t5_text_encoder(len(tokenizer), seed), unet=if_unet(seed),
                scheduler=if_scheduler(), safety_checker=None, feature_extractor=None, watermarker=None)


def if_sr_components(seed: int = 0) -> dict:
    """Components of a tiny DeepFloyd IF stage II (16 -> 32 pixels)."""
    tokenizer = t5_tokenizer()
    return dict(tokenizer=tokenizer, text_encoder=t5_text_encoder(len(tokenizer), seed),
                unet=if_unet(seed + 1, sample_size=32, super_resolution=True), scheduler=if_scheduler(),
                image_noising_scheduler=DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2"),
                safety_checker=None, feature_extractor=None, watermarker=None)
