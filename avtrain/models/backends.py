"""Temporal back-ends: a sequence of frame features -> one clip vector (word lip reading), or -> a sequence of the
same length (sentence lip reading with CTC)."""

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
        y = packed_gru(self.gru, x, lengths)
        return y.sum(1) / to_device_async(lengths, y.device).to(y.dtype)[:, None]


class BiGRUSequence(BiGRUBackend):
    """The same GRU, its output kept per frame: (B, T, in) -> (B, T, 2 hidden), zeros past each length."""

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return packed_gru(self.gru, x, lengths)


def packed_gru(gru: nn.GRU, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """A batch-first GRU over each clip's real frames (host ``lengths``), zeros past each length."""
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    y, _ = gru(packed)
    return pad_packed_sequence(y, batch_first=True, total_length=x.shape[1])[0]
