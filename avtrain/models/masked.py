"""Means over the real frames of padded batches: one definition for every loss and pooling that needs one."""

from __future__ import annotations

import torch


def masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of (B, T) per-frame values over real frames (mask True); all frames when ``mask`` is None."""
    if mask is None:
        return values.mean()
    m = mask.to(values.dtype)
    return (values * m).sum() / m.sum().clamp_min(1.0)


def masked_time_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, C) features -> (B, C): each clip's mean over its real frames."""
    m = mask[..., None].to(x.dtype)
    return (x * m).sum(1) / m.sum(1).clamp_min(1.0)


def masked_spectrogram_mean(err: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
    """Mean of a (B, bins, L) per-bin error over the real spectrogram frames (frame_mask (B, L)) and all bins."""
    m = frame_mask[:, None, :].to(err.dtype)
    return (err * m).sum() / (m.sum() * err.shape[1]).clamp_min(1.0)
