"""The per-step hooks of the multi-task method inside the sampling loop (spec §3-§5).

`MethodHooks` is what the loop of `anagram.sampler` calls at each step of one pipeline call:
balancing weights and the rectification scale before the combination, the anti-segregation step
after the scheduler step. Every component is backend-agnostic: the hooks only use the pipeline's
own UNet call, decoder and tokenizer, and the call's own scheduler (`anagram.pipelines.common.AnagramCall`).
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..sampler.combine import view_weights
from ..views.base import LATENT
from .anti_segregation import anti_segregation_step
from .attention import CrossAttentionCapture, available_resolutions
from .balancing import balance_weights, cap_weights, relative_scores, score_matrix
from .concepts import concept_token_indices, strip_concept_marks
from .rectification import rectification_scale
from .scorers import ScoreInputs, concept_attention_share, make_scorer, resolve_scorer


def default_map_resolution(pipeline, sample_size: tuple[int, int], layers) -> int:
    """Half the sample side (pixel models) or a quarter (latent), else the nearest available size."""
    height, width = sample_size
    wanted = min(height, width) // (4 if pipeline.sample_space == LATENT else 2)
    sides = sorted({min(h, w) for h, w in available_resolutions(pipeline.unet, height, width, layers)})
    if not sides:
        raise ValueError("this UNet has no cross-attention layers in the chosen blocks: anti-segregation needs them")
    below = [s for s in sides if s <= wanted]
    return below[-1] if below else sides[0]


def predicted_clean(scheduler, sample: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x0 estimate from a (noise-channel) model output at timestep t, for the scorer."""
    alpha = scheduler.alphas_cumprod.to(sample.device)[t].to(torch.float32)
    x, out = sample.float(), noise.float()
    if scheduler.init_noise_sigma > 1:  # sigma-parameterised schedulers (Euler...): x = x0 + sigma * eps
        return x - ((1 - alpha) / alpha).sqrt() * out
    if scheduler.config.get("prediction_type", "epsilon") == "v_prediction":
        return alpha.sqrt() * x - (1 - alpha).sqrt() * out
    return (x - (1 - alpha).sqrt() * out) / alpha.sqrt()


class MethodHooks:
    """Per-step hooks of the multi-task method for one pipeline call."""

    def __init__(self, config, *, pipeline, call, views, prompts, embeddings, do_cfg, model, model_input,
                 sample_shape):
        self.config, self.pipeline, self.call, self.views = config, pipeline, call, list(views)
        self.model_input = model_input
        self.num_views, self.batch = len(views), sample_shape[0]
        self.clean_prompts = [strip_concept_marks(p) for p in prompts]
        rows = embeddings.shape[0] - self.num_views * self.batch  # unconditional rows (N*B, or B when shared)
        self.cond_embeddings = embeddings[rows:]
        self.cond_rows = slice(rows, None) if do_cfg else None
        # "auto" (the default) is the scorer the model declares (read by from_pretrained), else a hub CLIP
        self.scorer_spec = resolve_scorer(config.scorer, getattr(pipeline, "declared_scorer", None)) \
            if config.balance else None
        self.scorer = make_scorer(self.scorer_spec) if config.balance else None
        if self.scorer is not None and config.balance_scores == "relative" and not self.scorer.needs_images:
            raise ValueError("balance_scores='relative' compares each view with every prompt: it needs an image "
                             f"scorer (a CLIP), not {self.scorer!r}")
        if config.rectify and pipeline_reduction_is_sum(views):
            raise ValueError("variance rectification assumes averaged estimates; factorized views are summed")
        needs_tokens = config.anti_segregation is not None or (self.scorer is not None and not self.scorer.needs_images)
        self.tokens = [concept_token_indices(pipeline.tokenizer, p)[1] for p in prompts] if needs_tokens else None
        layers = config.anti_segregation.layers if config.anti_segregation else ("down", "up")
        sample_size = tuple(sample_shape[-2:])
        resolution = (config.anti_segregation.resolution if config.anti_segregation else None) or \
            default_map_resolution(pipeline, sample_size, layers)
        self.share_capture = None
        if self.scorer is not None and not self.scorer.needs_images:
            self.share_capture = CrossAttentionCapture(pipeline.unet, resolution, sample_size=sample_size,
                                                       layers=layers, batch_slice=self.cond_rows)
        self.anti_capture = None
        if config.anti_segregation is not None:
            # The pass only feeds the maps: stop it after the last captured layer (same gradient, less work).
            self.anti_capture = CrossAttentionCapture(pipeline.unet, resolution, sample_size=sample_size,
                                                      layers=layers, batch_slice=None, stop_when_complete=True)
        self.concept_share = None
        self.loss_history: list[torch.Tensor] = []

    # -- the loop's hooks -----------------------------------------------------------------------------

    def wrap_model(self, model, step_index: int):
        """The main UNet call; captures the concept attention share when the scorer reads it."""
        if self.share_capture is None:
            return model

        def capturing_model(batch, t):
            with self.share_capture:
                output = model(batch, t)
                maps = self.share_capture.maps()
            self.share_capture.reset()
            self.concept_share = concept_attention_share(maps, self.tokens, self.num_views)
            return output

        return capturing_model

    def weights_and_scale(self, step_index, num_steps, t, sample, estimates):
        """Balancing weights ``(B, N)`` and the rectification scale ``(B,)`` (each None when off)."""
        channels = sample.shape[1]
        weights = None
        if self.scorer is not None and step_index >= round(self.config.balance_start * num_steps):
            inputs = self.score_inputs(step_index, num_steps, t, sample, estimates[:, :, :channels])
            if self.config.balance_scores == "relative":
                scores = relative_scores(score_matrix(self.scorer, inputs))
            else:
                scores = self.scorer(inputs)
            weights = balance_weights(scores, step_index, num_steps, strength=self.config.balance_strength)
            weights = cap_weights(weights, self.config.balance_max_weight)
        scale = None
        if self.config.rectify:
            used = weights if weights is not None else view_weights(self.num_views, self.batch, "mean", sample)
            scale = rectification_scale(estimates[:, :, :channels], used, self.config.rectify)
        return weights, scale

    def score_inputs(self, step_index, num_steps, t, sample, noises) -> ScoreInputs:
        x0_views = None
        if self.scorer.needs_images:
            x0 = predicted_clean(self.call.scheduler, sample, noises.mean(0), t).to(sample.dtype)
            image = self.pipeline.decode(x0)
            x0_views = torch.stack([view.render(image) for view in self.views])
        return ScoreInputs(x0_views=x0_views, prompts=self.clean_prompts, concept_attention=self.concept_share,
                           step_index=step_index, num_steps=num_steps)

    def after_step(self, step_index, num_steps, next_t, sample):
        """Anti-segregation: one gradient step on the new sample, maps from a pass at the next timestep."""
        settings = self.config.anti_segregation
        if settings is None or next_t is None or not settings.active_at(step_index, num_steps):
            return sample
        model = self.pipeline.make_model_call(self.call, self.cond_embeddings, None)
        scheduler = self.call.scheduler

        def predict_cond(x):
            model_input = scheduler.scale_model_input(self.model_input(x), next_t)
            model(torch.cat([view.view(model_input) for view in self.views]), next_t)

        sample, loss = anti_segregation_step(sample, predict_cond, self.views, self.tokens, self.anti_capture,
                                             settings.step_size, settings.target)
        self.loss_history.append(loss)
        return sample


def pipeline_reduction_is_sum(views: Sequence) -> bool:
    return all(getattr(v, "factorized", False) for v in views)
