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
import json
from pathlib import Path

import torch

from anagram.testbed import DIGIT_NUMERALS, DIGIT_WORDS
from anagram.testbed.data import DEFAULT_SIZE, load_split, random_shift
from anagram.testbed.trainer import (  # noqa: F401 - the digit model's building blocks, by their old names
    SCHEDULE, TestbedModel, TrainConfig, UNetSpec, build_sampling_scheduler, build_train_scheduler, build_unet,
    build_text_encoder, concept_attention_loss, concept_positions, configure, encode, install_share_probes,
    sample, save_model,
)
from anagram.testbed import trainer

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
WORDS = FILLER_WORDS + DIGIT_WORDS + DIGIT_NUMERALS
MAX_LENGTH = 8  # BOS + up to 6 words + EOS
BOS, EOS = trainer.BOS, trainer.EOS


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


def build_tokenizer(max_length: int = MAX_LENGTH):
    """The digit model's ``CLIPTokenizer``: every prompt word of the templates and digits is one token."""
    return trainer.build_word_tokenizer(WORDS, max_length)


def word_token_ids(tokenizer) -> list[int]:
    """Ids of the whole-word tokens (and the special tokens); every other id is a fragment."""
    return trainer.word_token_ids(tokenizer, WORDS)


def tie_fragment_embeddings(text_encoder, tokenizer) -> None:
    """Give every non-word token (BPE fragments of unknown words) the unk token's embedding."""
    trainer.tie_fragment_embeddings(text_encoder, tokenizer, WORDS)


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
    # the judge of this model's tables: the second digit classifier, which no scorer uses
    # (anagram/testbed/train_digit_judge.py); the shipped classifier is a scorer by name (--scorer digits)
    "judge": "digit_judge",
    # the balancing scorer of --method mtl: the attention share (no extra network)
    "scorer": "attention",
}


# -- the task --------------------------------------------------------------------------------------


class DigitsTask:
    """The digit model's data: the train split of the scans, shifted by up to ``max_shift`` pixels."""

    name = "digits"
    words = WORDS
    max_length = MAX_LENGTH
    position_std = 0.0  # zero, frozen positions: a digit word means the same wherever it stands
    defaults = DEFAULTS

    def __init__(self, size: int = DEFAULT_SIZE, max_shift: int = 2):
        data = load_split(size)
        self.images, self.labels, self.max_shift = data.train_images, data.train_labels, max_shift

    def batch(self, n: int, generator: torch.Generator, prompt_dropout: float) -> tuple[torch.Tensor, list[str]]:
        idx = torch.randint(0, len(self.images), (n,), generator=generator)
        x0 = random_shift(self.images[idx], self.max_shift, generator)
        return x0, sample_prompts(self.labels[idx], generator, prompt_dropout)


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
    cfg = configure(config or TrainConfig(), steps, seed, overrides)
    task = DigitsTask(cfg.unet.sample_size, cfg.max_shift)
    return trainer.train(task, out_dir, cfg, progress=progress, log_every=log_every, snapshot_every=snapshot_every,
                         snapshot_dir=snapshot_dir, report=lambda line: print(line, flush=True))


DigitsModel = TestbedModel


def load_model(path: str | Path | None = None) -> TestbedModel:
    """Load a digit model folder (default: the shipped one) with safetensors only, in eval mode."""
    from anagram.testbed import DIGITS_MODEL_DIR

    return trainer.load_model(Path(path) if path is not None else DIGITS_MODEL_DIR)


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
