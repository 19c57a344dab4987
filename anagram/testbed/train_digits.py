"""Train the testbed's text-conditioned pixel diffusion model of handwritten digits.

The shipped model at ``anagram/models/digits/`` was produced, from the repository root, with::

    python -m anagram.testbed.train_digits --out anagram/models/digits --steps 6000 --seed 0 --threads 2

(about 50 minutes of computing on the shared 2-core CPU under ``nice``: 66 minutes of wall time,
16 of them with the process paused; the run is bitwise reproducible on the same machine and thread
count). 32x32 rather than 16x16: the views (jigsaw pieces, inner circle...) need room, a 32x32 UNet
of this size trains in 0.45-0.5 s per batch of 64, and at 1000 steps it already drew 99% recognisable
digits at guidance 3 (a 16x16 UNet would train about twice as fast).

Quality (``benchmarks/digits_quality.py``, 20 samples per digit, 30 DDIM steps, judged by the
testbed's classifier): 98.5% at guidance 1, 100% at 2, 3 (the default), 5 and 7.5. Sampling takes
about 170 ms per image for 30 steps with guidance, in batches of 32 on 2 idle CPU cores.
The output folder is a diffusers pipeline folder without a VAE (pixel space, 1 channel,
32x32, samples in ``[-1, 1]``), loadable with ``anagram.AnagramPipeline.from_pretrained``::

    model_index.json            AnagramPipeline: unet, text_encoder, tokenizer, scheduler, vae=None
    unet/                       UNet2DConditionModel (safetensors), about 1.06M parameters
    text_encoder/               CLIPTextModel with 0 transformer layers (safetensors)
    tokenizer/                  CLIPTokenizer (8 tokens, a vocabulary of the prompt words)
    scheduler/                  DDIMScheduler, the shipped sampler (see build_sampling_scheduler)
    anagram_defaults.json       num_inference_steps, guidance_scale, prompt_template, ...
    training_log.json           configuration, parameter counts, loss curve, training time

UNet: ``UNet2DConditionModel`` with blocks at 32x32 (16 channels, no attention), 16x16 (32
channels, 2 heads) and 8x8 (64 channels, 4 heads) plus the 8x8 mid block; one ResNet per block;
cross-attention (``attn2``) at 16x16 and 8x8 on a 64-wide text embedding.

Text conditioning, designed so that the cross-attention maps of the digit word mean something
(anti-segregation works on them):

* The text encoder is a ``CLIPTextModel`` with **zero** transformer layers and frozen zero
  position embeddings: its output is ``final_layer_norm(token_embedding)``, token by token. The
  embedding of ``seven`` is the same wherever it stands, and the BOS/EOS/padding tokens after the
  digit cannot see it, so the digit lives only in the digit token.
* Prompts are filler words ("a", "the number", "a handwritten"...) then the digit as the last
  word, as a word or a numeral ("a digit seven", "the number 7"); 10% of the prompts are replaced
  by ``""`` (the unconditional branch of classifier-free guidance).
* A concept-attention loss (:func:`concept_attention_loss`, weight 0.05) pulls the digit token's
  share of each cross-attention layer, pixel by pixel, towards the digit's ink: the digit token
  takes the mass on the strokes and BOS/filler/padding take it on the background, as BOS does in
  Stable Diffusion. Without it the UNet reads the digit through a small share of attention (a
  pilot run: 0.20 on the digit token at step 1000, below uniform at 16x16) with hardly any spatial
  structure; a plain "at least 60% on the digit token" hinge gave flat maps (0.76 on ink and
  background alike). See ``benchmarks/digit_attention.py``.
* The tokenizer is a ``CLIPTokenizer`` (byte-level BPE) built in memory whose vocabulary holds the
  prompt words, each a single token. A word outside the vocabulary falls apart into character
  fragments (or the unk token ``<|endoftext|>`` for characters outside the vocabulary); every
  fragment's embedding is tied to the unk/EOS embedding after training, so an unknown word is
  encoded exactly like the unk token and carries no digit.

Training: DDPM (1000 steps, ``squaredcos_cap_v2``, epsilon prediction), batch 64, AdamW (lr 1e-3,
cosine decay after 200 warm-up steps), gradient clipping, EMA of the weights (0.999; the EMA
weights are saved), light augmentation (random shifts of up to 2 pixels), on the train split of
:func:`anagram.testbed.data.load_split` only (the test split stays unseen by both networks).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from anagram.testbed import DIGIT_NUMERALS, DIGIT_WORDS
from anagram.testbed.data import DEFAULT_SIZE, load_split, random_shift

# -- prompts ---------------------------------------------------------------------------------------

#: Training prompt templates; ``{}`` is the digit (a word or a numeral), always the last word.
PROMPT_TEMPLATES = (
    "{}",
    "a {}",
    "a digit {}",
    "the digit {}",
    "a number {}",
    "the number {}",
    "a handwritten {}",
    "a handwritten digit {}",
    "a drawing of a {}",
    "a picture of the number {}",
    "an image of the digit {}",
    "a photo of a handwritten {}",
)
#: The template the toolkit uses by default (recorded in ``anagram_defaults.json``).
DEFAULT_PROMPT_TEMPLATE = "a digit {}"
#: Filler words of the templates (every one is a single token).
FILLER_WORDS = ("a", "an", "the", "digit", "number", "handwritten", "of", "drawing", "picture",
                "image", "photo")
MAX_LENGTH = 8  # BOS + up to 6 words + EOS
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def digit_prompt(digit: int, template: str = DEFAULT_PROMPT_TEMPLATE, numeral: bool = False) -> str:
    """The prompt for ``digit`` (``"a digit seven"``; ``"a digit 7"`` with ``numeral=True``)."""
    return template.format(DIGIT_NUMERALS[digit] if numeral else DIGIT_WORDS[digit])


def sample_prompts(
    labels: torch.Tensor, generator: torch.Generator, dropout: float = 0.1
) -> list[str]:
    """One random training prompt per label (template, word or numeral); ``""`` with prob. ``dropout``."""
    n = len(labels)
    tmpl = torch.randint(0, len(PROMPT_TEMPLATES), (n,), generator=generator).tolist()
    numeral = (torch.rand(n, generator=generator) < 0.5).tolist()
    drop = (torch.rand(n, generator=generator) < dropout).tolist()
    return [
        "" if d else digit_prompt(int(y), PROMPT_TEMPLATES[t], nu)
        for y, t, nu, d in zip(labels.tolist(), tmpl, numeral, drop)
    ]


# -- components ------------------------------------------------------------------------------------


def build_tokenizer(max_length: int = MAX_LENGTH):
    """A ``CLIPTokenizer`` built in memory whose every prompt word is a single token.

    The vocabulary holds the special tokens, then for each word the BPE merge chain that builds it
    from its characters (``s e -> se``, ``se v -> sev``, ... ``seve n</w> -> seven</w>``).
    """
    from transformers import CLIPTokenizer

    words = list(FILLER_WORDS) + list(DIGIT_WORDS) + list(DIGIT_NUMERALS)
    vocab: dict[str, int] = {BOS: 0, EOS: 1}
    merges: list[tuple[str, str]] = []

    def add(token: str) -> None:
        if token not in vocab:
            vocab[token] = len(vocab)

    for word in words:
        symbols = list(word)
        symbols[-1] += "</w>"
        for s in symbols:
            add(s)
        cur = symbols[0]
        for s in symbols[1:]:
            if (cur, s) not in merges:
                merges.append((cur, s))
            cur += s
            add(cur)
    tok = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=max_length)
    for word in words:  # every word must be exactly one token
        ids = tok(word, add_special_tokens=False).input_ids
        if len(ids) != 1 or tok.convert_ids_to_tokens(ids)[0] != word + "</w>":
            raise AssertionError(f"tokenizer splits {word!r}: {tok.convert_ids_to_tokens(ids)}")
    return tok


def word_token_ids(tokenizer) -> list[int]:
    """Ids of the whole-word tokens (and the special tokens); every other id is a fragment."""
    words = list(FILLER_WORDS) + list(DIGIT_WORDS) + list(DIGIT_NUMERALS)
    ids = [tokenizer.convert_tokens_to_ids(w + "</w>") for w in words]
    return sorted(set(ids) | {tokenizer.bos_token_id, tokenizer.eos_token_id})


def build_text_encoder(tokenizer, hidden_size: int = 64):
    """A non-contextual ``CLIPTextModel``: 0 layers, zero (frozen) position embeddings."""
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        projection_dim=hidden_size,
        num_hidden_layers=0,
        num_attention_heads=1,
        max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = CLIPTextModel(config)
    emb = model.embeddings
    with torch.no_grad():
        emb.token_embedding.weight.normal_(0.0, 1.0)
        emb.position_embedding.weight.zero_()
    emb.position_embedding.weight.requires_grad_(False)
    return model


@dataclass
class UNetSpec:
    """The UNet's architecture (a small ``UNet2DConditionModel``)."""

    sample_size: int = DEFAULT_SIZE
    block_out_channels: tuple[int, ...] = (16, 32, 64)
    down_block_types: tuple[str, ...] = ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D")
    up_block_types: tuple[str, ...] = ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D")
    layers_per_block: int = 1
    attention_head_dim: tuple[int, ...] = (1, 2, 4)  # diffusers' legacy name: the number of heads
    norm_num_groups: int = 8


