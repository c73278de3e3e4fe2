"""CBHG (Wang et al. 2017, Tacotron, Sec. 3.1 and Table 1's post-processing net), the two-tower model's post-net.

Conv1D bank K = 8 (kernels 1..8, 128 channels each, ReLU, BN) -> max-pool width 2 stride 1 -> conv projections
conv-3-256-ReLU then conv-3-{in_dim}-linear (BN after each) -> residual add of the input -> a Linear to the highway
width (Keith Ito's Tacotron code; the paper leaves the size change implicit) -> 4 highway layers FC-128-ReLU ->
BiGRU 128 per direction -> a Linear to the output bins (mel in, linear-scale spectrogram out).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


class Highway(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.h = nn.Linear(dim, dim)
        self.t = nn.Linear(dim, dim)
        nn.init.constant_(self.t.bias, -1.0)  # start close to the identity (carry), as Tacotron's code does

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.t(x))
        return gate * F.relu(self.h(x)) + (1 - gate) * x


class _ConvBN(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, act: bool):
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, kernel, padding=kernel // 2, bias=False)
        self.bn = nn.BatchNorm1d(cout)
        self.act, self.kernel = act, kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)[..., : x.shape[-1]]  # even kernels give one extra frame; keep the first L ("same")
        y = F.relu(y) if self.act else y
        return self.bn(y)


class CBHG(nn.Module):
    def __init__(self, in_dim: int = 80, out_dim: int = 401, bank_size: int = 8, bank_channels: int = 128,
                 projections: tuple[int, int] = (256, 80), highway_layers: int = 4, highway_dim: int = 128,
                 gru_dim: int = 128):
        super().__init__()
        if projections[-1] != in_dim:
            projections = (*projections[:-1], in_dim)  # the residual add needs the input's width
        self.bank = nn.ModuleList(_ConvBN(in_dim, bank_channels, k, True) for k in range(1, bank_size + 1))
        sizes = [bank_size * bank_channels, *projections]
        self.projections = nn.ModuleList(
            _ConvBN(a, b, 3, i < len(projections) - 1) for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))
        )
        self.pre_highway = nn.Linear(in_dim, highway_dim, bias=False)
        self.highways = nn.Sequential(*[Highway(highway_dim) for _ in range(highway_layers)])
        self.gru = nn.GRU(highway_dim, gru_dim, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * gru_dim, out_dim)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, in_dim, L) -> (B, out_dim, L); ``lengths`` (B,) in frames keeps the GRU off the padding."""
        y = torch.cat([conv(x) for conv in self.bank], 1)
        y = F.max_pool1d(F.pad(y, (0, 1), mode="replicate"), 2, 1)  # width 2, stride 1, length kept
        for conv in self.projections:
            y = conv(y)
        y = self.highways(self.pre_highway((y + x).transpose(1, 2)))
        with torch.autocast(x.device.type, enabled=False):
            y = y.float()
            if lengths is not None:
                packed = pack_padded_sequence(y, lengths.cpu(), batch_first=True, enforce_sorted=False)
                y, _ = self.gru(packed)
                y, _ = pad_packed_sequence(y, batch_first=True, total_length=x.shape[-1])
            else:
                y, _ = self.gru(y)
        return self.out(y).transpose(1, 2)
