"""The testbed's shared trainer: text-conditioned pixel diffusion models built from config, trained, saved.

Both shipped testbed models (``digits``, ``glyphs``) are the same kind of model, trained by this
one loop; what differs is a :class:`Task` (the data, the prompts, the vocabulary and the sampling
defaults it ships). The pieces, one concern each:

* **Components** (:func:`build_word_tokenizer`, :func:`build_text_encoder`, :func:`build_unet`, the
  schedulers): a ``CLIPTokenizer`` whose every prompt word is one token, a ``CLIPTextModel`` with
  zero transformer layers (its output is ``final_layer_norm(token + position embedding)``, token by
  token, so the concept lives only in the concept token), a small ``UNet2DConditionModel``, DDPM for
  training and DDIM for sampling.
* **The concept-attention loss** (:func:`concept_attention_loss`): the concept token's share of
  every cross-attention map is pulled, pixel by pixel, towards the clean image's ink, so its maps
  sit on the glyph (what anti-segregation and the attention-share scorer read).
* **The loop** (:func:`train`): one :func:`train_step` per batch (epsilon MSE + the attention
  loss, AdamW, cosine schedule with warm-up, gradient clipping, EMA of the weights), a progress
  bar, a loss log, an optional resumable checkpoint.
* **Saving** (:func:`save_model`): the diffusers pipeline folder (safetensors only), written to a
  temporary folder and renamed into place, so an interrupted run leaves no half-written model.

Training is seeded: the weights are a pure function of the task, the configuration and the seed
(bitwise on the same machine and thread count), and a run resumed from its checkpoint ends with
the same weights as an uninterrupted one.
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Protocol, Sequence

import torch
import torch.nn.functional as F

BOS, EOS = "<|startoftext|>", "<|endoftext|>"

# -- tokenizer and text encoder --------------------------------------------------------------------


def build_word_tokenizer(words: Sequence[str], max_length: int):
    """A ``CLIPTokenizer`` built in memory whose every word of ``words`` is a single token.

    The vocabulary holds the special tokens, then for each word the BPE merge chain that builds it
    from its characters (``s e -> se``, ``se v -> sev``, ... ``seve n</w> -> seven</w>``). A word
    outside the vocabulary falls apart into fragments (see :func:`tie_fragment_embeddings`).
    """
    from transformers import CLIPTokenizer

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


def word_token_ids(tokenizer, words: Sequence[str]) -> list[int]:
    """Ids of the whole-word tokens (and the special tokens); every other id is a fragment."""
    ids = [tokenizer.convert_tokens_to_ids(w + "</w>") for w in words]
    return sorted(set(ids) | {tokenizer.bos_token_id, tokenizer.eos_token_id})


def build_text_encoder(tokenizer, hidden_size: int = 64, position_std: float = 0.0):
    """A non-contextual ``CLIPTextModel``: 0 layers; output ``final_layer_norm(token + position)``.

    ``position_std == 0``: zero, frozen position embeddings (a word means the same wherever it
    stands). ``> 0``: learned position embeddings initialised with that spread, for vocabularies
    where one token has two roles (the article "a" and the letter "a").
    """
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
        if position_std > 0:
            emb.position_embedding.weight.normal_(0.0, position_std)
        else:
            emb.position_embedding.weight.zero_()
    if position_std <= 0:
        emb.position_embedding.weight.requires_grad_(False)
    return model


def tokenize(tokenizer, prompts: Sequence[str]) -> torch.Tensor:
    return tokenizer(list(prompts), padding="max_length", max_length=tokenizer.model_max_length,
                     truncation=True, return_tensors="pt").input_ids


def encode(text_encoder, tokenizer, prompts: Sequence[str]) -> torch.Tensor:
    return text_encoder(tokenize(tokenizer, prompts))[0]


def tie_fragment_embeddings(text_encoder, tokenizer, words: Sequence[str]) -> None:
    """Give every non-word token (BPE fragments of unknown words) the unk token's embedding."""
    keep = set(word_token_ids(tokenizer, words))
    frag = [i for i in range(len(tokenizer)) if i not in keep]
    w = text_encoder.embeddings.token_embedding.weight
    with torch.no_grad():
        w[frag] = w[tokenizer.unk_token_id].clone()


