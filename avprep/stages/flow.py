"""Dense optical flow between consecutive registered face frames (the two-tower paper's second input)."""

from __future__ import annotations

import numpy as np

from avprep.presets import FlowSpec


def _gray(frames: np.ndarray) -> np.ndarray:
    if frames.ndim == 3:
        return frames
    import cv2

    return np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames])


def dense_flow(frames: np.ndarray, spec: FlowSpec) -> np.ndarray:
    """Flow (T-1, H, W, 2) in pixels/frame from frame t to t+1, quantised to int8 steps of ``spec.scale``."""
    import cv2

    gray = _gray(frames)
    out = np.empty((len(gray) - 1,) + gray.shape[1:] + (2,), np.int8)
    if spec.method == "dis":
        presets = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
                   "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}
        dis = cv2.DISOpticalFlow_create(presets[spec.dis_preset])
    for t in range(len(gray) - 1):
        if spec.method == "dis":
            flow = dis.calc(gray[t], gray[t + 1], None)
        else:
            flow = cv2.calcOpticalFlowFarneback(gray[t], gray[t + 1], None, spec.pyr_scale, spec.levels, spec.winsize,
                                                spec.iterations, spec.poly_n, spec.poly_sigma, 0)
        out[t] = np.clip(np.round(flow / spec.scale), -127, 127).astype(np.int8)
    return out
