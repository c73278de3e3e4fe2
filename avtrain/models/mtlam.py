"""Multi-Temporal Lip-Audio Memory (MTLAM): multi-level visual-to-audio memories and the lip-reading model around them.

Per chosen level i (Sec. 2.3): h key memories M_k,i (h, N, K) and one value memory M_v,i (N, D). The visual feature
of level i is embedded per head (W_q, the embedding matrix of Eq. 2), each head addresses its key memory with
softmax(r * cos) (Eq. 2, the same addressing as ``memory.AssociativeBridge``), each head recalls A_k^j M_v from the
shared value memory (Eq. 3), the aggregation layer W_a (hD -> D) merges the h recalls into one audio feature, and
that feature is added to the visual feature (fusion by summation) before the next visual level.

Each memory computes its own terms (Sec. 2.4): reconstruction 1 - cos(recalled, audio feature) over real frames with
the audio feature detached (MVM's form; the paper's Eq. 4 is not legible), and the value-slot term
0.5 * sum |I - V V^T| over L2-normalised value slots (MVM's "contrastive" term). The task (avtrain/tasks/lipreading)
weighs them with the VSR loss on the visual stream without memory, the ASR loss on the audio stream and the loss on
the fused stream (Eq. 6).

Levels are numbered as in Table 1: level i >= 1 is the output of temporal level i (MTLAM#i), level 0 the
front-end output (MVM's extra placement). ``levels=()`` is the baseline: visual front, visual temporal model,
classifier, cross-entropy; no audio path and no memory parameters.

With ``boundary`` (not in the paper; Ma et al. 2022) a learned vector is added to the front-end feature of each frame
the word-boundary indicator marks (1 on the word's frames, 0 on context). Under the temporal model's first
(linear) convolution that is concatenating the indicator as one more input channel, but it keeps the level-0 width
at embed_dim, which the audio features a level-0 memory stores share.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from avtrain.models.frontends import AudioFrontend, VisualFrontend
from avtrain.models.masked import masked_mean, masked_time_mean, to_device_async
from avtrain.models.tcn import TemporalModel, TemporalSpec, build_matched_towers, build_temporal_model


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
                 memories: dict[int, LipAudioMemory] | None = None, visual_pass: bool = True,
                 head_dropout: float = 0.0, boundary: bool = False):
        """``visual_pass``: in training, also run the visual stream without memories (the VSR term's prediction);
        a task that does not weigh that term spares the pass. ``boundary``: the model reads a word-boundary
        indicator (module docstring)."""
        super().__init__()
        memories = memories or {}
        if memories and (audio is None or audio_tcn is None):
            raise ValueError("memories need the audio front-end and audio temporal model (they store its features)")
        self.visual, self.visual_tcn, self.audio, self.audio_tcn = visual, visual_tcn, audio, audio_tcn
        self.levels = tuple(sorted(memories))
        self.memories = nn.ModuleDict({str(i): m for i, m in memories.items()})
        self.visual_pass = visual_pass
        self.head = ClipClassifier(visual_tcn.level_dims[-1], num_classes, head_dropout)
        self.audio_head = ClipClassifier(audio_tcn.level_dims[-1], num_classes, head_dropout) if memories else None
        # zeros: the model starts as the one without the indicator
        self.boundary_embed = nn.Parameter(torch.zeros(visual.out_dim)) if boundary else None

    @classmethod
    def build(cls, num_classes: int, embed_dim: int, visual_frontend: dict[str, Any], audio_frontend: dict[str, Any],
              temporal: TemporalSpec, levels: tuple[int, ...], memory: dict[str, Any],
              audio_temporal: TemporalSpec | None = None, visual_pass: bool = True,
              head_dropout: float = 0.0, boundary: bool = False) -> MTLAMLipReading:
        """Front-ends (``VisualFrontend`` / ``AudioFrontend`` keywords but ``out_dim``: both emit ``embed_dim``), the
        temporal model(s), one :class:`LipAudioMemory` per level in ``levels`` (``memory``: its num_slots,
        num_heads, key_dim, scale, init_std); ``levels=()`` is the baseline without audio and memory."""
        levels = tuple(levels)
        n = temporal.num_levels
        if len(set(levels)) != len(levels) or any(not 0 <= i <= n for i in levels):
            raise ValueError(f"memory levels must be distinct integers in 0..{n} (0 = after the front-ends, "
                             f"i = after temporal level i), got {list(levels)}")
        visual = VisualFrontend(**visual_frontend, out_dim=embed_dim)
        if not levels:  # the baseline: no audio, no memory
            return cls(visual, build_temporal_model(embed_dim, temporal), num_classes, visual_pass=visual_pass,
                       head_dropout=head_dropout, boundary=boundary)
        audio = AudioFrontend(**audio_frontend, out_dim=embed_dim)
        visual_tcn, audio_tcn = build_matched_towers(embed_dim, embed_dim, temporal, audio_temporal)
        dims = [embed_dim, *visual_tcn.level_dims]
        memories = {i: LipAudioMemory(dims[i], memory["num_slots"], memory["num_heads"], memory.get("key_dim"),
                                      memory.get("scale", 16.0), memory.get("init_std", 0.5)) for i in levels}
        return cls(visual, visual_tcn, num_classes, audio, audio_tcn, memories, visual_pass, head_dropout, boundary)

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

    def forward(self, video: torch.Tensor, lengths: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                mel: torch.Tensor | None = None, boundary: torch.Tensor | None = None) -> dict[str, Any]:
        """Same call as ``LipReadingModel``: video (B, T, 1, H, W) or (B, T, H, W), host ``lengths``, mask (B, T),
        mel (B, M, 4T) or None, ``boundary`` (B, T) the indicator a model built with ``boundary`` requires.

        Returns ``logits`` (the fused stream: the prediction used at inference), ``addressing`` {level: (B, T, h,
        N)} and ``memory`` {level: LevelMemoryOutput, with its loss terms}; with ``mel`` (training) also
        ``logits_visual`` (no memory; with ``visual_pass``) and ``logits_audio``."""
        if mask is None:
            if lengths is None:
                raise ValueError("give a mask or lengths")
            mask = torch.arange(video.shape[1], device=video.device)[None, :] < \
                to_device_async(lengths, video.device)[:, None]
        if video.dim() == 4:  # (B, T, H, W): one grey channel
            video = video.unsqueeze(2)
        if self.boundary_embed is not None and boundary is None:
            raise ValueError("this model reads a word-boundary indicator (model_conf.boundary) and got none")
        f0 = self.visual(video, mask, lengths)
        if self.boundary_embed is not None:
            f0 = f0 + boundary[..., None].to(f0.dtype) * self.boundary_embed
        if not self.levels:
            return {"logits": self.head(self.visual_tcn(f0, mask)[-1], mask), "addressing": {}, "memory": {}}
        audio_levels = None
        if mel is not None:
            a0 = self.audio(mel, mask)
            audio_levels = [a0, *self.audio_tcn(a0, mask)]
        fused, mems = self._visual_stream(f0, mask, audio_levels, use_memory=True)
        out = {"logits": self.head(fused, mask), "addressing": {i: m.addressing for i, m in mems.items()},
               "memory": mems}
        if audio_levels is not None:
            out["logits_audio"] = self.audio_head(audio_levels[-1], mask)
            if self.visual_pass:
                # the auxiliary visual-only pass must not move the BN statistics inference relies on
                with self.visual_tcn.frozen_statistics():
                    plain, _ = self._visual_stream(f0, mask, None, use_memory=False)
                out["logits_visual"] = self.head(plain, mask)
        return out