# -- UNet and schedulers ---------------------------------------------------------------------------


@dataclass
class UNetSpec:
    """The UNet's architecture (a small ``UNet2DConditionModel``)."""

    sample_size: int = 32
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


# -- the concept-attention loss --------------------------------------------------------------------


class _ShareProbe:
    """Cross-attention (as diffusers' ``AttnProcessor``) that keeps, differentiably, the attention
    probabilities averaged over heads: ``(B, pixels, T)`` per call."""

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
    """Replace the processors of the ``attn2`` (cross-attention) modules by probes; returns the list
    each UNet call appends one ``(B, pixels, T)`` head-averaged map per layer to, in layer order."""
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
    """Concept-attention loss: the concept token's attention follows the ink.

    For every cross-attention layer (maps ``(B, pixels, T)``, head-averaged) and every conditional
    prompt, the share of attention on the concept token at each pixel is pulled (binary
    cross-entropy) towards the ink of the clean image at the layer's resolution (``(x0 + 1) / 2``
    average-pooled): about 1 on the strokes, 0 on the background, where the other tokens (BOS,
    filler words, EOS and padding) take the mass, as the BOS token does in Stable Diffusion.
    Returns ``(loss, mean share on the concept token)``, or ``(None, 0)`` if every prompt was dropped.
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
        concept = m[rows, :, pos]  # (conditional samples, pixels)
        target = F.adaptive_avg_pool2d(ink01, r).flatten(1)
        losses.append(F.binary_cross_entropy(concept.clamp(1e-6, 1 - 1e-6), target))
        shares.append(concept.detach().mean())
    return torch.stack(losses).mean(), float(torch.stack(shares).mean())


# -- the task and the configuration ----------------------------------------------------------------


class Task(Protocol):
    """What one testbed model is trained on.

    ``name``: shown on the progress bar; ``words``: the tokenizer's vocabulary (every prompt word);
    ``max_length``: tokens per prompt (BOS and EOS included); ``position_std``: see
    :func:`build_text_encoder`; ``defaults``: the ``anagram_defaults.json`` it ships;
    ``batch(n, generator, prompt_dropout)``: clean images ``(n, 1, S, S)`` in ``[-1, 1]`` and their
    prompts (``""`` for the unconditional branch), drawn from ``generator`` only.
    """

    name: str
    words: tuple[str, ...]
    max_length: int
    position_std: float
    defaults: dict

    def batch(self, n: int, generator: torch.Generator, prompt_dropout: float) -> tuple[torch.Tensor, list[str]]: ...


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
    max_shift: int = 2  # digits: random shifts of the scans (the glyph renderer places glyphs itself)
    hidden_size: int = 64
    attn_reg: float = 0.05  # weight of the concept-attention loss (0: off)
    threads: int | None = None
    unet: UNetSpec = field(default_factory=UNetSpec)


def configure(config: TrainConfig, steps: int, seed: int, overrides: dict) -> TrainConfig:
    """A copy of ``config`` with ``steps``, ``seed`` and the named fields set (a clear error for a typo)."""
    cfg = copy.deepcopy(config)
    cfg.steps, cfg.seed = steps, seed
    for k, v in overrides.items():
        if not hasattr(cfg, k):
            raise TypeError(f"unknown training option {k!r}")
        setattr(cfg, k, v)
    return cfg


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to 5% of ``cfg.lr``."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    frac = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))


# -- models ----------------------------------------------------------------------------------------


@dataclass
class Trainee:
    """The networks being trained, their EMA copies and the optimiser."""

    tokenizer: object
    text_encoder: torch.nn.Module
    unet: torch.nn.Module
    ema_text: torch.nn.Module
    ema_unet: torch.nn.Module
    params: list
    ema_params: list
    optimizer: torch.optim.Optimizer
    probe: list | None

    def state(self) -> dict[str, torch.Tensor]:
        """Every tensor a checkpoint needs (weights, EMA weights, optimiser moments)."""
        tensors = {f"unet.{k}": v for k, v in self.unet.state_dict().items()}
        tensors |= {f"text.{k}": v for k, v in self.text_encoder.state_dict().items()}
        tensors |= {f"ema_unet.{k}": v for k, v in self.ema_unet.state_dict().items()}
        tensors |= {f"ema_text.{k}": v for k, v in self.ema_text.state_dict().items()}
        for i, s in self.optimizer.state_dict()["state"].items():
            tensors |= {f"opt.{i}.{k}": torch.as_tensor(v) for k, v in s.items()}
        return {k: v.detach().contiguous().clone() for k, v in tensors.items()}

    def load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        for prefix, module in (("unet.", self.unet), ("text.", self.text_encoder),
                               ("ema_unet.", self.ema_unet), ("ema_text.", self.ema_text)):
            module.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
        opt_state: dict[int, dict] = {}
        for k, v in tensors.items():
            if k.startswith("opt."):
                _, i, name = k.split(".", 2)
                opt_state.setdefault(int(i), {})[name] = v
        groups = self.optimizer.state_dict()["param_groups"]
        self.optimizer.load_state_dict({"state": opt_state, "param_groups": groups})


def build_trainee(task: Task, cfg: TrainConfig) -> Trainee:
    """Networks initialised from the global RNG (seeded by the caller), EMA copies, AdamW, probes."""
    tokenizer = build_word_tokenizer(task.words, task.max_length)
    text_encoder = build_text_encoder(tokenizer, cfg.hidden_size, task.position_std)
    unet = build_unet(cfg.unet, cross_attention_dim=cfg.hidden_size)
    params = [p for p in list(unet.parameters()) + list(text_encoder.parameters()) if p.requires_grad]
    ema_unet, ema_text = copy.deepcopy(unet).eval(), copy.deepcopy(text_encoder).eval()
    ema_params = [p for p in list(ema_unet.parameters()) + list(ema_text.parameters()) if p.requires_grad]
    for p in ema_params:
        p.requires_grad_(False)
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    probe = install_share_probes(unet) if cfg.attn_reg > 0 else None
    return Trainee(tokenizer, text_encoder, unet, ema_text, ema_unet, params, ema_params, optimizer, probe)


def train_step(m: Trainee, cfg: TrainConfig, x0: torch.Tensor, prompts: list[str], step: int,
               alphas_cumprod: torch.Tensor, gen: torch.Generator) -> tuple[float, float | None]:
    """One optimisation step on a clean batch; returns (noise MSE, concept attention share or None)."""
    n = x0.shape[0]
    noise = torch.randn(x0.shape, generator=gen)
    t = torch.randint(0, len(alphas_cumprod), (n,), generator=gen)
    a = alphas_cumprod[t].view(-1, 1, 1, 1)
    xt = a.sqrt() * x0 + (1 - a).sqrt() * noise

    ids = tokenize(m.tokenizer, prompts)
    cond = m.text_encoder(ids)[0]
    pred = m.unet(xt, t, encoder_hidden_states=cond).sample
    mse = loss = F.mse_loss(pred, noise)
    share = None
    if m.probe is not None:
        attn_loss, share_value = concept_attention_loss(m.probe, ids, prompts, x0, m.tokenizer.eos_token_id)
        m.probe.clear()
        if attn_loss is not None:
            loss = loss + cfg.attn_reg * attn_loss
            share = share_value

    for g in m.optimizer.param_groups:
        g["lr"] = learning_rate(cfg, step)
    m.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(m.params, 1.0)
    m.optimizer.step()
    with torch.no_grad():
        decay = min(cfg.ema_decay, (1 + step) / (10 + step))
        torch._foreach_lerp_(m.ema_params, m.params, 1.0 - decay)
    return mse.item(), share


# -- saving ----------------------------------------------------------------------------------------

MODEL_INDEX = {
    "_class_name": "AnagramPipeline",
    "scheduler": ["diffusers", "DDIMScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": [None, None],
}


def replace_folder(tmp: Path, out_dir: Path) -> None:
    """Move the finished folder ``tmp`` onto ``out_dir`` (the old one, if any, is removed after)."""
    old = None
    if out_dir.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old.", dir=out_dir.parent))
        os.replace(out_dir, old / out_dir.name)
    os.replace(tmp, out_dir)
    if old is not None:
        shutil.rmtree(old)


def save_model(out_dir: str | Path, unet, text_encoder, tokenizer, scheduler, defaults: dict,
               extra_files: dict[str, str] | None = None) -> Path:
    """Write the pipeline folder (safetensors only): ``model_index.json``, the components, the
    defaults and ``extra_files`` (``{name: text}``), into a temporary folder renamed into place."""
    import diffusers

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp.", dir=out_dir.parent))
    try:
        unet.save_pretrained(tmp / "unet", safe_serialization=True)
        text_encoder.save_pretrained(tmp / "text_encoder", safe_serialization=True)
        tokenizer.save_pretrained(tmp / "tokenizer")
        scheduler.save_pretrained(tmp / "scheduler")
        index = {"_class_name": MODEL_INDEX["_class_name"], "_diffusers_version": diffusers.__version__,
                 **{k: v for k, v in MODEL_INDEX.items() if k != "_class_name"}}
        (tmp / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
        (tmp / "anagram_defaults.json").write_text(json.dumps(defaults, indent=2) + "\n")
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)
        os.chmod(tmp, 0o755)
        replace_folder(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _export(m: Trainee, task: Task, out_dir: Path, log: dict) -> Path:
    text = copy.deepcopy(m.ema_text)
    tie_fragment_embeddings(text, m.tokenizer, task.words)
    return save_model(out_dir, m.ema_unet, text, m.tokenizer, build_sampling_scheduler(), task.defaults,
                      {"training_log.json": json.dumps(log, indent=1) + "\n"})


# -- checkpoints -----------------------------------------------------------------------------------

CHECKPOINT_TENSORS = "checkpoint.safetensors"
CHECKPOINT_STATE = "checkpoint.json"


def save_checkpoint(folder: Path, m: Trainee, gen: torch.Generator, step: int, log: dict, cfg: TrainConfig) -> None:
    """Everything needed to continue after ``step`` steps, written atomically (safetensors + JSON)."""
    from safetensors.torch import save_file

    tensors = m.state()
    tensors["generator_state"] = gen.get_state()
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{CHECKPOINT_TENSORS}.", suffix=".tmp", dir=folder)
    os.close(fd)
    save_file(tensors, tmp)
    os.replace(tmp, folder / CHECKPOINT_TENSORS)
    state = {"step": step, "log": log, "config": asdict(cfg)}
    fd, tmp = tempfile.mkstemp(prefix=f".{CHECKPOINT_STATE}.", suffix=".tmp", dir=folder)
    with os.fdopen(fd, "w") as f:
        json.dump(state, f)
    os.replace(tmp, folder / CHECKPOINT_STATE)


def load_checkpoint(folder: Path, m: Trainee, gen: torch.Generator, cfg: TrainConfig) -> tuple[int, dict]:
    """Restore a checkpoint into ``m`` and ``gen``; returns (steps done, log). The configuration must match."""
    from safetensors.torch import load_file

    state = json.loads((folder / CHECKPOINT_STATE).read_text())
    if state["config"] != json.loads(json.dumps(asdict(cfg))):
        raise ValueError(f"the checkpoint in {folder} was made with another configuration; delete it to start over")
    tensors = load_file(str(folder / CHECKPOINT_TENSORS))
    gen.set_state(tensors.pop("generator_state"))
    m.load_state(tensors)
    return int(state["step"]), state["log"]


# -- the loop --------------------------------------------------------------------------------------


def _progress(name: str, enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (TextColumn(f"[bold]{name}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]:.4f}"), TimeElapsedColumn(), TimeRemainingColumn())
    return Progress(*columns, disable=not enabled)


def train(
    task: Task,
    out_dir: str | Path,
    cfg: TrainConfig,
    *,
    progress: bool = True,
    log_every: int = 100,
    snapshot_every: int = 0,
    snapshot_dir: str | Path | None = None,
    checkpoint_every: int = 0,
    checkpoint_dir: str | Path | None = None,
    report: Callable[[str], None] | None = None,
) -> Path:
    """Train ``task``'s model for ``cfg.steps`` steps and write its pipeline folder to ``out_dir``.

    ``snapshot_every``: also export the EMA model every so many steps to ``snapshot_dir/step-N``
    (for studies). ``checkpoint_every``: save a resumable checkpoint every so many steps to
    ``checkpoint_dir`` (default ``<out_dir>.checkpoint``); a run that finds one there continues
    from it, and it is deleted once the model is written. ``report`` receives a line per log
    interval when the progress bar is off. Returns ``out_dir``.
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out_dir = Path(out_dir)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    m = build_trainee(task, cfg)
    alphas_cumprod = build_train_scheduler().alphas_cumprod

    log = {"unet_params": sum(p.numel() for p in m.unet.parameters()),
           "text_encoder_params": sum(p.numel() for p in m.text_encoder.parameters()),
           "config": asdict(cfg), "loss": [], "loss_columns": ["step", "mse", "seconds", "concept_attention_share"]}
    ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else out_dir.with_name(out_dir.name + ".checkpoint")
    start, elapsed_before = 0, 0.0
    if checkpoint_every and (ckpt / CHECKPOINT_STATE).is_file():
        start, log = load_checkpoint(ckpt, m, gen, cfg)
        elapsed_before = log["loss"][-1][2] if log["loss"] else 0.0

    t0 = time.time() - elapsed_before
    running, n_run, share_run = 0.0, 0, 0.0
    m.unet.train()
    m.text_encoder.train()
    with _progress(task.name, progress) as bar:
        bar_task = bar.add_task("train", total=cfg.steps, completed=start, loss=float("nan"))
        for step in range(start, cfg.steps):
            x0, prompts = task.batch(cfg.batch_size, gen, cfg.prompt_dropout)
            mse, share = train_step(m, cfg, x0, prompts, step, alphas_cumprod, gen)
            running += mse
            n_run += 1
            share_run += share or 0.0
            if (step + 1) % log_every == 0 or step + 1 == cfg.steps:
                log["loss"].append([step + 1, running / n_run, round(time.time() - t0, 1), round(share_run / n_run, 4)])
                bar.update(bar_task, loss=running / n_run)
                if not progress and report is not None:
                    report(f"step {step + 1}/{cfg.steps} loss {running / n_run:.4f} "
                           f"concept attention {share_run / n_run:.3f} {time.time() - t0:.0f}s")
                running, n_run, share_run = 0.0, 0, 0.0
            bar.advance(bar_task)
            if snapshot_every and (step + 1) % snapshot_every == 0 and step + 1 < cfg.steps:
                sdir = Path(snapshot_dir or out_dir.parent / f"{out_dir.name}-snapshots") / f"step-{step + 1}"
                _export(m, task, sdir, log)
            # checkpoints only at log boundaries, so that the running means restart from zero on resume
            if checkpoint_every and (step + 1) % checkpoint_every == 0 and (step + 1) % log_every == 0 \
                    and step + 1 < cfg.steps:
                save_checkpoint(ckpt, m, gen, step + 1, log, cfg)

    log["train_seconds"] = round(time.time() - t0, 1)
    _export(m, task, out_dir, log)
    if checkpoint_every and ckpt.is_dir():
        shutil.rmtree(ckpt)
    return out_dir


# -- loading and a reference sampler ---------------------------------------------------------------


@dataclass
class TestbedModel:
    """The components of a testbed model folder (see :func:`load_model`)."""

    unet: object
    text_encoder: object
    tokenizer: object
    scheduler: object
    defaults: dict


def load_model(path: str | Path) -> TestbedModel:
    """Load a testbed model folder with safetensors only, in eval mode."""
    from diffusers import DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    path = Path(path)
    unet = UNet2DConditionModel.from_pretrained(path / "unet", use_safetensors=True).eval()
    text = CLIPTextModel.from_pretrained(path / "text_encoder", use_safetensors=True).eval()
    tok = CLIPTokenizer.from_pretrained(path / "tokenizer")
    sched = DDIMScheduler.from_pretrained(path / "scheduler")
    defaults = json.loads((path / "anagram_defaults.json").read_text())
    return TestbedModel(unet, text, tok, sched, defaults)


@torch.no_grad()
def sample(
    model: TestbedModel,
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
