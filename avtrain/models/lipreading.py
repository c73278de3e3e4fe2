"""Word-level lip reading with the associative bridge (Sec. 4.1, supplementary Table 1).

Training (N > 0):  f_src = visual(video), f_tgt = audio(mel), v_tgt = memory recall(f_src);
logits_recall = cls(back(h(f_src ⊕ v_tgt))) and logits_audio = cls(back(h(f_src ⊕ f_tgt))), with one fusion
layer h (Dropout 0.5 + Linear 2C -> C), one back-end and one classifier shared by both paths (Eq. 7).
Inference uses video only: logits = logits_recall. N = 0 is the baseline: back-end on f_src, no audio at all.
With ``boundary`` (not in the paper; Ma et al. 2022) each frame's back-end input also carries a word-boundary
indicator, 1 on the word's frames and 0 on the context frames around it.
"""

from __future__ import annotations

import torch
from torch import nn

from avtrain.models.backends import BiGRUBackend
from avtrain.models.frontends import AudioFrontend, VisualFrontend
from avtrain.models.memory import AssociativeBridge, BridgeOutput


class LipReadingModel(nn.Module):
    def __init__(self, visual: VisualFrontend, audio: AudioFrontend | None, memory: AssociativeBridge | None,
                 backend: BiGRUBackend, num_classes: int, fusion_dropout: float = 0.5, boundary: bool = False):
        super().__init__()
        self.visual, self.audio, self.memory, self.backend = visual, audio, memory, backend
        self.boundary = boundary
        dim = visual.out_dim
        self.fusion = None
        if memory is not None:
            self.fusion = nn.Sequential(nn.Dropout(fusion_dropout), nn.Linear(2 * dim, dim))
        self.classifier = nn.Linear(backend.out_dim, num_classes)

    @classmethod
    def build(cls, num_classes: int, embed_dim: int, visual_frontend: dict, audio_frontend: dict, memory: dict,
              backend: dict, fusion_dropout: float = 0.5, boundary: bool = False) -> LipReadingModel:
        """From plain keywords: ``visual_frontend`` / ``audio_frontend`` of the front-ends but ``out_dim`` (both emit
        ``embed_dim``), ``memory`` (num_slots, scale, variant, init_std; num_slots 0 = the baseline without audio
        and memory), ``backend`` (hidden, layers, dropout), ``boundary``: the back end also reads the word-boundary
        indicator (one more input feature)."""
        front = {k: v for k, v in visual_frontend.items() if k != "out_dim"}
        visual = VisualFrontend(**front, out_dim=embed_dim)
        audio = bridge = None
        if memory["num_slots"] > 0:
            a = audio_frontend
            audio = AudioFrontend(a["n_mels"], a["channels"], a["residual_blocks"], embed_dim)
            bridge = AssociativeBridge(memory["num_slots"], embed_dim, embed_dim, memory["scale"], memory["variant"],
                                       memory["init_std"])
        head = BiGRUBackend(embed_dim + int(boundary), backend["hidden"], backend["layers"], backend["dropout"])
        return cls(visual, audio, bridge, head, num_classes, fusion_dropout, boundary)

    def _classify(self, feats: torch.Tensor, lengths: torch.Tensor, boundary: torch.Tensor | None) -> torch.Tensor:
        # the GRU runs in fp32 even under bf16 autocast: it is cheap here, and bf16 RNN support varies by backend
        with torch.autocast(feats.device.type, enabled=False):
            feats = feats.float()
            if self.boundary:
                feats = torch.cat([feats, boundary[..., None].float()], -1)
            return self.classifier(self.backend(feats, lengths))

    def forward(self, video: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor,
                mel: torch.Tensor | None = None, boundary: torch.Tensor | None = None) -> dict:
        """Returns ``logits`` (video-only prediction), and with ``mel``: ``logits_audio``, ``audio_features`` (the
        real audio features f_tgt the memory's recall stands in for) and ``bridge`` (a :class:`BridgeOutput` with the
        memory losses and addressing vectors). ``boundary`` (B, T): the word-boundary indicator, required by a model
        built with ``boundary``."""
        if self.boundary and boundary is None:
            raise ValueError("this model reads a word-boundary indicator (model_conf.boundary) and got none")
        f_src = self.visual(video, mask, lengths)
        if self.memory is None:
            return {"logits": self._classify(f_src, lengths, boundary)}
        f_tgt = self.audio(mel, mask) if (mel is not None and self.audio is not None) else None
        bridge: BridgeOutput = self.memory(f_src, f_tgt, mask)
        out = {"logits": self._classify(self.fusion(torch.cat([f_src, bridge.recalled], -1)), lengths, boundary),
               "bridge": bridge}
        if f_tgt is not None:
            out["audio_features"] = f_tgt
            out["logits_audio"] = self._classify(self.fusion(torch.cat([f_src, f_tgt], -1)), lengths, boundary)
        return out
