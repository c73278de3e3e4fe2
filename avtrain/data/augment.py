"""Clip-consistent train-time augmentation (random crop, horizontal flip, random erasing) and its test-time twin.

Every transform draws its parameters once per clip and applies them to all frames, as the paper does. The random
generator is passed in (seeded per sample by the data module), so augmentation never touches global RNG state:
that is what lets a resumed run reproduce the uninterrupted one exactly.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def _area_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in): output pixel i averages the source pixels under [i, i + 1) * n_in / n_out, each weighted by
    the length of its overlap (OpenCV's INTER_AREA)."""
    edges = np.arange(n_out + 1) * (n_in / n_out)
    lo, hi = edges[:-1, None], edges[1:, None]
    src = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(hi, src + 1) - np.maximum(lo, src), 0, None)
    return (overlap / overlap.sum(1, keepdims=True)).astype(np.float32)


def resize_frames(video: np.ndarray, size: int) -> np.ndarray:
    """Area-resize uint8 (T, H, W) frames to (T, size, size) float32 (0..255): two matmuls with explicit area weights.

    Every output pixel is the mean of the source area it covers, so detail finer than the output grid averages out
    rather than aliasing (112 -> 64, the CPU recipes' mouth, used to fall through to bilinear sampling)."""
    t, h, w = video.shape
    if (h, w) == (size, size):
        return video.astype(np.float32)
    if h % size == 0 and w % size == 0:  # integer factor: exact box average
        fh, fw = h // size, w // size
        return video.reshape(t, size, fh, size, fw).astype(np.float32).mean(axis=(2, 4))
    rows, cols = torch.from_numpy(_area_weights(h, size)), torch.from_numpy(_area_weights(w, size))
    # torch, not numpy: its matmul runs on the threads the process gave torch (one in a loader worker, the
    # recipe's trainer.threads in the main process), where numpy's OpenBLAS starts threads (one per core) of its own
    # that spin against the training beside it: 3x to 300x the wall time a clip (scripts/bench_resize.py).
    return (rows @ torch.from_numpy(video).to(torch.float32) @ cols.T).numpy()


def centre_crop(video: np.ndarray, size: int | None) -> np.ndarray:
    if size is None:
        return video
    h, w = video.shape[1:3]
    top, left = (h - size) // 2, (w - size) // 2
    return video[:, top : top + size, left : left + size]


def random_crop(video: np.ndarray, size: int | None, rng: np.random.Generator) -> np.ndarray:
    if size is None:
        return video
    h, w = video.shape[1:3]
    top = int(rng.integers(0, h - size + 1))
    left = int(rng.integers(0, w - size + 1))
    return video[:, top : top + size, left : left + size]


def random_flip(video: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return video[:, :, ::-1] if rng.random() < 0.5 else video


def random_erase(
    video: np.ndarray,
    rng: np.random.Generator,
    prob: float,
    area: tuple[float, float],
    ratio: tuple[float, float],
    value: float = 0.0,
) -> np.ndarray:
    """Erase one rectangle at the same place in every frame (Zhong et al.'s random erasing, per clip)."""
    if rng.random() >= prob:
        return video
    h, w = video.shape[1:3]
    for _ in range(10):  # rejection sampling as in the original method
        target = rng.uniform(*area) * h * w
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        eh, ew = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < eh < h and 0 < ew < w:
            top, left = int(rng.integers(0, h - eh + 1)), int(rng.integers(0, w - ew + 1))
            video = video.copy()
            video[:, top : top + eh, left : left + ew] = value
            return video
    return video


def time_mask(video: np.ndarray, rng: np.random.Generator, width: int, count: int) -> np.ndarray:
    """Set ``count`` spans of 0..``width`` consecutive frames (each drawn independently) to 0, the mean frame."""
    t = video.shape[0]
    for _ in range(count):
        n = int(rng.integers(0, width + 1))
        if 0 < n < t:
            start = int(rng.integers(0, t - n + 1))
            video = video.copy() if not video.flags.writeable else video
            video[start : start + n] = 0.0
    return video


class ClipAugment:
    """Train: random crop -> flip -> normalise -> erase (fill 0 = the mean) -> time masks. Eval: centre crop ->
    normalise."""

    def __init__(self, name: str, conf: dict, mean: float, std: float):
        self.name = name
        self.crop = conf.get("crop")
        self.flip = bool(conf.get("flip", False)) and name == "paper"
        self.erase_prob = float(conf.get("erase_prob", 0.0)) if name == "paper" else 0.0
        self.erase_area = tuple(conf.get("erase_area", (0.02, 0.33)))
        self.erase_ratio = tuple(conf.get("erase_ratio", (0.3, 3.3)))
        self.time_mask = int(conf.get("time_mask", 0)) if name == "paper" else 0
        self.time_masks = int(conf.get("time_masks", 1))
        self.mean, self.std = mean * 255.0, std * 255.0

    def __call__(self, video: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
        """(T, H, W) float 0..255 -> normalised float32 (T, h, w); ``rng=None`` means evaluation."""
        if rng is None or self.name == "none":
            video = centre_crop(video, self.crop) if rng is None else random_crop(video, self.crop, rng)
            return ((video - self.mean) / self.std).astype(np.float32)
        video = random_crop(video, self.crop, rng)
        if self.flip:
            video = random_flip(video, rng)
        video = (video - self.mean) / self.std
        video = random_erase(video, rng, self.erase_prob, self.erase_area, self.erase_ratio)
        video = np.ascontiguousarray(video, dtype=np.float32)
        if self.time_mask:  # drawn after every other transform: recipes without it draw exactly what they drew
            video = time_mask(video, rng, self.time_mask, self.time_masks)
        return video
