"""Tacotron 2's decoder (Shen et al. 2018), the back-end of the bridging speech model (Kim et al. 2021, Sec. 4.2.2).

Prenet (2 x Linear-ReLU, dropout 0.5 kept on at inference, as Tacotron 2 does for output variation), attention LSTM,
location-sensitive attention over the encoder sequence, decoder LSTM, a linear projection to ``r`` mel frames per
step, and a 5-layer convolutional post-net whose output is added to the decoder's (residual).

The output length is known (r frames per encoder step, r = 4 for 100 fps mel under 25 fps video), so the decoder
runs exactly T steps and has no stop-token head. Step t's prenet input is the last mel frame of step t - 1 (ground
truth under teacher forcing, its own prediction when free-running; zeros at t = 0).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Prenet(nn.Module):
    def __init__(self, in_dim: int, dims: tuple[int, ...] = (256, 256), dropout: float = 0.5):
        super().__init__()
        sizes = [in_dim, *dims]
        self.layers = nn.ModuleList(nn.Linear(a, b, bias=False) for a, b in zip(sizes[:-1], sizes[1:]))
        self.dropout, self.out_dim = dropout, sizes[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = F.dropout(F.relu(layer(x)), self.dropout, training=True)  # on at inference too (Tacotron 2)
        return x


class LocationSensitiveAttention(nn.Module):
    """Additive attention whose energies also see conv features of the previous and cumulative weights."""

    def __init__(self, query_dim: int, memory_dim: int, attn_dim: int = 128, filters: int = 32, kernel: int = 31):
        super().__init__()
        self.query = nn.Linear(query_dim, attn_dim, bias=False)
        self.memory = nn.Linear(memory_dim, attn_dim, bias=False)
        self.location_conv = nn.Conv1d(2, filters, kernel, padding=(kernel - 1) // 2, bias=False)
        self.location_dense = nn.Linear(filters, attn_dim, bias=False)
        self.v = nn.Linear(attn_dim, 1, bias=False)

    def forward(self, query: torch.Tensor, processed_memory: torch.Tensor, memory: torch.Tensor,
                weights_cat: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """query (B, Q), memory (B, T, E), weights_cat (B, 2, T) -> context (B, E), weights (B, T)."""
        location = self.location_dense(self.location_conv(weights_cat).transpose(1, 2))
        energies = self.v(torch.tanh(self.query(query)[:, None] + location + processed_memory)).squeeze(-1)
        if mask is not None:
            energies = energies.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(energies, dim=1)
        return torch.bmm(weights[:, None], memory).squeeze(1), weights


class Postnet(nn.Module):
    """5 x (Conv1d k5 - BN - tanh - dropout), the last one linear; predicts a residual added to the mel."""

    def __init__(self, n_mels: int, channels: int = 512, kernel: int = 5, layers: int = 5, dropout: float = 0.5):
        super().__init__()
        sizes = [n_mels] + [channels] * (layers - 1) + [n_mels]
        self.convs = nn.ModuleList(
            nn.Sequential(nn.Conv1d(a, b, kernel, padding=(kernel - 1) // 2), nn.BatchNorm1d(b))
            for a, b in zip(sizes[:-1], sizes[1:])
        )
        self.dropout = dropout

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = mel
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if i < len(self.convs) - 1:
                x = torch.tanh(x)
            x = F.dropout(x, self.dropout, self.training)
        return mel + x


class TacotronDecoder(nn.Module):
    teacher_forced = True  # training feeds the true previous frames; inference feeds its own

    def __init__(self, memory_dim: int, n_mels: int = 80, frames_per_step: int = 4,
                 prenet_dims: tuple[int, ...] = (256, 256), attention_rnn: int = 1024, decoder_rnn: int = 1024,
                 attention_dim: int = 128, location_filters: int = 32, location_kernel: int = 31,
                 attention_dropout: float = 0.1, decoder_dropout: float = 0.1, postnet_channels: int = 512,
                 postnet_kernel: int = 5, postnet_layers: int = 5):
        super().__init__()
        self.n_mels, self.r = n_mels, frames_per_step
        self.prenet = Prenet(n_mels, tuple(prenet_dims))
        self.attention_rnn = nn.LSTMCell(self.prenet.out_dim + memory_dim, attention_rnn)
        self.attention = LocationSensitiveAttention(attention_rnn, memory_dim, attention_dim, location_filters,
                                                    location_kernel)
        self.decoder_rnn = nn.LSTMCell(attention_rnn + memory_dim, decoder_rnn)
        self.projection = nn.Linear(decoder_rnn + memory_dim, n_mels * frames_per_step)
        self.postnet = Postnet(n_mels, postnet_channels, postnet_kernel, postnet_layers)
        self.attention_dropout, self.decoder_dropout = attention_dropout, decoder_dropout

    def forward(self, memory: torch.Tensor, mask: torch.Tensor | None = None,
                target: torch.Tensor | None = None, lengths: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """memory (B, T, E); target (B, n_mels, r T) for teacher forcing, None to run free; ``lengths`` is accepted
        for the decoder interface (the mask says which frames are real).

        Returns ``mel`` and ``mel_post`` (B, n_mels, r T) and ``alignments`` (B, T steps, T memory).
        """
        # fp32 throughout: 4T recurrent steps with cumulative attention weights drift under bf16
        with torch.autocast(memory.device.type, enabled=False):
            return self._run(memory.float(), mask, None if target is None else target.float())

    def _run(self, memory: torch.Tensor, mask: torch.Tensor | None, target: torch.Tensor | None) -> dict:
        b, steps, _ = memory.shape
        r = self.r
        processed = self.attention.memory(memory)
        h_att = memory.new_zeros(b, self.attention_rnn.hidden_size)
        c_att = torch.zeros_like(h_att)
        h_dec = memory.new_zeros(b, self.decoder_rnn.hidden_size)
        c_dec = torch.zeros_like(h_dec)
        weights = memory.new_zeros(b, steps)
        cumulative = torch.zeros_like(weights)
        context = memory.new_zeros(b, memory.shape[-1])
        if target is not None:
            last = target[:, :, r - 1 :: r][:, :, :steps].transpose(1, 2)  # last frame of each step, (B, T, M)
            inputs = torch.cat([memory.new_zeros(b, 1, self.n_mels), last[:, :-1]], 1)
            prenet_all = self.prenet(inputs)
        frame = memory.new_zeros(b, self.n_mels)
        outputs, alignments = [], []
        for t in range(steps):
            x = prenet_all[:, t] if target is not None else self.prenet(frame)
            h_att, c_att = self.attention_rnn(torch.cat([x, context], -1), (h_att, c_att))
            h_att = F.dropout(h_att, self.attention_dropout, self.training)
            context, weights = self.attention(h_att, processed, memory,
                                              torch.stack([weights, cumulative], 1), mask)
            cumulative = cumulative + weights
            h_dec, c_dec = self.decoder_rnn(torch.cat([h_att, context], -1), (h_dec, c_dec))
            h_dec = F.dropout(h_dec, self.decoder_dropout, self.training)
            out = self.projection(torch.cat([h_dec, context], -1)).view(b, r, self.n_mels)
            outputs.append(out)
            alignments.append(weights)
            frame = out[:, -1].detach() if target is None else frame
        mel = torch.cat(outputs, 1).transpose(1, 2)  # (B, M, r T)
        return {"mel": mel, "mel_post": self.postnet(mel), "alignments": torch.stack(alignments, 1)}