def build_unet(spec: UNetSpec, cross_attention_dim: int = 64):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=spec.sample_size,
        in_channels=1,
        out_channels=1,
        block_out_channels=tuple(spec.block_out_channels),
        down_block_types=tuple(spec.down_block_types),
        up_block_types=tuple(spec.up_block_types),
        layers_per_block=spec.layers_per_block,
        attention_head_dim=tuple(spec.attention_head_dim),
        norm_num_groups=spec.norm_num_groups,
        cross_attention_dim=cross_attention_dim,
    )


SCHEDULE = dict(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="epsilon")


def build_train_scheduler():
    from diffusers import DDPMScheduler

    return DDPMScheduler(**SCHEDULE, clip_sample=False)


def build_sampling_scheduler():
    """The shipped sampler: DDIM without sample clipping, "leading" spacing with ``steps_offset=1``.

    * ``clip_sample=False``: clipping the predicted x0 with the default
      ``use_clipped_model_output=False`` breaks classifier-free guidance.
    * Not "trailing" spacing: with the cosine schedule ``alphas_cumprod[999]`` is 2.4e-9, and a DDIM
      step from t=999 multiplies the noise-prediction error by ``sqrt(a_prev / a_999)`` (about 1000
      for 30 steps): samples come out speckled and saturated. "leading" + ``steps_offset=1`` starts
      at t=967 (30 steps), where ``alphas_cumprod`` is 2.6e-3 and pure noise is an accurate start.
    """
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        **SCHEDULE, clip_sample=False, set_alpha_to_one=False, timestep_spacing="leading", steps_offset=1
    )


