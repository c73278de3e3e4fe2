"""Register faces to a canonical pose: fill missing frames, smooth, fit a similarity transform per frame.

Canonical coordinates: the origin is midway between the outer eye corners, x to the right, y down, and the outer
eye corners of the reference shape lie ``eye_distance`` apart on the x axis. Two modes:

- ``mean-face``: each frame's stable points (eye corners, nose, mouth corners) are fitted by least squares to a
  mean face computed from the data (:func:`mean_face`); crops sit at fixed places of that mean face.
- ``per-clip`` (two-tower paper): each frame's two eye centres are mapped onto the clip's central frame, itself
  levelled and scaled so that its eyes lie on the canonical eye line; crops sit on the central frame's face.

Fits are closed-form (Umeyama), not RANSAC/LMedS: the mesh has no gross outliers once a face is found, and a
closed form is deterministic and ~50x faster than cv2.estimateAffinePartial2D.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avprep.stages.errors import ClipError
from avprep.stages.landmarks import LEFT_EYE, LEFT_EYE_OUTER, LIPS, RIGHT_EYE, RIGHT_EYE_OUTER, STABLE


@dataclass
class Registration:
    transforms: np.ndarray  # float32 (T, 2, 3): source pixels -> canonical coordinates
    mouth_centre: np.ndarray  # (2,) canonical
    face_centre: np.ndarray  # (2,) canonical


def fill_missing(points: np.ndarray, min_valid_fraction: float) -> tuple[np.ndarray, list[int]]:
    """Linearly interpolate frames without a face; edges copy the nearest valid frame. Raises ClipError."""
    valid = ~np.isnan(points[:, 0, 0])
    count = int(valid.sum())
    if count == 0:
        raise ClipError("no face", f"no face in any of {len(points)} frames")
    if count < min_valid_fraction * len(points):
        raise ClipError("too few face frames", f"face in {count} of {len(points)} frames (< {min_valid_fraction:.0%})")
    missing = np.flatnonzero(~valid).tolist()
    if not missing:
        return points, []
    t = np.arange(len(points))
    flat = points.reshape(len(points), -1)
    filled = np.empty_like(flat)
    for j in range(flat.shape[1]):
        filled[:, j] = np.interp(t, t[valid], flat[valid, j])  # np.interp holds the edge values flat
    return filled.reshape(points.shape), missing


def smooth(points: np.ndarray, window: int) -> np.ndarray:
    """The canonical recipe's smoothing: each frame's shape averaged over a window centred on it, then moved back
    so its centroid is the current frame's (the average smooths the shape; the position stays the frame's own).

    Near the clip's ends the window shrinks on both sides alike (frame 0 is its own average, frame 1 averages
    frames 0-2, ...): a one-sided shrink would pull the first and last frames towards the middle of the clip.
    """
    if window <= 1 or len(points) < 2:
        return points
    count = len(points)
    t = np.arange(count)
    half = np.minimum(window // 2, np.minimum(t, count - 1 - t))
    lo, hi = t - half, t + half + 1
    csum = np.concatenate([np.zeros((1,) + points.shape[1:], np.float64), np.cumsum(points, axis=0, dtype=np.float64)])
    averaged = (csum[hi] - csum[lo]) / (hi - lo)[:, None, None]
    averaged += points.mean(axis=1, keepdims=True, dtype=np.float64) - averaged.mean(axis=1, keepdims=True)
    return averaged.astype(np.float32)


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping src (K, 2) onto dst: 2x3 matrix.
    Batched over leading axes: src (T, K, 2) onto dst (K, 2) gives (T, 2, 3), one fit per frame in one pass
    (a Python loop over 75 frames cost ~5 ms a clip)."""
    mu_s, mu_d = src.mean(-2), dst.mean(-2)
    s, d = src - mu_s[..., None, :], dst - mu_d[..., None, :]
    # Complex-number form of Umeyama for 2-D: the optimal a + ib = sum(conj(s) * d) / sum(|s|^2).
    sc, dc = s[..., 0] + 1j * s[..., 1], d[..., 0] + 1j * d[..., 1]
    denom = np.sum(np.abs(sc) ** 2, axis=-1)
    if np.any(denom < 1e-9):
        raise ClipError("degenerate landmarks", "registration points collapse to one point")
    z = np.sum(np.conj(sc) * dc, axis=-1) / denom
    a, b = z.real.astype(np.float64), z.imag.astype(np.float64)
    rot = np.stack([np.stack([a, -b], -1), np.stack([b, a], -1)], -2)
    shift = mu_d - np.einsum("...ij,...j->...i", rot, mu_s)
    return np.concatenate([rot, shift[..., None]], -1).astype(np.float32)


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def _eye_centres(shape: np.ndarray) -> np.ndarray:
    """The two eye centres (2, 2) of a shape (K, 2), or (T, 2, 2) of shapes (T, K, 2)."""
    return np.stack([shape[..., list(LEFT_EYE), :].mean(-2), shape[..., list(RIGHT_EYE), :].mean(-2)], -2)


