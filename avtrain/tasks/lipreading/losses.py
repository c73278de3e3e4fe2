"""Eq. 7 (task loss over the recalled-audio and real-audio paths) and Eq. 8 (total loss)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def lipreading_loss(out: dict, labels: torch.Tensor, *, audio_task_weight: float = 1.0,
                    save_weight: float = 1.0, bridge_weight: float = 1.0
                    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L_total = L_save + L_bridge + L_task, L_task = CE(recall path) + CE(audio path); N = 0: CE(visual path).
    The parts are detached tensors (read on the host only when logged)."""
    task = F.cross_entropy(out["logits"].float(), labels)
    parts = {"ce_recall" if "bridge" in out else "ce": task.detach()}
    if "logits_audio" in out:
        ce_audio = F.cross_entropy(out["logits_audio"].float(), labels)
        parts["ce_audio"] = ce_audio.detach()
        task = task + audio_task_weight * ce_audio
    total = task
    bridge = out.get("bridge")
    if bridge is not None and bridge.losses:
        total = total + save_weight * bridge.losses["save"] + bridge_weight * bridge.losses["bridge"]
        parts["save"] = bridge.losses["save"].detach()
        parts["bridge"] = bridge.losses["bridge"].detach()
    parts["task"] = task.detach()
    parts["total"] = total.detach()
    return total, parts
