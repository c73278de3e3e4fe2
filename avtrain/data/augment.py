"""Clip-consistent train-time augmentation (random crop, horizontal flip, random erasing) and its test-time twin.

Every transform draws its parameters once per clip and applies them to all frames, as the paper does. The random
generator is passed in (seeded per sample by the data module), so augmentation never touches global RNG state:
that is what lets a resumed run reproduce the uninterrupted one exactly.
"""

from __future__ import annotations

import math

import numpy as np


def resize_frames(video: np.ndarray, size: int) -> np.ndarray:
    """Area-resize uint8 (T, H, W) frames to (T, size, size) float32 (0..255). No OpenCV: plain numpy."""
    t, h, w = video.shape
    if (h, w) == (size, size):
        return video.astype(np.float32)
    if h % size == 0 and w % size == 0:  # integer factor: exact box average
        fh, fw = h // size, w // size
        return video.reshape(t, size, fh, size, fw).astype(np.float32).mean(axis=(2, 4))
    # general case: separable linear interpolation on pixel centres
    ys = (np.arange(size) + 0.5) * h / size - 0.5
    xs = (np.arange(size) + 0.5) * w / size - 0.5
    y0 = np.clip(np.floor(ys).astype(int), 0, h - 1)
    x0 = np.clip(np.floor(xs).astype(int), 0, w - 1)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    wy, wx = np.clip(ys - y0, 0, 1)[None, :, None], np.clip(xs - x0, 0, 1)[None, None, :]
    v = video.astype(np.float32)
    top = v[:, y0][:, :, x0] * (1 - wx) + v[:, y0][:, :, x1] * wx
    bot = v[:, y1][:, :, x0] * (1 - wx) + v[:, y1][:, :, x1] * wx
    return top * (1 - wy) + bot * wy


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


class ClipAugment:
    """Train: random crop -> flip -> normalise -> erase (fill 0 = the mean). Eval: centre crop -> normalise."""

    def __init__(self, name: str, conf: dict, mean: float, std: float):
        self.name = name
        self.crop = conf.get("crop")
        self.flip = bool(conf.get("flip", False)) and name == "paper"
        self.erase_prob = float(conf.get("erase_prob", 0.0)) if name == "paper" else 0.0
        self.erase_area = tuple(conf.get("erase_area", (0.02, 0.33)))
        self.erase_ratio = tuple(conf.get("erase_ratio", (0.3, 3.3)))
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
        return np.ascontiguousarray(video, dtype=np.float32)
