"""The free-running validation measure of the speech tasks: what inference predicts from the video alone, against the
true spectrograms, as a mean absolute error per clip (in the units of the model's targets).

It, not the teacher-forced loss, picks ``best.pt`` and moves a plateau schedule: an autoregressive decoder fed the
true previous frame can score well while ignoring the video (copying its input), which only free-running decoding
shows. The bridging model decodes without teacher forcing (``model.infer``) and is scored on its post-net mel (what
``avtrain eval`` synthesises); the two-tower model predicts every frame from its K-window and runs its post-net over
sliding windows with Gaussian-weighted overlaps (``predict_clip``), scored on mel + linear (Lin-synth's input), its
training loss terms computed on that same prediction (one pass; it has no teacher forcing). A model
whose training loss already is its inference (a non-autoregressive decoder on whole clips) says so with a true
``training_loss_is_inference`` attribute, and its ``prediction`` loss is the measure, with no second pass.

Griffin-Lim + ESTOI per epoch was measured as the alternative (docs/speech.md, "Checkpoint selection"): it scores
what a listener hears but costs a phase reconstruction and STOI per clip, so only a few clips fit in an epoch's
budget, where the L1 reads all of them.
"""

from __future__ import annotations

import torch
from torch import nn

from avtrain.data import MEL_PER_FRAME


def error_per_clip(pred: torch.Tensor, target: torch.Tensor, frames: torch.Tensor, squared: bool = False
                   ) -> torch.Tensor:
    """(B, C, L) prediction and target, real frame counts (B,) -> (B,) mean |pred - target| (or its square) over
    each clip's real frames and all C bins."""
    n = min(pred.shape[-1], target.shape[-1])
    steps = torch.arange(n, device=pred.device)[None]
    mask = (steps < frames.to(pred.device)[:, None]).to(torch.float32)[:, None, :]
    diff = pred[..., :n].float() - target[..., :n].float()
    err = (diff ** 2 if squared else diff.abs()) * mask
    return err.sum((1, 2)) / (mask.sum((1, 2)) * pred.shape[1]).clamp_min(1.0)


@torch.no_grad()
def bridging_free_running(model: nn.Module, batch: dict) -> torch.Tensor:
    """(B,) L1 of the free-running post-net mel (video only, no teacher forcing)."""
    lengths = batch["lengths"]
    out = model.infer(batch["video"], lengths)
    return error_per_clip(out["mel_post"], batch["mel"], MEL_PER_FRAME * lengths)


@torch.no_grad()
def two_tower_validation_sums(model: nn.Module, batch: dict, window: int, loss: str = "l2") -> dict[str, float]:
    """One inference pass per clip (``predict_clip``: the whole clip, the sliding post-net), summed over the batch's
    clips: the training loss terms (``mel``, ``linear``, ``total``, ``prediction``; ``loss`` l2 or l1) of what
    inference predicts, and ``free_running`` = L1 of mel + linear. There is no teacher forcing to leave out here;
    a second, training-style pass over the whole clips would cost as much again for the same mel."""
    sums: dict[str, float] = {}
    squared = loss == "l2"
    for i in range(len(batch["keys"])):
        t = int(batch["lengths"][i])
        frames = torch.tensor([MEL_PER_FRAME * t])
        flow = batch["flow"][i, : t - 1] if "flow" in batch else None
        out = model.predict_clip(batch["video"][i, :t], flow, window=window)
        parts = {"mel": (out["mel"][None], batch["mel"][i : i + 1])}
        if "linear" in out and "linear" in batch:
            parts["linear"] = (out["linear"][None], batch["linear"][i : i + 1])
        clip = {"free_running": 0.0, "total": 0.0}
        for name, (pred, target) in parts.items():
            l1 = float(error_per_clip(pred, target, frames)[0])
            term = float(error_per_clip(pred, target, frames, squared=True)[0]) if squared else l1
            clip[name] = term
            clip["total"] += term
            clip["free_running"] += l1
        clip["prediction"] = clip["total"]
        for k, v in clip.items():
            sums[k] = sums.get(k, 0.0) + v
    return sums
