"""Cut registered crops: one warp per frame straight from the source frame into the output crop.

The crop box is fixed in canonical coordinates, so composing it with the frame's registration gives a single
affine from source pixels to crop pixels: no intermediate canonical image, one interpolation per pixel.
"""

from __future__ import annotations

import numpy as np

from avprep.presets import CropSpec


def crop_matrix(spec: CropSpec, centre: np.ndarray) -> np.ndarray:
    """Affine (2x3) from canonical coordinates to the crop's pixels for a box centred on ``centre``."""
    box_h = spec.box
    box_w = spec.box * spec.width / spec.height
    sx, sy = spec.width / box_w, spec.height / box_h
    x0, y0 = centre[0] - box_w / 2, centre[1] - box_h / 2
    return np.array([[sx, 0, -x0 * sx], [0, sy, -y0 * sy]], np.float64)


def compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """outer ∘ inner for 2x3 affines; ``inner`` may be a stack (T, 2, 3)."""
    return outer[:, :2] @ inner + np.hstack([np.zeros((2, 2)), outer[:, 2:]])


def cut(frames: np.ndarray, transforms: np.ndarray, spec: CropSpec, centre: np.ndarray) -> np.ndarray:
    """Registered crops (T, H, W) gray or (T, H, W, 3) RGB from RGB frames and source->canonical transforms."""
    import cv2

    box = crop_matrix(spec, centre)
    out = np.empty((len(frames), spec.height, spec.width) + (() if spec.color == "gray" else (3,)), np.uint8)
    for t, (frame, m) in enumerate(zip(frames, compose(box, transforms.astype(np.float64)))):
        warped = cv2.warpAffine(frame, m, (spec.width, spec.height),
                                flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        out[t] = cv2.cvtColor(warped, cv2.COLOR_RGB2GRAY) if spec.color == "gray" else warped
    return out


def crop_points(points: np.ndarray, transforms: np.ndarray, spec: CropSpec, centre: np.ndarray) -> np.ndarray:
    """Where source-pixel landmarks (T, K, 2) land in the crop's pixels."""
    m = compose(crop_matrix(spec, centre), transforms)
    return np.einsum("tkj,tij->tki", points, m[:, :, :2]) + m[:, None, :, 2]


def cut_box(frames: np.ndarray, box: tuple[int, int, int, int], spec: CropSpec) -> np.ndarray:
    """A fixed source-pixel box (top, bottom, left, right) of every frame resized to the crop: exactly
    ``cv2.resize(frame[top:bottom, left:right])`` (bilinear), as a loader that crops a fixed box does it."""
    import cv2

    top, bottom, left, right = box
    out = np.empty((len(frames), spec.height, spec.width) + (() if spec.color == "gray" else (3,)), np.uint8)
    for t, frame in enumerate(frames):
        resized = cv2.resize(frame[top:bottom, left:right], (spec.width, spec.height), interpolation=cv2.INTER_LINEAR)
        out[t] = cv2.cvtColor(resized, cv2.COLOR_RGB2GRAY) if spec.color == "gray" else resized
    return out
