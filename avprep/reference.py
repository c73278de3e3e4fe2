"""The mean face for ``mean-face`` registration, computed from the corpus itself (no third-party mean face file)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from joblib import Parallel, delayed

from avprep.presets import Preset
from avprep.stages import register
from avprep.stages.decode import decode_clip
from avprep.stages.errors import ClipError
from avprep.stages.landmarks import detect_landmarks
from avprep.types import ClipSpec


def central_shape(clip: ClipSpec, preset: Preset) -> np.ndarray | None:
    try:
        decoded = decode_clip(clip.video, clip.audio, preset.fps, preset.sample_rate, preset.samples_per_frame_range)
    except ClipError:
        return None
    middle = len(decoded.frames) // 2
    points = detect_landmarks(decoded.frames[middle : middle + 1]).points[0]
    return None if np.isnan(points).any() else points


def estimate_mean_face(clips: list[ClipSpec], preset: Preset, max_clips: int = 64, jobs: int = 1) -> np.ndarray:
    """Procrustes mean of the central frame's mesh over up to ``max_clips`` clips spread evenly over the list
    (so every speaker of a multi-speaker run contributes)."""
    picks = mean_face_picks(clips, max_clips)
    shapes = Parallel(n_jobs=jobs)(delayed(central_shape)(c, preset) for c in picks)
    return mean_face_from(shapes, preset, len(picks))


def mean_face_picks(clips: list[ClipSpec], max_clips: int = 64) -> list[ClipSpec]:
    """The clips a mean face is estimated from: up to ``max_clips`` spread evenly over the list."""
    if not clips:
        raise ValueError("no clips to estimate a mean face from")
    return [clips[i] for i in np.linspace(0, len(clips) - 1, min(max_clips, len(clips))).round().astype(int)]


def mean_face_from(shapes: list[np.ndarray | None], preset: Preset, sampled: int) -> np.ndarray:
    shapes = [s for s in shapes if s is not None]
    if not shapes:
        raise ValueError(f"no face found in any of the {sampled} clips sampled for the mean face")
    return register.mean_face(shapes, preset.registration.eye_distance)


def load_mean_face(path: Path) -> np.ndarray:
    face = np.load(path)
    if face.shape != (468, 2):
        raise ValueError(f"{path}: a mean face is a (468, 2) array of mesh points, got {face.shape}")
    return face.astype(np.float32)
