"""Temporal models for MTLAM: DC-TCN and MS-TCN, run level by level, with receptive fields from Eq. 1.

A *level* is one DC-TCN dense block (with the transition after it) or one MS-TCN temporal block; MTLAM reads the
visual and audio features after a level and fuses recalled audio into the visual stream before the next one, so
both towers expose ``level(i, x, mask)`` besides ``forward``.

Every convolution is non-causal with symmetric padding (the reference code's symmetric chomp), so output frame t
sees frames [t - (R-1)/2, t + (R-1)/2] and the features stay centred on their input frame. Batch norm runs over real
frames only and padded frames are re-zeroed after every unit: a clip's features do not depend on how much padding
its batch-mates forced on it (the same rule as the front-ends in ``frontends.py``).

The squeeze-and-excitation gate of DC-TCN averages over the whole clip, so with it a frame is touched by every
other frame through a per-channel scale; the convolutional receptive field of Eq. 1 is what
:func:`receptive_fields` reports and what the towers are matched on.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from avtrain.models.masked import masked_batch_norm

Activation = Literal["relu", "prelu", "swish"]


def conv_receptive_field(kernel_size: int, dilation: int) -> int:
    """Eq. 1: R = (k - 1)(d - 1) + k for one stride-1 convolution."""
    return (kernel_size - 1) * (dilation - 1) + kernel_size


@dataclass(frozen=True)
class DenseTCNSpec:
    """DC-TCN's structure, as plain values. Its defaults and checks are the recipe's (``temporal: dctcn``,
    avtrain.config.DCTCNConf); :func:`temporal_spec` reads them from the recipe's validated conf."""

    num_levels: int
    layers_per_level: int
    growth_rate: int
    width: int
    kernel_sizes: tuple[int, ...]
    dilations: tuple[int, ...]
    dropout: float
    activation: Activation
    squeeze_excitation: bool


@dataclass(frozen=True)
class MultiScaleTCNSpec:
    """MS-TCN's structure, as plain values (``temporal: mstcn``, avtrain.config.MSTCNConf)."""

    num_levels: int
    width: int
    kernel_sizes: tuple[int, ...]
    dilations: tuple[int, ...] | None
    dropout: float
    activation: Activation


TemporalSpec = DenseTCNSpec | MultiScaleTCNSpec
SPECS: dict[str, type] = {"dctcn": DenseTCNSpec, "mstcn": MultiScaleTCNSpec}


def temporal_spec(kind: str, conf: Mapping[str, Any]) -> TemporalSpec:
    """A temporal model's spec from a mapping of its fields (a recipe's ``temporal_conf``, lists as tuples)."""
    if kind not in SPECS:
        raise ValueError(f"temporal must be one of {', '.join(SPECS)}, got {kind!r}")
    return SPECS[kind](**{k: tuple(v) if isinstance(v, list) else v for k, v in conf.items()})


def level_dilations(spec: MultiScaleTCNSpec) -> list[int]:
    """MS-TCN: the dilation of each level (temporal block), 1, 2, 4, ... unless given."""
    d = spec.dilations or [2**i for i in range(spec.num_levels)]
    if len(d) != spec.num_levels:
        raise ValueError(f"MS-TCN needs one dilation per level ({spec.num_levels}), got {list(d)}")
    return list(d)


def level_stages(spec: TemporalSpec) -> list[list[tuple[int, int]]]:
    """Per level, the (largest kernel, dilation) of each convolution on the longest path: DC-TCN has 2 per dense
    layer (dilations[j % len] for layer j of a block), MS-TCN 2 per temporal block."""
    k = max(spec.kernel_sizes)
    if isinstance(spec, DenseTCNSpec):
        layer = [(k, spec.dilations[j % len(spec.dilations)]) for j in range(spec.layers_per_level)]
        return [[s for s in layer for _ in range(2)] for _ in range(spec.num_levels)]
    return [[(k, d), (k, d)] for d in level_dilations(spec)]



def receptive_fields(spec: TemporalSpec) -> list[int]:
    """Receptive field (frames) of each level's output, cumulative over levels; convolutions compose additively:
    R_total - 1 = sum over the longest path of (R_conv - 1)."""
    out, total = [], 1
    for stages in level_stages(spec):
        total += sum(conv_receptive_field(k, d) - 1 for k, d in stages)
        out.append(total)
    return out