#: Sampling defaults shipped in ``anagram_defaults.json`` (chosen with benchmarks/digits_quality.py).
DEFAULTS = {
    "num_inference_steps": 30,
    "guidance_scale": 3.0,
    "prompt_template": DEFAULT_PROMPT_TEMPLATE,
    "negative_prompt": "",
    "height": DEFAULT_SIZE,
    "width": DEFAULT_SIZE,
    "channels": 1,
    "value_range": [-1.0, 1.0],
    "concept": "last word of the prompt (the digit word or numeral)",
    "digit_words": list(DIGIT_WORDS),
}


# -- training --------------------------------------------------------------------------------------


@dataclass
class TrainConfig:
    steps: int = 6000
    seed: int = 0
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: int = 200
    ema_decay: float = 0.999
    prompt_dropout: float = 0.1
    max_shift: int = 2
    hidden_size: int = 64
    attn_reg: float = 0.05  # weight of the concept-attention loss (0: off)
    threads: int | None = None
    unet: UNetSpec = field(default_factory=UNetSpec)


def encode(text_encoder, tokenizer, prompts: list[str]) -> torch.Tensor:
    ids = tokenizer(
        prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
        return_tensors="pt",
    ).input_ids
    return text_encoder(ids)[0]


def tie_fragment_embeddings(text_encoder, tokenizer) -> None:
    """Give every non-word token (BPE fragments of unknown words) the unk token's embedding."""
    keep = set(word_token_ids(tokenizer))
    frag = [i for i in range(len(tokenizer)) if i not in keep]
    w = text_encoder.embeddings.token_embedding.weight
    with torch.no_grad():
        w[frag] = w[tokenizer.unk_token_id].clone()


