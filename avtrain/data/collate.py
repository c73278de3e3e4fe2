"""Clips -> one padded batch: every clip padded to the longest, a mask of real frames, the optional fields."""

from __future__ import annotations

from typing import Any

import torch

from avbridge.sample import MEL_PER_FRAME


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Pad clips to the longest in the batch; ``mask`` is True on real frames. Video is (B, T, C, H, W): C = 1 for
    gray, 3 for RGB; the two-tower fields ``flow`` (B, T - 1, 2, H, W) and ``linear`` (B, bins, 4T) when present."""
    lengths = torch.tensor([s["video"].shape[0] for s in samples], dtype=torch.long)
    tmax = int(lengths.max())
    first = samples[0]
    h, w = first["video"].shape[1:3]
    channels = first["video"].shape[3] if first["video"].ndim == 4 else 1
    n_mels = first["mel"].shape[0]
    video = torch.zeros(len(samples), tmax, channels, h, w)
    mel = torch.zeros(len(samples), n_mels, MEL_PER_FRAME * tmax)
    flow = torch.zeros(len(samples), max(tmax - 1, 0), 2, *first["flow"].shape[1:3]) if "flow" in first else None
    linear = torch.zeros(len(samples), first["linear"].shape[0], MEL_PER_FRAME * tmax) if "linear" in first else None
    for i, s in enumerate(samples):
        t = s["video"].shape[0]
        v = torch.from_numpy(s["video"])
        video[i, :t] = v.permute(0, 3, 1, 2) if v.dim() == 4 else v[:, None]
        mel[i, :, : MEL_PER_FRAME * t] = torch.from_numpy(s["mel"])
        if flow is not None:
            flow[i, : t - 1] = torch.from_numpy(s["flow"]).permute(0, 3, 1, 2)
        if linear is not None:
            linear[i, :, : MEL_PER_FRAME * t] = torch.from_numpy(s["linear"])
    mask = torch.arange(tmax)[None, :] < lengths[:, None]
    batch = {
        "video": video,
        "mel": mel,
        "lengths": lengths,
        "mask": mask,
        "labels": torch.tensor([s["label"] for s in samples], dtype=torch.long),
        "keys": [s["key"] for s in samples],
        "texts": [s["text"] for s in samples],
    }
    if flow is not None:
        batch["flow"] = flow
    if linear is not None:
        batch["linear"] = linear
    if "centre" in first:
        batch["centre"] = torch.tensor([s["centre"] for s in samples], dtype=torch.long)
    if "word_frames" in first:  # -100 on padding: cross-entropy's ignore index
        words = torch.full((len(samples), tmax), -100, dtype=torch.long)
        for i, s in enumerate(samples):
            words[i, : len(s["word_frames"])] = torch.from_numpy(s["word_frames"])
        batch["word_frames"] = words
    if "boundary" in first:  # 0.0 on padding, like context
        boundary = torch.zeros(len(samples), tmax)
        for i, s in enumerate(samples):
            boundary[i, : len(s["boundary"])] = torch.from_numpy(s["boundary"])
        batch["boundary"] = boundary
    if "wave" in first:
        batch["waves"] = [s["wave"] for s in samples]
        batch["spectrograms"] = [s["spectrogram"] for s in samples]
    return batch