# ---------------------------------------------------------------- building blocks
def _activation(kind: Activation, channels: int) -> nn.Module:
    if kind == "prelu":
        return nn.PReLU(channels)
    if kind == "swish":
        return nn.SiLU()
    if kind == "relu":
        return nn.ReLU()
    raise ValueError(f"unknown activation {kind!r}")


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm over the real frames of (B, C, T) input; padded frames come out as zeros.

    ``freeze_stats`` (set through :meth:`TemporalModel.frozen_statistics`) normalises with batch statistics without
    moving the running ones: MTLAM's auxiliary visual-only pass must not drag the statistics that inference (the
    fused stream) uses towards a differently distributed stream."""

    freeze_stats: bool = False

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return masked_batch_norm(self, x, mask, update_stats=not self.freeze_stats)


class MaskedSqueezeExcite(nn.Module):
    """Channel gate from the mean over real frames (the reference averages padding in too)."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc = nn.Sequential(nn.Linear(channels, hidden, bias=False), nn.SiLU(),
                                nn.Linear(hidden, channels, bias=False), nn.Sigmoid())

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask[:, None, :].to(x.dtype)
        mean = (x * m).sum(-1) / m.sum(-1).clamp_min(1.0)
        return x * self.fc(mean)[:, :, None]


class ConvNormAct(nn.Module):
    """One branch: dilated symmetric Conv1d -> masked BN -> activation."""

    def __init__(self, cin: int, cout: int, kernel_size: int, dilation: int, activation: Activation):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel sizes must be odd so the output stays centred, got {kernel_size}")
        self.conv = nn.Conv1d(cin, cout, kernel_size, padding=(kernel_size - 1) * dilation // 2, dilation=dilation)
        self.norm = MaskedBatchNorm1d(cout)
        self.act = _activation(activation, cout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x), mask))


