"""A speech model's visual front started from a lip-reading run (``model_conf.visual_init``).

Lip reading on the same speaker's training clips teaches the front what the mouth does for each word; the speech
model then starts from that front instead of from random weights. Only the front moves over (the Conv3d stem and
the ResNet trunk: the lip-reading model's ``visual.*``), so the lip-reading recipe's front sizes must be the speech
recipe's ``model_conf.resnet``; a mismatch is named in one line.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from avtrain.engine.checkpoint import CheckpointError, load_checkpoint


def load_visual_front(model: nn.Module, path: str | Path) -> int:
    """Copy a lip-reading checkpoint's ``visual.*`` weights into ``model.visual.front``; returns the tensors copied."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model_conf.visual_init {path}: no such checkpoint")
    state = load_checkpoint(path)
    saved_model = (state.get("recipe") or {}).get("model")
    if saved_model not in ("lipreading", "mtlam"):
        raise CheckpointError(f"{path}: model_conf.visual_init needs a lip-reading checkpoint, this one is of model "
                              f"{saved_model!r}")
    front = model.visual.front
    if front is None:
        raise ValueError("model_conf.visual_init needs model_conf.visual: resnet")
    weights = {k[len("visual."):]: v for k, v in state["model"].items() if k.startswith("visual.")}
    own = front.state_dict()
    # the lip-reading front may end in a projection to its embedding; the speech front stops at the trunk
    weights = {k: v for k, v in weights.items() if not k.startswith("proj.")}
    wrong = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in weights.items()
             if k in own and own[k].shape != v.shape]
    missing = sorted(set(own) - set(weights))
    if wrong or missing:
        detail = "; ".join(wrong[:2] or [f"missing {', '.join(missing[:3])}"])
        raise CheckpointError(f"{path}: its visual front does not match model_conf.resnet ({detail})")
    with torch.no_grad():
        front.load_state_dict(weights)
    return len(weights)