def _level(shape: np.ndarray, eye_distance: float) -> np.ndarray:
    """Similarity putting the outer eye corners at (-d/2, 0), (d/2, 0)."""
    eyes = shape[[LEFT_EYE_OUTER, RIGHT_EYE_OUTER]]
    # The subject's right eye (mesh 33) goes to the left, as in an upright frontal view, wherever it is in the
    # image: a face filmed upside down is turned upright (swapping the targets would keep it upside down).
    target = np.array([[-eye_distance / 2, 0.0], [eye_distance / 2, 0.0]])
    return similarity(eyes, target)


def mean_face(shapes: list[np.ndarray], eye_distance: float = 80.0, iterations: int = 3) -> np.ndarray:
    """Generalised Procrustes mean of 468-point shapes (one per clip), in canonical coordinates."""
    if not shapes:
        raise ValueError("mean_face needs at least one shape")
    aligned = [apply(_level(s, eye_distance), s) for s in shapes]
    mean = np.mean(aligned, axis=0)
    for _ in range(iterations):
        aligned = [apply(similarity(s[list(STABLE)], mean[list(STABLE)]), s) for s in shapes]
        mean = np.mean(aligned, axis=0)
        mean = apply(_level(mean, eye_distance), mean)
    return mean.astype(np.float32)


def register(points: np.ndarray, mode: str, reference: np.ndarray | None, eye_distance: float) -> Registration:
    """Per-frame transforms of filled, smoothed landmarks (T, 468, 2) into canonical coordinates."""
    if mode == "mean-face":
        if reference is None:
            raise ValueError("mean-face registration needs the mean face")
        stable_ref = reference[list(STABLE)]
        transforms = similarity(points[:, list(STABLE)], stable_ref)
        ref_shape = reference
    elif mode == "per-clip":
        central = points[len(points) // 2]
        ref_shape = apply(_level(central, eye_distance), central)
        ref_eyes = _eye_centres(ref_shape)
        transforms = similarity(_eye_centres(points), ref_eyes)
    else:
        raise ValueError(f"unknown registration mode {mode!r}")
    mouth = ref_shape[list(LIPS)].mean(0)
    eyes_mid = ref_shape[[LEFT_EYE_OUTER, RIGHT_EYE_OUTER]].mean(0)
    return Registration(transforms=transforms.astype(np.float32), mouth_centre=mouth,
                        face_centre=(mouth + eyes_mid) / 2)


def check_geometry(points: np.ndarray, reg: Registration, eye_distance: float) -> None:
    """Reject a registration that does not put a face upright in canonical coordinates: in every frame the mouth
    must lie below the eyes, about one eye distance down and not far to the side. Raises ClipError.

    A correct mesh passes with room to spare (on 22 clips of GRID s1, s2, s23, mean-face and per-clip modes: the
    mouth 0.78-0.92 eye distances below the eye line, within 0.06 of the midline); what fails
    is a mesh fitted to something else, or a mean face that is not a face."""
    mouth = np.einsum("tij,tj->ti", reg.transforms[:, :, :2], points[:, list(LIPS)].mean(1)) + reg.transforms[:, :, 2]
    down, side = mouth[:, 1] / eye_distance, np.abs(mouth[:, 0]) / eye_distance
    bad = np.flatnonzero((down < 0.5) | (down > 2.0) | (side > 0.6))
    if len(bad):
        t = int(bad[0])
        raise ClipError("implausible face geometry", f"{len(bad)} of {len(points)} frames put the mouth off the face "
                        f"(frame {t}: {down[t]:.2f} eye distances down, {side[t]:.2f} to the side)")


def frame_box(mode: str, box: tuple[int, int, int, int] | None, height: int, width: int) -> tuple[int, int, int, int]:
    """The source-pixel box (top, bottom, left, right) a landmark-free mode crops: the preset's fixed box, or the
    whole frame (mode "none", pre-cropped images). Raises ClipError when the frame is smaller than the box."""
    if mode == "none":
        return 0, height, 0, width
    if mode != "fixed-box" or box is None:
        raise ValueError(f"registration mode {mode!r} has no fixed box")
    top, bottom, left, right = box
    if bottom > height or right > width:
        raise ClipError("frame too small", f"{height}x{width} frames cannot hold the fixed box rows {top}-{bottom}, "
                        f"columns {left}-{right}")
    return box


def identity(num_frames: int, box: tuple[int, int, int, int]) -> Registration:
    """A landmark-free registration: canonical coordinates are source pixels, crops sit on the box's centre."""
    top, bottom, left, right = box
    centre = np.array([(left + right) / 2, (top + bottom) / 2], np.float32)
    transforms = np.tile(np.array([[1, 0, 0], [0, 1, 0]], np.float32), (num_frames, 1, 1))
    return Registration(transforms=transforms, mouth_centre=centre, face_centre=centre)