class MultiBranchBlock(nn.Module):
    """Two multi-branch convolutions (one branch per kernel size, outputs concatenated) plus a residual: the DC-TCN
    dense layer and the MS-TCN block are both this unit."""

    def __init__(self, cin: int, cout: int, kernel_sizes: tuple[int, ...], dilation: int, dropout: float,
                 activation: Activation, squeeze_excitation: bool = False):
        super().__init__()
        nb = len(kernel_sizes)
        if cout % nb:
            raise ValueError(f"{cout} output channels do not split over {nb} kernel branches")
        self.se = nn.ModuleList([MaskedSqueezeExcite(cin) for _ in kernel_sizes]) if squeeze_excitation else None
        self.first = nn.ModuleList([ConvNormAct(cin, cout // nb, k, dilation, activation) for k in kernel_sizes])
        self.second = nn.ModuleList([ConvNormAct(cout, cout // nb, k, dilation, activation) for k in kernel_sizes])
        self.drop = nn.Dropout(dropout)
        self.down = nn.Conv1d(cin, cout, 1) if cin != cout else None
        self.act = _activation(activation, cout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.se is None:
            y = torch.cat([b(x, mask) for b in self.first], 1)
        else:
            y = torch.cat([b(se(x, mask), mask) for b, se in zip(self.first, self.se)], 1)
        y = self.drop(y)
        y = self.drop(torch.cat([b(y, mask) for b in self.second], 1))
        res = x if self.down is None else self.down(x)
        # the 1x1 residual conv has a bias, so padded frames are non-zero until masked again
        return self.act(y + res) * mask[:, None, :].to(y.dtype)


class Transition(nn.Module):
    """1x1 conv -> masked BN -> activation: brings a dense block's concatenation back to ``width`` channels."""

    def __init__(self, cin: int, cout: int, activation: Activation):
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, 1, bias=False)
        self.norm = MaskedBatchNorm1d(cout)
        self.act = _activation(activation, cout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x), mask))


class DenseBlock(nn.Module):
    """Dense connectivity: layer j sees the concatenation of the block input and every earlier layer's output."""

    def __init__(self, cin: int, spec: DenseTCNSpec):
        super().__init__()
        self.layers = nn.ModuleList([
            MultiBranchBlock(cin + j * spec.growth_rate, spec.growth_rate, spec.kernel_sizes,
                             spec.dilations[j % len(spec.dilations)], spec.dropout, spec.activation,
                             spec.squeeze_excitation)
            for j in range(spec.layers_per_level)])
        self.out_channels = cin + spec.layers_per_level * spec.growth_rate

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for layer in self.layers:
            feats.append(layer(torch.cat(feats, 1), mask))
        return torch.cat(feats, 1)


# ---------------------------------------------------------------- temporal models
class TemporalModel(nn.Module, ABC):
    """Common interface: ``level(i, x, mask)`` runs level i (0-based) on (B, T, C) features; ``forward`` returns
    every level's output; ``level_dims`` and ``receptive_fields`` describe the levels."""

    spec: TemporalSpec
    level_dims: list[int]

    @property
    def num_levels(self) -> int:
        return self.spec.num_levels

    def receptive_fields(self) -> list[int]:
        return receptive_fields(self.spec)

    @abstractmethod
    def _level(self, i: int, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Level i on (B, C, T) features."""

    def level(self, i: int, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, C_in) -> (B, T, level_dims[i]), zeros on padded frames."""
        return self._level(i, x.transpose(1, 2), mask).transpose(1, 2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for i in range(self.num_levels):
            x = self.level(i, x, mask)
            outs.append(x)
        return outs

    @contextmanager
    def frozen_statistics(self) -> Iterator[None]:
        """Batch statistics without updating the running ones (see :class:`MaskedBatchNorm1d`)."""
        norms = [m for m in self.modules() if isinstance(m, MaskedBatchNorm1d)]
        for m in norms:
            m.freeze_stats = True
        try:
            yield
        finally:
            for m in norms:
                m.freeze_stats = False


class DenseTCN(TemporalModel):
    """Input transition to ``width``, then per level: dense block, and a transition back to ``width`` (the last
    level ends with a batch norm over the full concatenation instead, as the reference does)."""

    def __init__(self, in_dim: int, spec: DenseTCNSpec):
        super().__init__()
        if spec.num_levels < 1 or spec.layers_per_level < 1:
            raise ValueError("DC-TCN needs at least one level with at least one layer")
        self.spec = spec
        self.stem = Transition(in_dim, spec.width, "prelu")
        self.blocks = nn.ModuleList([DenseBlock(spec.width, spec) for _ in range(spec.num_levels)])
        full = self.blocks[0].out_channels
        self.transitions = nn.ModuleList([Transition(full, spec.width, spec.activation)
                                          for _ in range(spec.num_levels - 1)])
        self.final_norm = MaskedBatchNorm1d(full)
        self.level_dims = [spec.width] * (spec.num_levels - 1) + [full]

    def _level(self, i: int, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if i == 0:
            x = self.stem(x, mask)
        x = self.blocks[i](x, mask)
        if i < self.num_levels - 1:
            return self.transitions[i](x, mask)
        return self.final_norm(x, mask)


class MultiScaleTCN(TemporalModel):
    def __init__(self, in_dim: int, spec: MultiScaleTCNSpec):
        super().__init__()
        self.spec = spec
        dims = [in_dim] + [spec.width] * spec.num_levels
        self.blocks = nn.ModuleList([
            MultiBranchBlock(dims[i], dims[i + 1], spec.kernel_sizes, d, spec.dropout, spec.activation)
            for i, d in enumerate(level_dilations(spec))])
        self.level_dims = dims[1:]

    def _level(self, i: int, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.blocks[i](x, mask)


def build_temporal_model(in_dim: int, spec: TemporalSpec) -> TemporalModel:
    if isinstance(spec, DenseTCNSpec):
        return DenseTCN(in_dim, spec)
    if isinstance(spec, MultiScaleTCNSpec):
        return MultiScaleTCN(in_dim, spec)
    raise TypeError(f"unknown temporal spec {type(spec).__name__}")


def build_matched_towers(visual_in: int, audio_in: int, visual_spec: TemporalSpec,
                         audio_spec: TemporalSpec | None = None) -> tuple[TemporalModel, TemporalModel]:
    """Visual and audio temporal models whose level-by-level receptive fields agree (Sec. 2.2).

    Both front-ends emit one feature per video frame, so equal receptive fields in frames mean the audio feature of
    level i at frame t summarises exactly the stretch of speech that the visual feature of level i at frame t sees.
    ``audio_spec`` defaults to the visual one (the paper: "same structure"); a different one is accepted only if
    every level's receptive field and output width match."""
    audio_spec = audio_spec or visual_spec
    rv, ra = receptive_fields(visual_spec), receptive_fields(audio_spec)
    if rv != ra:
        raise ValueError(f"audio and visual temporal models must have equal receptive fields per level (Eq. 1): "
                         f"visual {rv}, audio {ra}")
    visual, audio = build_temporal_model(visual_in, visual_spec), build_temporal_model(audio_in, audio_spec)
    if visual.level_dims != audio.level_dims:
        raise ValueError(f"audio and visual levels must have equal widths for the memories: visual "
                         f"{visual.level_dims}, audio {audio.level_dims}")
    return visual, audio
