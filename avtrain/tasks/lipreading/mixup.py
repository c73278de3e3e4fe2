"""Mixup of word clips (Zhang et al. 2018; Ma et al. 2022 train their LRW lip readers with it, alpha 0.4).

Each clip of a training batch is blended frame by frame with another clip of the same batch, with one weight
lam ~ Beta(alpha, alpha) for the batch, and its target is the same blend of the two one-hot labels (cross-entropy
is linear in the target, so this is lam * CE(y_a) + (1 - lam) * CE(y_b)). Training only: validation and evaluation
read the clips as they are.

GRID word clips differ in length (2-18 frames), unlike LRW's 29: a blend is as long as the longer clip of its pair,
and the shorter one contributes its padding there, which is 0, the mean of a normalised frame. The mel (read by the
memory's audio path) and the word-boundary indicator are blended with the same weight and partner.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def mix_batch(batch: dict, num_classes: int, alpha: float) -> tuple[dict, torch.Tensor]:
    """(the batch with video, mel and boundary blended, lengths and mask of the longer clip of each pair; the
    soft targets (B, num_classes)). Draws lam and the partners from torch's global generator, which checkpoints
    save, so a resumed run draws what the uninterrupted one would have."""
    if alpha <= 0:
        raise ValueError(f"mixup alpha must be > 0 (got {alpha})")
    labels = batch["labels"]
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    perm = torch.randperm(len(labels))
    partner = {key: batch[key][perm.to(batch[key].device)] for key in ("video", "mel", "boundary", "lengths", "mask",
                                                                       "labels") if key in batch}
    mixed = dict(batch)
    for key in ("video", "mel", "boundary"):
        if key in batch:
            mixed[key] = lam * batch[key] + (1.0 - lam) * partner[key]
    mixed["lengths"] = torch.maximum(batch["lengths"], partner["lengths"])
    mixed["mask"] = batch["mask"] | partner["mask"]
    return mixed, lam * F.one_hot(labels, num_classes).float() + (1.0 - lam) * F.one_hot(partner["labels"],
                                                                                          num_classes).float()
