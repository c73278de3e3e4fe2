"""Sliding-window prediction over a whole clip with Gaussian-weighted averaging of the overlaps.

The two-tower paper (Ephrat et al. 2017, Sec. 5): predict spectrogram frames for video frames (1..T), step one
frame, predict (2..T+1), ... so each frame gets up to T predictions, then average them with Gaussian weights.
Here a window of ``window`` video frames yields ``frames_per_step`` output frames per video frame; an output frame's
weight in a window is a Gaussian of its distance from that window's centre (sigma in video frames), so predictions
made with context on both sides count most. The last window always ends at the clip's end, and a clip shorter than
the window is predicted in one piece.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def window_starts(num_steps: int, window: int, hop: int = 1) -> list[int]:
    if num_steps <= window:
        return [0]
    starts = list(range(0, num_steps - window + 1, hop))
    if starts[-1] != num_steps - window:
        starts.append(num_steps - window)
    return starts


def gaussian_weights(length: int, sigma: float) -> torch.Tensor:
    """(length,) weights exp(-d^2 / 2 sigma^2), d = distance from the centre; sigma in the same units as length."""
    d = torch.arange(length, dtype=torch.float64) - (length - 1) / 2
    return torch.exp(-0.5 * (d / sigma) ** 2)


def sliding_window_average(predict: Callable[[int, int], torch.Tensor], num_steps: int, window: int,
                           frames_per_step: int = 1, hop: int = 1, sigma: float | None = None) -> torch.Tensor:
    """Run ``predict(start, stop)`` -> (C, frames_per_step * (stop - start)) over every window of the clip and
    return the Gaussian-weighted average (C, frames_per_step * num_steps).

    ``sigma`` is in video frames (default: window / 4, so a window's edge frames weigh e^-2 of its centre's).
    """
    r = frames_per_step
    sigma = window / 4 if sigma is None else sigma
    total = weight_sum = None
    for start in window_starts(num_steps, window, hop):
        stop = min(start + window, num_steps)
        pred = predict(start, stop)
        expected = r * (stop - start)
        if pred.shape[-1] != expected:
            raise ValueError(f"predict({start}, {stop}) gave {pred.shape[-1]} frames, expected {expected}")
        w = gaussian_weights(expected, sigma * r).to(pred.device, torch.float64)
        if total is None:
            total = pred.new_zeros(*pred.shape[:-1], r * num_steps, dtype=torch.float64)
            weight_sum = torch.zeros(r * num_steps, dtype=torch.float64, device=pred.device)
        total[..., r * start : r * stop] += pred.double() * w
        weight_sum[r * start : r * stop] += w
    return (total / weight_sum).to(pred.dtype)
