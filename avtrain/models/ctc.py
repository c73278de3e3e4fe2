"""Sentence lip reading with CTC (LipNet's objective, Assael et al. 2016): the word model's visual front and a
bidirectional GRU kept per frame, then per-frame scores over the characters and CTC's blank (class 0)."""

from __future__ import annotations

import torch
from torch import nn

from avtrain.models.backends import BiGRUSequence
from avtrain.models.frontends import VisualFrontend


class SentenceLipReader(nn.Module):
    def __init__(self, visual: VisualFrontend, encoder: BiGRUSequence, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.visual, self.encoder = visual, encoder
        self.drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(encoder.out_dim, num_classes)

    @classmethod
    def build(cls, num_classes: int, embed_dim: int, visual_frontend: dict, backend: dict,
              dropout: float = 0.0) -> SentenceLipReader:
        front = {k: v for k, v in visual_frontend.items() if k != "out_dim"}
        visual = VisualFrontend(**front, out_dim=embed_dim)
        encoder = BiGRUSequence(embed_dim, backend["hidden"], backend["layers"], backend["dropout"])
        return cls(visual, encoder, num_classes, dropout)

    def forward(self, video: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """video (B, T, 1, H, W), host lengths (B,), mask (B, T) -> per-frame logits (B, T, classes)."""
        feats = self.visual(video, mask, lengths)
        with torch.autocast(feats.device.type, enabled=False):  # the GRU in fp32, as the word model's
            return self.classifier(self.drop(self.encoder(feats.float(), lengths)))
