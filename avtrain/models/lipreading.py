"""Word-level lip reading with the associative bridge (Sec. 4.1, supplementary Table 1).

Training (N > 0):  f_src = visual(video), f_tgt = audio(mel), v_tgt = memory recall(f_src);
logits_recall = cls(back(h(f_src ⊕ v_tgt))) and logits_audio = cls(back(h(f_src ⊕ f_tgt))), with one fusion
layer h (Dropout 0.5 + Linear 2C -> C), one back-end and one classifier shared by both paths (Eq. 7).
Inference uses video only: logits = logits_recall. N = 0 is the baseline: back-end on f_src, no audio at all.
"""

from __future__ import annotations

import torch
from torch import nn

from avtrain.models.backends import BiGRUBackend
from avtrain.models.frontends import AudioFrontend, VisualFrontend
from avtrain.models.memory import AssociativeBridge, BridgeOutput


class LipReadingModel(nn.Module):
    def __init__(self, visual: VisualFrontend, audio: AudioFrontend | None, memory: AssociativeBridge | None,
                 backend: BiGRUBackend, num_classes: int, fusion_dropout: float = 0.5):
        super().__init__()
        self.visual, self.audio, self.memory, self.backend = visual, audio, memory, backend
        dim = visual.out_dim
        self.fusion = None
        if memory is not None:
            self.fusion = nn.Sequential(nn.Dropout(fusion_dropout), nn.Linear(2 * dim, dim))
        self.classifier = nn.Linear(backend.out_dim, num_classes)

    @classmethod
    def from_recipe(cls, recipe) -> LipReadingModel:
        mc, vc, ac = recipe.conf("model"), recipe.conf("visual_frontend"), recipe.conf("audio_frontend")
        mem, bc = recipe.conf("memory"), recipe.conf("backend")
        visual = VisualFrontend(vc.in_channels, vc.stem_channels, vc.widths, vc.blocks, mc.embed_dim, vc.activation)
        audio = memory = None
        if mem.num_slots > 0:
            audio = AudioFrontend(ac.n_mels, ac.channels, ac.residual_blocks, mc.embed_dim)
            memory = AssociativeBridge(mem.num_slots, mc.embed_dim, mc.embed_dim, mem.scale, mem.variant, mem.init_std)
        backend = BiGRUBackend(mc.embed_dim, bc.hidden, bc.layers, bc.dropout)
        return cls(visual, audio, memory, backend, mc.num_classes, mc.fusion_dropout)

    def _classify(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        # the GRU runs in fp32 even under bf16 autocast: it is cheap here, and bf16 RNN support varies by backend
        with torch.autocast(feats.device.type, enabled=False):
            return self.classifier(self.backend(feats.float(), lengths))

    def forward(self, video: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor,
                mel: torch.Tensor | None = None) -> dict:
        """Returns ``logits`` (video-only prediction), and in training with ``mel``: ``logits_audio`` and
        ``bridge`` (a :class:`BridgeOutput` with the memory losses and addressing vectors)."""
        f_src = self.visual(video, mask, lengths)
        if self.memory is None:
            return {"logits": self._classify(f_src, lengths)}
        f_tgt = self.audio(mel, mask) if (mel is not None and self.audio is not None) else None
        bridge: BridgeOutput = self.memory(f_src, f_tgt, mask)
        out = {"logits": self._classify(self.fusion(torch.cat([f_src, bridge.recalled], -1)), lengths),
               "bridge": bridge}
        if f_tgt is not None:
            out["logits_audio"] = self._classify(self.fusion(torch.cat([f_src, f_tgt], -1)), lengths)
        return out