class _ShareProbe:
    """Cross-attention (as diffusers' ``AttnProcessor``) that keeps, differentiably, the attention
    probabilities averaged over heads: ``(B, pixels, T)`` per call (training only)."""

    def __init__(self, sink: list):
        self.sink = sink

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        b = hidden_states.shape[0]
        ctx = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        mask = attn.prepare_attention_mask(attention_mask, ctx.shape[1], b)
        q = attn.head_to_batch_dim(attn.to_q(hidden_states))
        k = attn.head_to_batch_dim(attn.to_k(ctx))
        v = attn.head_to_batch_dim(attn.to_v(ctx))
        probs = attn.get_attention_scores(q, k, mask)  # (b * heads, pixels, T)
        self.sink.append(probs.view(b, attn.heads, probs.shape[1], -1).mean(dim=1))
        out = attn.batch_to_head_dim(torch.bmm(probs, v))
        out = attn.to_out[1](attn.to_out[0](out))
        if attn.residual_connection:
            out = out + hidden_states
        return out / attn.rescale_output_factor


def install_share_probes(unet) -> list:
    """Replace the processors of the ``attn2`` (cross-attention) modules by :class:`_ShareProbe`."""
    sink: list = []
    procs = dict(unet.attn_processors)
    for name in procs:
        if ".attn2." in name:
            procs[name] = _ShareProbe(sink)
    unet.set_attn_processor(procs)
    return sink


def concept_positions(input_ids: torch.Tensor, eos_token_id: int) -> torch.Tensor:
    """Index of the last word's token (the one before the first EOS) of each prompt."""
    return (input_ids == eos_token_id).int().argmax(dim=1) - 1


def concept_attention_loss(maps: list, ids: torch.Tensor, prompts: list[str], x0: torch.Tensor, eos_token_id: int):
    """Concept-attention loss: the digit token's attention follows the digit's ink.

    For every cross-attention layer (maps ``(B, pixels, T)``, head-averaged) and every conditional
    prompt, the share of attention on the digit token at each pixel is pulled (binary cross-entropy)
    towards the ink of the clean image at the layer's resolution (``(x0 + 1) / 2`` average-pooled):
    about 1 on the strokes, 0 on the background, where the other tokens (BOS, filler words, EOS and
    padding) take the mass, as the BOS token does in Stable Diffusion. The maps of the digit word are
    then concentrated on the digit token and shaped like the digit, which anti-segregation needs.
    Returns ``(loss, mean share on the digit token)``, or ``(None, 0)`` if every prompt was dropped.
    """
    keep = torch.tensor([p != "" for p in prompts])
    if not bool(keep.any()):
        return None, 0.0
    rows = keep.nonzero().squeeze(1)
    pos = concept_positions(ids, eos_token_id)[rows]
    ink01 = (x0[rows] + 1.0) / 2.0
    losses, shares = [], []
    for m in maps:
        r = int(round(m.shape[1] ** 0.5))
        digit = m[rows, :, pos]  # (conditional samples, pixels)
        target = F.adaptive_avg_pool2d(ink01, r).flatten(1)
        losses.append(F.binary_cross_entropy(digit.clamp(1e-6, 1 - 1e-6), target))
        shares.append(digit.detach().mean())
    return torch.stack(losses).mean(), float(torch.stack(shares).mean())


def _ema_update(ema_params, params, decay: float) -> None:
    torch._foreach_lerp_(ema_params, params, 1.0 - decay)


