"""Multi-Temporal Lip-Audio Memory (MTLAM): multi-level visual-to-audio memories and the lip-reading model around them.

Per chosen level i (Sec. 2.3): h key memories M_k,i (h, N, K) and one value memory M_v,i (N, D). The visual feature
of level i is embedded per head (W_q, the embedding matrix of Eq. 2), each head addresses its key memory with
softmax(r * cos) (Eq. 2, the same addressing as ``memory.AssociativeBridge``), each head recalls A_k^j M_v from the
shared value memory (Eq. 3), the aggregation layer W_a (hD -> D) merges the h recalls into one audio feature, and
that feature is added to the visual feature (fusion by summation) before the next visual level.

Losses (Sec. 2.4, Eq. 6, all weights 1 in the paper): per level, reconstruction 1 - cos(recalled, audio feature)
over real frames with the audio feature detached (MVM's form; the paper's Eq. 4 is not legible), and the
value-slot term 0.5 * sum |I - V V^T| over L2-normalised value slots (MVM's "contrastive" term); the VSR loss on
the visual stream without memory, the ASR loss on the audio stream, and the loss on the fused stream.

Levels are numbered as in Table 1: level i >= 1 is the output of temporal level i (MTLAM#i), level 0 the
front-end output (MVM's extra placement). ``levels=()`` is the baseline: visual front, visual temporal model,
classifier, cross-entropy; no audio path and no memory parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from avtrain.config.components import MTLAMMemoryConf
from avtrain.models.frontends import AudioFrontend, VisualFrontend
from avtrain.models.masked import masked_mean, masked_time_mean, to_device_async
from avtrain.models.tcn import (
    DCTCNConf,
    MSTCNConf,
    TemporalModel,
    TemporalSpec,
    build_matched_towers,
    build_temporal_model,
)


# ---------------------------------------------------------------- the memory of one level
@dataclass
class LevelMemoryOutput:
    recalled: torch.Tensor  # aggregated recalled audio feature, (B, T, D)
    addressing: torch.Tensor  # A_k per head, (B, T, h, N)
    losses: dict[str, torch.Tensor] = field(default_factory=dict)  # "recon" (with a target), "contrast"


def value_slot_loss(value_memory: torch.Tensor) -> torch.Tensor:
    """0.5 * sum |I - V V^T| over L2-normalised slots: zero when the slots are orthonormal, N(N-1)/2 when they are
    all the same; pushes different audio features into different slots."""
    v = F.normalize(value_memory.float(), dim=-1)
    eye = torch.eye(v.shape[0], device=v.device, dtype=v.dtype)
    return 0.5 * (eye - v @ v.t()).abs().sum()


class LipAudioMemory(nn.Module):
    """One MTLAM: h-head key memories, one value memory, aggregation layer (Fig. 1 (c))."""

    def __init__(self, dim: int, num_slots: int, num_heads: int, key_dim: int | None = None, scale: float = 16.0,
                 init_std: float = 0.5):
        super().__init__()
        if num_slots <= 0 or num_heads <= 0:
            raise ValueError(f"a memory needs num_slots > 0 and num_heads > 0, got {num_slots}, {num_heads}")
        key_dim = key_dim or dim
        self.num_heads, self.num_slots, self.key_dim, self.scale = num_heads, num_slots, key_dim, float(scale)
        self.key_memory = nn.Parameter(torch.randn(num_heads, num_slots, key_dim) * init_std)  # M_k (h, N, K)
        self.value_memory = nn.Parameter(torch.randn(num_slots, dim) * init_std)  # M_v (N, D)
        self.query = nn.Linear(dim, num_heads * key_dim)  # W_q of Eq. 2, one K-dim query per head
        self.aggregate = nn.Linear(num_heads * dim, dim)  # W_a

    def address(self, visual: torch.Tensor) -> torch.Tensor:
        """Eq. 2 per head: softmax over slots of r * cos(M_k^j, W_q^j f_v); (B, T, h, N), in fp32 whatever the
        autocast around it (the query projection W_q included)."""
        b, t, _ = visual.shape
        with torch.autocast(visual.device.type, enabled=False):
            q = self.query(visual.float()).view(b, t, self.num_heads, self.key_dim)
            q = F.normalize(q, dim=-1)
            keys = F.normalize(self.key_memory.float(), dim=-1)
            sim = torch.einsum("bthk,hnk->bthn", q, keys)
            return torch.softmax(self.scale * sim, dim=-1)

    def forward(self, visual: torch.Tensor, audio: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> LevelMemoryOutput:
        a = self.address(visual)
        with torch.autocast(visual.device.type, enabled=False):
            per_head = a @ self.value_memory.float()  # Eq. 3 for every head at once: (B, T, h, D)
        recalled = self.aggregate(per_head.flatten(2).to(visual.dtype))
        if mask is not None:
            recalled = recalled * mask[..., None].to(recalled.dtype)
        losses = {"contrast": value_slot_loss(self.value_memory)}
        if audio is not None:
            # the audio stream learns from its own ASR loss only; the memory learns to reproduce it
            cos = F.cosine_similarity(recalled.float(), audio.detach().float(), dim=-1)
            losses["recon"] = masked_mean(1.0 - cos, mask)
        return LevelMemoryOutput(recalled, a, losses)


# ---------------------------------------------------------------- configuration
@dataclass(frozen=True)
class LossWeights:
    """Eq. 6: L_total = L_cls^v + L_cls^a + L_cls^{v,a} + L_recon + L_cont (all 1 in the paper)."""

    cls_v: float = 1.0
    cls_a: float = 1.0
    cls_va: float = 1.0
    recon: float = 1.0
    contrast: float = 1.0


@dataclass(frozen=True)
class MTLAMConfig:
    num_classes: int = 500
    embed_dim: int = 512  # front-end output width
    visual_frontend: dict[str, Any] = field(default_factory=dict)  # VisualFrontend kwargs except out_dim
    audio_frontend: dict[str, Any] = field(default_factory=dict)  # AudioFrontend kwargs except out_dim
    temporal: TemporalSpec = field(default_factory=DCTCNConf)
    audio_temporal: TemporalSpec | None = None  # None = same structure as the visual one (the paper)
    memory: MTLAMMemoryConf = field(default_factory=MTLAMMemoryConf)  # levels, heads, slots, key size, r, init
    weights: LossWeights = field(default_factory=LossWeights)
    head_dropout: float = 0.0

    @classmethod
    def from_confs(cls, model: Mapping[str, Any], visual_frontend: Mapping[str, Any],
                   audio_frontend: Mapping[str, Any], temporal: str, temporal_conf: Mapping[str, Any],
                   memory: Mapping[str, Any], audio_temporal_conf: Mapping[str, Any] | None = None) -> MTLAMConfig:
        """From a recipe's validated component confs (plain dicts, as ``Recipe`` stores them); see docs/mtlam.md.

        ``model``: num_classes, embed_dim, head_dropout, vsr_weight, asr_weight, fused_weight. ``memory``: levels,
        num_heads, num_slots, key_dim, scale, init_std, recon_weight, contrast_weight. The front-ends' own
        ``out_dim`` is ignored: both emit ``embed_dim``, as in ``LipReadingModel``."""
        spec_cls = {"dctcn": DCTCNConf, "mstcn": MSTCNConf}.get(temporal)
        if spec_cls is None:
            raise ValueError(f"temporal must be 'dctcn' or 'mstcn', got {temporal!r}")

        def spec(conf: Mapping[str, Any]) -> TemporalSpec:
            return spec_cls.model_validate(dict(conf))

        m, mem = dict(model), dict(memory)
        weights = LossWeights(cls_v=m.pop("vsr_weight", 1.0), cls_a=m.pop("asr_weight", 1.0),
                              cls_va=m.pop("fused_weight", 1.0), recon=mem.get("recon_weight", 1.0),
                              contrast=mem.get("contrast_weight", 1.0))

        def front(conf: Mapping[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in conf.items() if k != "out_dim"}

        return cls(**m, visual_frontend=front(visual_frontend), audio_frontend=front(audio_frontend),
                   temporal=spec(temporal_conf),
                   audio_temporal=spec(audio_temporal_conf) if audio_temporal_conf is not None else None,
                   memory=MTLAMMemoryConf.model_validate(mem), weights=weights)


# ---------------------------------------------------------------- the model
class ClipClassifier(nn.Module):
    """Mean over real frames -> dropout -> Linear (the DC-TCN/MS-TCN reference heads average over time)."""

    def __init__(self, dim: int, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(masked_time_mean(x, mask)))


class MTLAMLipReading(nn.Module):
    """Visual front -> visual temporal model with MTLAMs fused in -> classifier; in training also the audio front
    -> audio temporal model -> ASR classifier, and the same visual temporal model without memories (VSR loss)."""

    def __init__(self, visual: VisualFrontend, visual_tcn: TemporalModel, num_classes: int,
                 audio: AudioFrontend | None = None, audio_tcn: TemporalModel | None = None,
                 memories: dict[int, LipAudioMemory] | None = None, weights: LossWeights | None = None,
                 head_dropout: float = 0.0):
        super().__init__()
        memories = memories or {}
        if memories and (audio is None or audio_tcn is None):
            raise ValueError("memories need the audio front-end and audio temporal model (they store its features)")
        self.visual, self.visual_tcn, self.audio, self.audio_tcn = visual, visual_tcn, audio, audio_tcn
        self.levels = tuple(sorted(memories))
        self.memories = nn.ModuleDict({str(i): m for i, m in memories.items()})
        self.weights = weights or LossWeights()
        self.head = ClipClassifier(visual_tcn.level_dims[-1], num_classes, head_dropout)
        self.audio_head = ClipClassifier(audio_tcn.level_dims[-1], num_classes, head_dropout) if memories else None

    @classmethod
    def from_recipe(cls, recipe) -> MTLAMLipReading:
        """From an MTLAM recipe's validated component confs (model, front-ends, temporal, memory)."""
        return cls.from_config(MTLAMConfig.from_confs(
            recipe.model_conf, recipe.visual_frontend_conf, recipe.audio_frontend_conf, recipe.temporal,
            recipe.temporal_conf, recipe.memory_conf))

    @classmethod
    def from_config(cls, cfg: MTLAMConfig) -> MTLAMLipReading:
        levels = tuple(cfg.memory.levels)
        n = cfg.temporal.num_levels
        if len(set(levels)) != len(levels) or any(not 0 <= i <= n for i in levels):
            raise ValueError(f"memory levels must be distinct integers in 0..{n} (0 = after the front-ends, "
                             f"i = after temporal level i), got {list(levels)}")
        visual = VisualFrontend(**cfg.visual_frontend, out_dim=cfg.embed_dim)
        if not levels:  # the baseline: no audio, no memory
            return cls(visual, build_temporal_model(cfg.embed_dim, cfg.temporal), cfg.num_classes,
                       weights=cfg.weights, head_dropout=cfg.head_dropout)
        audio = AudioFrontend(**cfg.audio_frontend, out_dim=cfg.embed_dim)
        visual_tcn, audio_tcn = build_matched_towers(cfg.embed_dim, cfg.embed_dim, cfg.temporal, cfg.audio_temporal)
        dims = [cfg.embed_dim, *visual_tcn.level_dims]
        mem = cfg.memory
        memories = {i: LipAudioMemory(dims[i], mem.num_slots, mem.num_heads, mem.key_dim, mem.scale, mem.init_std)
                    for i in levels}
        return cls(visual, visual_tcn, cfg.num_classes, audio, audio_tcn, memories, cfg.weights, cfg.head_dropout)

    # ------------------------------------------------------------ streams
    def _visual_stream(self, f0: torch.Tensor, mask: torch.Tensor, audio_levels: list[torch.Tensor] | None,
                       use_memory: bool) -> tuple[torch.Tensor, dict[int, LevelMemoryOutput]]:
        """Level by level; after each memory level the recalled audio feature is added (fusion by summation)."""
        outs: dict[int, LevelMemoryOutput] = {}
        x = f0
        for i in range(self.visual_tcn.num_levels + 1):
            if i > 0:
                x = self.visual_tcn.level(i - 1, x, mask)
            if use_memory and i in self.levels:
                target = audio_levels[i] if audio_levels is not None else None
                outs[i] = self.memories[str(i)](x, target, mask)
                x = x + outs[i].recalled
        return x, outs

    def forward(self, video: torch.Tensor | Mapping[str, torch.Tensor], lengths: torch.Tensor | None = None,
                mask: torch.Tensor | None = None, mel: torch.Tensor | None = None,
                labels: torch.Tensor | None = None) -> dict[str, Any]:
        """Same call as ``LipReadingModel``: ``(video (B, T, 1, H, W) or (B, T, H, W), lengths, mask (B, T),
        mel (B, M, 4T) or None)``, or one batch mapping with ``video``, ``mask``, ``mel`` and ``label``/``labels``.

        Returns ``logits`` (the fused stream: the prediction used at inference), ``addressing`` {level: (B, T, h,
        N)} and ``memory`` {level: LevelMemoryOutput}; with ``mel`` (training) also ``logits_visual`` (no memory)
        and ``logits_audio``; with labels also ``loss`` (Eq. 6) and ``losses`` (the unweighted terms)."""
        if isinstance(video, Mapping):
            batch = video
            video, mask, mel = batch["video"], batch["mask"], batch.get("mel")
            labels = batch.get("labels", batch.get("label"))
        if mask is None:
            if lengths is None:
                raise ValueError("give a mask or lengths")
            mask = torch.arange(video.shape[1], device=video.device)[None, :] < \
                to_device_async(lengths, video.device)[:, None]
        if video.dim() == 4:  # (B, T, H, W): one grey channel
            video = video.unsqueeze(2)
        f0 = self.visual(video, mask, lengths)
        if not self.levels:
            out: dict[str, Any] = {"logits": self.head(self.visual_tcn(f0, mask)[-1], mask), "addressing": {},
                                   "memory": {}}
        else:
            audio_levels = None
            if mel is not None:
                a0 = self.audio(mel, mask)
                audio_levels = [a0, *self.audio_tcn(a0, mask)]
            fused, mems = self._visual_stream(f0, mask, audio_levels, use_memory=True)
            out = {"logits": self.head(fused, mask), "addressing": {i: m.addressing for i, m in mems.items()},
                   "memory": mems}
            if audio_levels is not None:
                out["logits_audio"] = self.audio_head(audio_levels[-1], mask)
                if self.weights.cls_v:
                    # the auxiliary visual-only pass must not move the BN statistics inference relies on
                    with self.visual_tcn.frozen_statistics():
                        plain, _ = self._visual_stream(f0, mask, None, use_memory=False)
                    out["logits_visual"] = self.head(plain, mask)
        if labels is not None:
            out["loss"], out["losses"] = loss_terms(out, labels, self.weights)
        return out


# ---------------------------------------------------------------- losses
def loss_terms(out: Mapping[str, Any], labels: torch.Tensor,
               weights: LossWeights = LossWeights()) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. 6 from a forward output. Terms (unweighted): ``cls_va`` (fused stream; the baseline's only term, named
    ``cls_v`` there), ``cls_v``, ``cls_a``, ``recon`` and ``contrast`` (summed over levels) and per level
    ``recon@i`` / ``contrast@i``."""
    ce = F.cross_entropy
    mems: dict[int, LevelMemoryOutput] = out.get("memory", {})
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


def mtlam_loss(out: Mapping[str, Any], labels: torch.Tensor,
               weights: LossWeights = LossWeights()) -> tuple[torch.Tensor, dict[str, float]]:
    """``losses.lipreading_loss``'s contract for the engine: (total, {term: float}) with ``total`` included."""
    total, terms = loss_terms(out, labels, weights)
    parts = {k: float(v.detach()) for k, v in terms.items()}
    parts["total"] = float(total.detach())
    return total, parts
