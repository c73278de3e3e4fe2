"""Temporal back-ends: sequence of frame features -> one clip vector."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from avtrain.models.masked import to_device_async


class BiGRUBackend(nn.Module):
    """2-layer bidirectional GRU over the real frames, then the mean over time (the official code's pooling)."""

    def __init__(self, in_dim: int, hidden: int = 512, layers: int = 2, dropout: float = 0.0):
        super().__init__()
        self.gru = nn.GRU(in_dim, hidden, layers, batch_first=True, bidirectional=True, dropout=dropout)
        self.out_dim = 2 * hidden

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        y, _ = self.gru(packed)
        y, _ = pad_packed_sequence(y, batch_first=True, total_length=x.shape[1])  # zeros past each length
        return y.sum(1) / to_device_async(lengths, y.device).to(y.dtype)[:, None]
