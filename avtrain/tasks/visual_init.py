"""A visual front started from a word lip-reading run (``model_conf.visual_init`` of the speech and sentence
models).

Lip reading on the same speaker's training clips teaches the front what the mouth does for each word; a speech or
sentence model then starts from that front instead of from random weights. Only the front moves over (the Conv3d
stem and the ResNet trunk: the lip-reading model's ``visual.*``, without a projection to its embedding), so the
lip-reading recipe's front sizes must be the new recipe's; a mismatch is named in one line.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from avtrain.engine.checkpoint import CheckpointError, load_checkpoint


def load_visual_front(front: nn.Module | None, path: str | Path) -> int:
    """Copy a lip-reading checkpoint's ``visual.*`` weights into ``front`` (a VisualFrontend); returns the tensors
    copied."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model_conf.visual_init {path}: no such checkpoint")
    state = load_checkpoint(path)
    saved_model = (state.get("recipe") or {}).get("model")
    if saved_model not in ("lipreading", "mtlam", "sentence_ctc"):
        raise CheckpointError(f"{path}: model_conf.visual_init needs a lip-reading checkpoint, this one is of model "
                              f"{saved_model!r}")
    if front is None:
        raise ValueError("model_conf.visual_init needs model_conf.visual: resnet")
    weights = {k[len("visual."):]: v for k, v in state["model"].items() if k.startswith("visual.")}
    own = front.state_dict()
    # the lip-reading front may end in a projection to its embedding; the speech front stops at the trunk
    own_proj = any(k.startswith("proj.") for k in own)
    weights = {k: v for k, v in weights.items() if own_proj or not k.startswith("proj.")}
    wrong = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in weights.items()
             if k in own and own[k].shape != v.shape]
    missing = sorted(set(own) - set(weights))
    if wrong or missing:
        detail = "; ".join(wrong[:2] or [f"missing {', '.join(missing[:3])}"])
        raise CheckpointError(f"{path}: its visual front does not match this recipe's ({detail})")
    with torch.no_grad():
        front.load_state_dict(weights)
    return len(weights)
