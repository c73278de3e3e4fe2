"""A frame-synchronous, non-autoregressive mel decoder for the bridging speech model (``decoder: aligned``).

An extension, not the paper's model (the paper decodes with Tacotron 2, avtrain/models/tacotron.py). Video and audio
are synchronous by construction (exactly ``r`` = 4 mel frames per video frame), so nothing has to be aligned or fed
back: the fused sequence (B, T, D) passes 1D convolutions over time and a BiGRU (context on both sides), is upsampled
r times by a transposed convolution (stride r, kernel r: each video frame gives its own r mel frames), refined by one
more 1D convolution at the mel rate, projected to the mel bins, and Tacotron 2's post-net adds its residual. Training
and inference compute exactly the same function of the video (no teacher forcing, no exposure bias), as later
video-to-speech work does for the same reason (docs/speech.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from avtrain.models.tacotron import Postnet


class AlignedDecoder(nn.Module):
    teacher_forced = False  # never reads the target mel: training decodes what inference decodes

    def __init__(self, memory_dim: int, n_mels: int = 80, frames_per_step: int = 4, channels: int = 256,
                 conv_layers: int = 2, kernel: int = 5, gru_layers: int = 1, dropout: float = 0.1,
                 postnet_channels: int = 512, postnet_kernel: int = 5, postnet_layers: int = 5,
                 postnet_dropout: float = 0.5):
        super().__init__()
        self.n_mels, self.r, self.dropout = n_mels, frames_per_step, dropout
        sizes = [memory_dim] + [channels] * conv_layers
        self.convs = nn.ModuleList(
            nn.Sequential(nn.Conv1d(a, b, kernel, padding=kernel // 2), nn.BatchNorm1d(b), nn.ReLU())
            for a, b in zip(sizes[:-1], sizes[1:]))
        self.gru = nn.GRU(sizes[-1], channels // 2, gru_layers, batch_first=True, bidirectional=True,
                          dropout=dropout if gru_layers > 1 else 0.0) if gru_layers else None
        width = channels if gru_layers else sizes[-1]
        self.upsample = nn.ConvTranspose1d(width, channels, frames_per_step, stride=frames_per_step)
        self.refine = nn.Sequential(nn.Conv1d(channels, channels, kernel, padding=kernel // 2),
                                    nn.BatchNorm1d(channels), nn.ReLU())
        self.projection = nn.Conv1d(channels, n_mels, 1)
        self.postnet = Postnet(n_mels, postnet_channels, postnet_kernel, postnet_layers, postnet_dropout)
        # the post-net's residual starts at zero (its last BatchNorm's scale 0): a random residual of unit variance
        # on every bin would otherwise have to be unlearnt first (measured: it doubled the post-net output's error
        # on the synthetic bar task after 300 steps)
        nn.init.zeros_(self.postnet.convs[-1][1].weight)

    def forward(self, memory: torch.Tensor, mask: torch.Tensor | None = None,
                target: torch.Tensor | None = None, lengths: torch.Tensor | None = None
                ) -> dict[str, torch.Tensor | None]:
        """memory (B, T, E), mask (B, T) True on real frames, host ``lengths`` (B,) (from the mask when None: a
        device sync); ``target`` is accepted for the decoder interface and not read (nothing is teacher-forced).
        Returns ``mel``, ``mel_post`` (B, n_mels, r T), ``alignments`` None."""
        b, t, _ = memory.shape
        keep = (mask if mask is not None else memory.new_ones(b, t, dtype=torch.bool))[:, None].to(memory.dtype)
        x = memory.transpose(1, 2) * keep  # (B, E, T); padded frames zeroed so they do not leak into the convs
        for conv in self.convs:
            x = F.dropout(conv(x), self.dropout, self.training) * keep
        if self.gru is not None:
            if lengths is None or lengths.device.type != "cpu":
                lengths = keep[:, 0].sum(1).long()
            packed = pack_padded_sequence(x.transpose(1, 2).float(), lengths.clamp(min=1).cpu(), batch_first=True,
                                          enforce_sorted=False)
            with torch.autocast(x.device.type, enabled=False):
                y, _ = self.gru(packed)
            x = pad_packed_sequence(y, batch_first=True, total_length=t)[0].transpose(1, 2).to(x.dtype)
        x = self.upsample(x)  # (B, C, r T)
        keep_r = keep.repeat_interleave(self.r, dim=2)
        x = self.refine(x * keep_r) * keep_r
        mel = self.projection(x)
        return {"mel": mel, "mel_post": self.postnet(mel), "alignments": None}
