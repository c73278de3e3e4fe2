"""The lip-reading objectives: the associative bridge's Eq. 7 (task loss over the recalled-audio and real-audio paths)
and Eq. 8 (total loss), and MTLAM's Eq. 6."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F


def lipreading_loss(out: dict, labels: torch.Tensor, *, audio_task_weight: float = 1.0,
                    save_weight: float = 1.0, bridge_weight: float = 1.0, label_smoothing: float = 0.0
                    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L_total = L_save + L_bridge + L_task, L_task = CE(recall path) + CE(audio path); N = 0: CE(visual path).
    ``label_smoothing`` (0 in the paper) applies to both CE terms. ``labels``: (B,) class indices, or (B, classes)
    probabilities (mixup's blended targets). The parts are detached tensors (read on the host only when logged)."""
    ce = functools.partial(F.cross_entropy, label_smoothing=label_smoothing)
    task = ce(out["logits"].float(), labels)
    parts = {"ce_recall" if "bridge" in out else "ce": task.detach()}
    if "logits_audio" in out:
        ce_audio = ce(out["logits_audio"].float(), labels)
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


@dataclass(frozen=True)
class MTLAMWeights:
    """Eq. 6 of MTLAM: L_total = L_cls^v + L_cls^a + L_cls^{v,a} + L_recon + L_cont (all 1 in the paper), and the
    label smoothing of the L_cls terms (0 in the paper)."""

    cls_v: float = 1.0
    cls_a: float = 1.0
    cls_va: float = 1.0
    recon: float = 1.0
    contrast: float = 1.0
    label_smoothing: float = 0.0


def mtlam_loss(out: Mapping[str, Any], labels: torch.Tensor, weights: MTLAMWeights
               ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. 6 from an MTLAM forward output: the weighted total and the unweighted terms, ``cls_va`` (fused stream;
    the baseline's only term, named ``cls_v`` there), ``cls_v``, ``cls_a``, ``recon`` and ``contrast`` (summed over
    levels) and per level ``recon@i`` / ``contrast@i``. ``labels``: (B,) class indices, or (B, classes)
    probabilities (mixup's blended targets)."""
    ce = functools.partial(F.cross_entropy, label_smoothing=weights.label_smoothing)
    mems = out.get("memory", {})
    if not mems:  # the baseline: its only stream is the visual one
        cls = ce(out["logits"].float(), labels)
        return weights.cls_v * cls, {"cls_v": cls}
    terms: dict[str, torch.Tensor] = {"cls_va": ce(out["logits"].float(), labels)}
    total = weights.cls_va * terms["cls_va"]
    if "logits_visual" in out:
        terms["cls_v"] = ce(out["logits_visual"].float(), labels)
        total = total + weights.cls_v * terms["cls_v"]
    if "logits_audio" in out:
        terms["cls_a"] = ce(out["logits_audio"].float(), labels)
        total = total + weights.cls_a * terms["cls_a"]
    for name, w in (("recon", weights.recon), ("contrast", weights.contrast)):
        per_level = {i: m.losses[name] for i, m in mems.items() if name in m.losses}
        if per_level:
            terms[name] = torch.stack(list(per_level.values())).sum()
            terms.update({f"{name}@{i}": v for i, v in per_level.items()})
            total = total + w * terms[name]
    return total, terms
