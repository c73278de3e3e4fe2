"""The speech models' objectives, assembled by their tasks from what the models return.

The bridging model (Kim et al. 2021, Eq. 7-8 with g = L1): L1 of the mel and of the post-net mel over real frames on
the recall path (the only path at inference), the same on the real-audio path, L_save and L_bridge from the memory,
and the optional per-frame word classification of the visual features (training only). The two-tower model (Ephrat
et al. 2017): MSE (or L1) of the mel and of the post-net's linear spectrogram on the predicted window.

Every function returns (total to back-propagate, named parts as detached tensors, ``total`` and ``prediction``
among them): ``prediction`` is the error of what inference decodes, the best-checkpoint criterion when the model's
training loss is its inference (avtrain.tasks.speech.validation).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from avtrain.models.masked import masked_spectrogram_mean, to_device_async
from avtrain.models.two_tower import centre_frames


def spectrogram_error(pred: torch.Tensor, target: torch.Tensor, frame_mask: torch.Tensor, kind: str = "l1"
                      ) -> torch.Tensor:
    """Mean |pred - target| (``l1``) or (pred - target)^2 (``l2``) over real spectrogram frames and all bins;
    pred/target (B, bins, L), frame_mask (B, L)."""
    diff = pred.float() - target.float()
    return masked_spectrogram_mean(diff.abs() if kind == "l1" else diff**2, frame_mask)


@dataclass(frozen=True)
class BridgingWeights:
    save: float = 1.0  # memory_conf.save_weight
    bridge: float = 1.0  # memory_conf.bridge_weight
    words: float = 0.0  # model_conf.word_loss.weight
    delta: float = 0.0  # model_conf.delta_weight


def bridging_speech_loss(out: dict, batch: dict, frames_per_step: int, weights: BridgingWeights
                         ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. 7-8 from :class:`SpeechModel`'s outputs: task = the L1 terms of both paths, total = task + L_save +
    L_bridge (+ the word term); ``prediction`` = the recall path's L1 (what inference decodes). The memory terms
    and the audio path are left out of ``prediction``: their scale drifts as the audio embedding grows."""
    target = batch["mel"]
    mask = batch.get("mask")
    if mask is None:  # from the lengths alone (tests, notebooks): the collated batches carry both
        mask = torch.arange(target.shape[-1] // frames_per_step)[None] < batch["lengths"][:, None]
        mask = to_device_async(mask, target.device)
    frame_mask = mask.repeat_interleave(frames_per_step, dim=1)[:, : target.shape[-1]]
    losses: dict[str, torch.Tensor] = {}
    if "word_logits" in out and "word_frames" in batch:
        logits = out["word_logits"]
        losses["words"] = F.cross_entropy(logits.flatten(0, 1), batch["word_frames"].flatten(), ignore_index=-100)
    bridge = out.get("bridge")
    if bridge is not None:
        losses["save"], losses["bridge"] = bridge.losses["save"], bridge.losses["bridge"]
    if "mel_audio" in out:
        losses["mel_l1_audio"] = spectrogram_error(out["mel_audio"], target, frame_mask)
        losses["post_l1_audio"] = spectrogram_error(out["mel_post_audio"], target, frame_mask)
    losses["mel_l1"] = spectrogram_error(out["mel"], target, frame_mask)
    losses["post_l1"] = spectrogram_error(out["mel_post"], target, frame_mask)
    if weights.delta:  # frame-to-frame differences, over pairs of real frames
        pairs = frame_mask[:, 1:] & frame_mask[:, :-1]
        losses["delta"] = spectrogram_error(out["mel_post"].diff(dim=-1), target.diff(dim=-1), pairs)
    task = sum(v for k, v in losses.items() if "_l1" in k)
    total = task + weights.save * losses.get("save", 0.0) + weights.bridge * losses.get("bridge", 0.0)
    total = total + weights.words * losses.get("words", 0.0) + weights.delta * losses.get("delta", 0.0)
    losses["task"], losses["total"] = task, total
    losses["prediction"] = losses["mel_l1"] + losses["post_l1"]
    return total, {k: v.detach() for k, v in losses.items()}


def two_tower_loss(out: dict, batch: dict, frames_per_step: int, kind: str = "l2"
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """MSE (or L1) of the predicted mel and linear spectrogram against the targets of the frames predicted: the
    window [start, stop) of ``batch["centre"]`` when a training window was loaded with context, else every real
    frame. Equal weights (Sec. 5); every term is a prediction, so ``prediction`` = ``total``."""
    r = frames_per_step
    target_mel, target_linear = batch["mel"], batch.get("linear")
    centre = batch.get("centre")
    if centre is not None:
        lengths = centre[:, 1] - centre[:, 0]  # host
        target_mel = centre_frames(target_mel, centre, r)
        target_linear = None if target_linear is None else centre_frames(target_linear, centre, r)
    else:
        lengths = batch["lengths"]
    steps = out["mel"].shape[-1]
    frame_mask = torch.arange(steps, device=target_mel.device)[None] < \
        to_device_async(lengths * r, target_mel.device)[:, None]
    losses = {"mel": spectrogram_error(out["mel"], target_mel, frame_mask, kind)}
    if "linear" in out and target_linear is not None:
        losses["linear"] = spectrogram_error(out["linear"], target_linear, frame_mask, kind)
    total = sum(losses.values())
    losses["total"] = total
    losses["prediction"] = total
    return total, {k: v.detach() for k, v in losses.items()}