def train(
    out_dir: str | Path,
    steps: int = 6000,
    seed: int = 0,
    *,
    config: TrainConfig | None = None,
    progress: bool = True,
    log_every: int = 100,
    snapshot_every: int = 0,
    snapshot_dir: str | Path | None = None,
    **overrides,
) -> Path:
    """Train the digit model for ``steps`` steps and write the pipeline folder to ``out_dir``.

    ``overrides`` set fields of :class:`TrainConfig` (``batch_size=8``...). With ``snapshot_every``,
    the EMA model is also written every so many steps to ``snapshot_dir/step-N`` (for studies).
    Returns ``out_dir``.
    """
    cfg = copy.deepcopy(config) if config is not None else TrainConfig()
    cfg.steps, cfg.seed = steps, seed
    for k, v in overrides.items():
        if not hasattr(cfg, k):
            raise TypeError(f"unknown training option {k!r}")
        setattr(cfg, k, v)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out_dir = Path(out_dir)

    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    data = load_split(cfg.unet.sample_size)
    images, labels = data.train_images, data.train_labels

    tokenizer = build_tokenizer()
    text_encoder = build_text_encoder(tokenizer, cfg.hidden_size)
    unet = build_unet(cfg.unet, cross_attention_dim=cfg.hidden_size)
    noise_sched = build_train_scheduler()
    alphas_cumprod = noise_sched.alphas_cumprod

    params = [p for p in list(unet.parameters()) + list(text_encoder.parameters()) if p.requires_grad]
    ema_unet, ema_text = copy.deepcopy(unet).eval(), copy.deepcopy(text_encoder).eval()
    ema_params = [p for p in list(ema_unet.parameters()) + list(ema_text.parameters()) if p.requires_grad]
    for p in ema_params:
        p.requires_grad_(False)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    probe = install_share_probes(unet) if cfg.attn_reg > 0 else None

    def lr_at(step: int) -> float:
        if step < cfg.warmup:
            return cfg.lr * (step + 1) / cfg.warmup
        frac = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))

    n_unet = sum(p.numel() for p in unet.parameters())
    n_text = sum(p.numel() for p in text_encoder.parameters())
    log = {"unet_params": n_unet, "text_encoder_params": n_text, "config": asdict(cfg),
           "loss": [], "loss_columns": ["step", "mse", "seconds", "digit_attention_share"]}

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (TextColumn("[bold]digits"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]:.4f}"),
               TimeElapsedColumn(), TimeRemainingColumn())
    t0 = time.time()
    running, n_run, share_run = 0.0, 0, 0.0
    unet.train()
    text_encoder.train()
    with Progress(*columns, disable=not progress) as bar:
        task = bar.add_task("train", total=cfg.steps, loss=float("nan"))
        for step in range(cfg.steps):
            idx = torch.randint(0, len(images), (cfg.batch_size,), generator=gen)
            x0 = random_shift(images[idx], cfg.max_shift, gen)
            prompts = sample_prompts(labels[idx], gen, cfg.prompt_dropout)
            noise = torch.randn(x0.shape, generator=gen)
            t = torch.randint(0, len(alphas_cumprod), (cfg.batch_size,), generator=gen)
            a = alphas_cumprod[t].view(-1, 1, 1, 1)
            xt = a.sqrt() * x0 + (1 - a).sqrt() * noise

            ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length,
                            truncation=True, return_tensors="pt").input_ids
            cond = text_encoder(ids)[0]
            pred = unet(xt, t, encoder_hidden_states=cond).sample
            mse = loss = F.mse_loss(pred, noise)
            if probe is not None:
                attn_loss, share = concept_attention_loss(probe, ids, prompts, x0, tokenizer.eos_token_id)
                probe.clear()
                if attn_loss is not None:
                    loss = loss + cfg.attn_reg * attn_loss
                    share_run += share

            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            with torch.no_grad():
                _ema_update(ema_params, params, min(cfg.ema_decay, (1 + step) / (10 + step)))

            running += mse.item()
            n_run += 1
            if (step + 1) % log_every == 0 or step + 1 == cfg.steps:
                log["loss"].append([step + 1, running / n_run, round(time.time() - t0, 1), round(share_run / n_run, 4)])
                bar.update(task, loss=running / n_run)
                if not progress:
                    print(f"step {step + 1}/{cfg.steps} loss {running / n_run:.4f} "
                          f"digit attention {share_run / n_run:.3f} {time.time() - t0:.0f}s", flush=True)
                running, n_run, share_run = 0.0, 0, 0.0
            bar.advance(task)
            if snapshot_every and (step + 1) % snapshot_every == 0 and step + 1 < cfg.steps:
                snap = copy.deepcopy(ema_text)
                tie_fragment_embeddings(snap, tokenizer)
                sdir = Path(snapshot_dir or out_dir.parent / f"{out_dir.name}-snapshots") / f"step-{step + 1}"
                save_model(sdir, ema_unet, snap, tokenizer, build_sampling_scheduler())
                (sdir / "training_log.json").write_text(json.dumps(log, indent=1) + "\n")

    log["train_seconds"] = round(time.time() - t0, 1)
    tie_fragment_embeddings(ema_text, tokenizer)
    save_model(out_dir, ema_unet, ema_text, tokenizer, build_sampling_scheduler())
    (out_dir / "training_log.json").write_text(json.dumps(log, indent=1) + "\n")
    return out_dir


