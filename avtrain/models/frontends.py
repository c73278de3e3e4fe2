"""Modality embedding modules of the lip-reading model (supplementary Table 1), in plain torch.

Visual: Conv3d(1, 64, 5x7x7, stride 1x2x2) -> BN -> act -> MaxPool 1x3x3 -> 2D ResNet-18 trunk per frame -> average
pool -> (B, T, 512). Audio: two 3x3 stride-2 convs (128, 256) -> one residual block -> flatten (M/4 * 256) -> Linear
-> (B, T, 512) from an (M, 4T) mel spectrogram, so both sequences have T steps.

Padded frames are dropped before every 2D batch-norm of the visual path (by index, from host-side lengths when
given: no device sync), so clip padding does not leak into the batch statistics.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from avtrain.models.masked import real_frame_index


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.down is None else self.down(x)))


class ResNetTrunk(nn.Module):
    """The four stages of a 2D ResNet (ResNet-18: 2 blocks each), first stage stride 1, the others stride 2."""

    def __init__(self, cin: int, widths: list[int], blocks: list[int]):
        super().__init__()
        layers = []
        for i, (w, n) in enumerate(zip(widths, blocks)):
            for j in range(n):
                layers.append(BasicBlock(cin, w, 2 if (i > 0 and j == 0) else 1))
                cin = w
        self.layers = nn.Sequential(*layers)
        self.out_channels = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).mean(dim=(2, 3))


class VisualFrontend(nn.Module):
    def __init__(
        self,
        in_channels: int = 1,
        stem_channels: int = 64,
        widths: list[int] | None = None,
        blocks: list[int] | None = None,
        out_dim: int = 512,
        activation: str = "prelu",
    ):
        super().__init__()
        widths = widths or [64, 128, 256, 512]
        blocks = blocks or [2, 2, 2, 2]
        self.stem = nn.Conv3d(in_channels, stem_channels, (5, 7, 7), (1, 2, 2), (2, 3, 3), bias=False)
        self.stem_bn = nn.BatchNorm2d(stem_channels)  # per-frame BN == BN3d over real frames only
        self.act = nn.PReLU(stem_channels) if activation == "prelu" else nn.ReLU()
        self.trunk = ResNetTrunk(stem_channels, widths, blocks)
        self.proj = nn.Linear(self.trunk.out_channels, out_dim) if self.trunk.out_channels != out_dim else None
        self.out_dim = out_dim

    def forward(self, video: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """video (B, T, C, H, W), mask (B, T) -> (B, T, out_dim), zeros on padded frames. ``lengths`` on the host
        (as the engine passes them) spares a device sync when picking the real frames."""
        b, t = video.shape[:2]
        idx = real_frame_index(mask, lengths)
        x = self.stem(video.transpose(1, 2))  # (B, C', T, H', W')
        x = x.transpose(1, 2).flatten(0, 1).index_select(0, idx)  # (n_real, C', H', W')
        x = self.act(self.stem_bn(x))
        x = F.max_pool2d(x, 3, 2, 1)
        x = self.trunk(x)
        if self.proj is not None:
            x = self.proj(x)
        return x.new_zeros(b * t, x.shape[-1]).index_copy(0, idx, x).view(b, t, -1)


class AudioFrontend(nn.Module):
    def __init__(self, n_mels: int = 80, channels: list[int] | None = None, residual_blocks: int = 1,
                 out_dim: int = 512):
        super().__init__()
        c1, c2 = channels or [128, 256]
        if n_mels % 4:
            raise ValueError(f"n_mels must be divisible by 4 (two stride-2 convs), got {n_mels}")
        self.convs = nn.Sequential(
            nn.Conv2d(1, c1, 3, 2, 1, bias=False), nn.BatchNorm2d(c1), nn.ReLU(),
            nn.Conv2d(c1, c2, 3, 2, 1, bias=False), nn.BatchNorm2d(c2), nn.ReLU(),
            *[BasicBlock(c2, c2, 1) for _ in range(residual_blocks)],
        )
        self.fc = nn.Linear(c2 * n_mels // 4, out_dim)
        self.out_dim = out_dim

    def forward(self, mel: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """mel (B, M, 4T) -> (B, T, out_dim), zeros on padded frames."""
        x = self.convs(mel.unsqueeze(1))  # (B, C, M/4, T)
        b, c, m, t = x.shape
        x = self.fc(x.permute(0, 3, 1, 2).reshape(b, t, c * m))
        return x * mask[:, :t, None].to(x.dtype)
