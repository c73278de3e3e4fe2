"""Padded batches: means over real frames (one definition for every loss and pooling that needs one), the flat
indices of the real frames, and batch norm over real frames, all without a device-to-host synchronisation."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of (B, T) per-frame values over real frames (mask True); all frames when ``mask`` is None."""
    if mask is None:
        return values.mean()
    m = mask.to(values.dtype)
    return (values * m).sum() / m.sum().clamp_min(1.0)


def masked_time_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, C) features -> (B, C): each clip's mean over its real frames."""
    m = mask[..., None].to(x.dtype)
    return (x * m).sum(1) / m.sum(1).clamp_min(1.0)


def masked_spectrogram_mean(err: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
    """Mean of a (B, bins, L) per-bin error over the real spectrogram frames (frame_mask (B, L)) and all bins."""
    m = frame_mask[:, None, :].to(err.dtype)
    return (err * m).sum() / (m.sum() * err.shape[1]).clamp_min(1.0)


def to_device_async(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A small host tensor (lengths, indices) onto ``device`` without waiting for the device: a copy from pageable
    memory would synchronise the stream first, so on CUDA it goes through pinned memory (cached by torch)."""
    if t.device == device:
        return t
    if device.type == "cuda" and t.device.type == "cpu":
        return (t if t.is_pinned() else t.pin_memory()).to(device, non_blocking=True)
    return t.to(device)


def real_frame_index(mask: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Flat indices (b * T + t) of the real frames of a (B, T) mask, in row-major order (as ``mask.nonzero()``).

    From host-side ``lengths`` (the engine leaves them on the host) the indices are built there and copied to the
    device without waiting for it; from the device mask alone, ``nonzero`` must synchronise (tests, evaluation)."""
    if lengths is not None and lengths.device.type == "cpu":
        t = mask.shape[1]
        idx = torch.cat([torch.arange(int(n)) + i * t for i, n in enumerate(lengths.tolist())])
        return to_device_async(idx, mask.device)
    return mask.flatten().nonzero().squeeze(1)


def masked_batch_norm(bn: torch.nn.modules.batchnorm._BatchNorm, x: torch.Tensor, mask: torch.Tensor,
                      update_stats: bool = True) -> torch.Tensor:
    """Batch norm of (B, C, T) features over the real frames of ``mask`` (B, T) only, by weighting rather than
    selecting them (no boolean indexing, so no host synchronisation); padded frames come out as zeros.

    Statistics in fp32 whatever the autocast; the running statistics move as ``nn.BatchNorm1d``'s would on the
    real frames alone (unbiased variance, ``bn.momentum``), unless ``update_stats`` is False. On the CPU, where
    selecting frames costs no synchronisation, the real frames are selected and normalised by the fused batch norm
    (20-30 % faster there; the same values up to rounding, tested)."""
    if x.device.type == "cpu":
        return selected_batch_norm(bn, x, mask, update_stats)
    return weighted_batch_norm(bn, x, mask, update_stats)


def weighted_batch_norm(bn: torch.nn.modules.batchnorm._BatchNorm, x: torch.Tensor, mask: torch.Tensor,
                        update_stats: bool = True) -> torch.Tensor:
    """:func:`masked_batch_norm` by weighting the frames with the mask (no indexing, no host sync)."""
    m = mask[:, None, :].to(torch.float32)
    xf = x.float()
    if bn.training or not bn.track_running_stats:
        n = m.sum()
        mean = (xf * m).sum((0, 2)) / n.clamp_min(1.0)
        var = ((xf - mean[None, :, None]) ** 2 * m).sum((0, 2)) / n.clamp_min(1.0)
        if update_stats and bn.training and bn.track_running_stats:
            with torch.no_grad():
                bn.num_batches_tracked.add_(1)
                momentum = 0.1 if bn.momentum is None else bn.momentum
                bn.running_mean.lerp_(mean.detach(), momentum)
                bn.running_var.lerp_((var * n / (n - 1).clamp_min(1.0)).detach(), momentum)
    else:
        mean, var = bn.running_mean, bn.running_var
    y = (xf - mean[None, :, None]) * torch.rsqrt(var[None, :, None] + bn.eps)
    if bn.affine:
        y = y * bn.weight[None, :, None] + bn.bias[None, :, None]
    return (y * m).to(x.dtype)


def selected_batch_norm(bn: torch.nn.modules.batchnorm._BatchNorm, x: torch.Tensor, mask: torch.Tensor,
                        update_stats: bool = True) -> torch.Tensor:
    """:func:`masked_batch_norm` by selecting the real frames (boolean indexing: a host sync on CUDA)."""
    flat = x.transpose(1, 2)[mask]  # (n_real, C)
    if bn.training and not update_stats:
        y = F.batch_norm(flat, None, None, bn.weight, bn.bias, True, 0.0, bn.eps)
    else:
        y = torch.nn.modules.batchnorm._BatchNorm.forward(bn, flat)
    out = y.new_zeros(x.shape[0], x.shape[2], x.shape[1])
    out[mask] = y
    return out.transpose(1, 2)