def save_model(out_dir: str | Path, unet, text_encoder, tokenizer, scheduler, defaults: dict | None = None) -> Path:
    """Write the pipeline folder (safetensors only) with ``model_index.json`` and the defaults."""
    import diffusers

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    unet.save_pretrained(out_dir / "unet", safe_serialization=True)
    text_encoder.save_pretrained(out_dir / "text_encoder", safe_serialization=True)
    tokenizer.save_pretrained(out_dir / "tokenizer")
    scheduler.save_pretrained(out_dir / "scheduler")
    index = {
        "_class_name": "AnagramPipeline",
        "_diffusers_version": diffusers.__version__,
        "scheduler": ["diffusers", "DDIMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": [None, None],
    }
    (out_dir / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    (out_dir / "anagram_defaults.json").write_text(json.dumps(defaults or DEFAULTS, indent=2) + "\n")
    return out_dir


# -- loading and a reference sampler ---------------------------------------------------------------


@dataclass
class DigitsModel:
    """The components of a digit model folder (see :func:`load_model`)."""

    unet: object
    text_encoder: object
    tokenizer: object
    scheduler: object
    defaults: dict


def load_model(path: str | Path | None = None) -> DigitsModel:
    """Load a digit model folder (default: the shipped one) with safetensors only, in eval mode."""
    from diffusers import DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    from anagram.testbed import DIGITS_MODEL_DIR

    path = Path(path) if path is not None else DIGITS_MODEL_DIR
    unet = UNet2DConditionModel.from_pretrained(path / "unet", use_safetensors=True).eval()
    text = CLIPTextModel.from_pretrained(path / "text_encoder", use_safetensors=True).eval()
    tok = CLIPTokenizer.from_pretrained(path / "tokenizer")
    sched = DDIMScheduler.from_pretrained(path / "scheduler")
    defaults_file = path / "anagram_defaults.json"
    defaults = json.loads(defaults_file.read_text()) if defaults_file.exists() else dict(DEFAULTS)
    return DigitsModel(unet, text, tok, sched, defaults)


@torch.no_grad()
def sample(
    model: DigitsModel,
    prompts: list[str],
    guidance_scale: float | None = None,
    num_inference_steps: int | None = None,
    generator: torch.Generator | None = None,
    negative_prompt: str = "",
) -> torch.Tensor:
    """Reference sampler: the shipped scheduler + classifier-free guidance, one view.

    Returns images ``(len(prompts), 1, H, W)`` in ``[-1, 1]`` (clamped). This is what the plain
    diffusers text-to-image loop computes; the toolkit's pipeline reproduces it with one identity view.
    """
    w = model.defaults["guidance_scale"] if guidance_scale is None else guidance_scale
    n_steps = model.defaults["num_inference_steps"] if num_inference_steps is None else num_inference_steps
    sched = copy.deepcopy(model.scheduler)
    sched.set_timesteps(n_steps)
    b = len(prompts)
    cond = encode(model.text_encoder, model.tokenizer, list(prompts))
    uncond = encode(model.text_encoder, model.tokenizer, [negative_prompt] * b)
    emb = torch.cat([uncond, cond])
    size = model.unet.config.sample_size
    x = torch.randn((b, model.unet.config.in_channels, size, size), generator=generator)
    x = x * sched.init_noise_sigma
    for t in sched.timesteps:
        inp = sched.scale_model_input(torch.cat([x, x]), t)
        eps_u, eps_c = model.unet(inp, t, encoder_hidden_states=emb).sample.chunk(2)
        eps = eps_u + w * (eps_c - eps_u)
        x = sched.step(eps, t, x).prev_sample
    return x.clamp(-1.0, 1.0)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="output folder (the pipeline folder)")
    p.add_argument("--steps", type=int, default=TrainConfig.steps)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    p.add_argument("--lr", type=float, default=TrainConfig.lr)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--snapshot-every", type=int, default=0, help="also save the EMA model every N steps")
    p.add_argument("--snapshot-dir", type=Path, default=None)
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    out = train(a.out, a.steps, a.seed, batch_size=a.batch_size, lr=a.lr, threads=a.threads,
                progress=not a.no_progress, snapshot_every=a.snapshot_every, snapshot_dir=a.snapshot_dir)
    log = json.loads((out / "training_log.json").read_text())
    print(f"wrote {out} (UNet {log['unet_params']:,} params, text encoder {log['text_encoder_params']:,}; "
          f"{log['train_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
