"""A trained speech model's predicted spectrograms for a batch of whole clips, in ``avbridge.spectra`` units.

Used through each speech task's ``predict`` by ``avtrain eval`` (test split) and ``avtrain synth`` (one new video):
the bridging model decodes freely from video alone (no audio, no teacher forcing); the two-tower model predicts
every frame from its K-frame window and runs its post-net over sliding windows with Gaussian-weighted overlaps. The
data module's mel normalisation (``data.mel_mean`` / ``data.mel_std``) is undone so that the vocoder sees the units
the shards were written in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from avtrain.config import Recipe
from avtrain.data import MEL_PER_FRAME, denormalise_mel


@dataclass
class Prediction:
    key: str
    mel: np.ndarray  # (n_mels, 4T), the shards' units
    linear: np.ndarray | None  # (bins, 4T), two-tower with post-net only
    # bridging model: the share of attention weight within one frame of decoder step t <-> video frame t (one step
    # per video frame, so a learnt alignment is near-diagonal; about 3 / T for attention spread evenly)
    diagonal_attention: float | None = None


def diagonal_mass(alignments: torch.Tensor, t: int, band: int = 1) -> float:
    """alignments (steps, memory) of one clip -> mean over its t steps of the weight on memory |j - i| <= band."""
    a = alignments[:t, :t].float()
    i = torch.arange(t)
    near = (i[:, None] - i[None, :]).abs() <= band
    return float((a * near).sum(1).mean())


def post_net_window(recipe: Recipe) -> int:
    """The two-tower post-net's chunk length at inference: eval.window, else the training window, else 16."""
    return recipe.eval.window or recipe.data.max_frames or 16


@torch.no_grad()
def predict_bridging(model: torch.nn.Module, recipe: Recipe, batch: dict, device: torch.device) -> list[Prediction]:
    """The bridging model decodes freely from video alone (no audio, no teacher forcing)."""
    lengths = batch["lengths"]
    out = model.infer(batch["video"].to(device), lengths.to(device))
    mel = denormalise_mel(out["mel_post"].float().cpu(), recipe.data)
    align = out["alignments"].cpu() if out.get("alignments") is not None else None  # None: the aligned decoder
    preds = []
    for i, key in enumerate(batch["keys"]):
        t = int(lengths[i])
        diagonal = diagonal_mass(align[i], t) if align is not None else None
        preds.append(Prediction(key, mel[i, :, : MEL_PER_FRAME * t].numpy(), None, diagonal))
    return preds


@torch.no_grad()
def predict_two_tower(model: torch.nn.Module, recipe: Recipe, batch: dict, device: torch.device) -> list[Prediction]:
    """Every frame from its K-frame window; the post-net over sliding windows with Gaussian-weighted overlaps."""
    window = post_net_window(recipe)
    preds = []
    for i, key in enumerate(batch["keys"]):
        t = int(batch["lengths"][i])
        flow = batch["flow"][i, : t - 1].to(device) if "flow" in batch else None
        out = model.predict_clip(batch["video"][i, :t].to(device), flow, window=window)
        mel = denormalise_mel(out["mel"].float().cpu(), recipe.data)
        linear = out["linear"].float().cpu().numpy() if "linear" in out else None
        preds.append(Prediction(key, mel.numpy(), linear))
    return preds
