"""Build test clips from real GRID clips: re-timed, silenced, blacked out, doubled, truncated, shifted."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def read_clip(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """RGB frames (T, H, W, 3), int16 mono audio at its native rate, and that rate."""
    with av.open(str(path)) as c:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        rate = stream.rate
        audio = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(stream)])
    return frames, audio.astype(np.int16), rate


def write_clip(path: Path, frames: np.ndarray, fps: float | Fraction, audio: np.ndarray | None = None,
               rate: int = 16000, audio_codec: str = "flac") -> Path:
    """H.264 video (+ int16 ``audio`` as FLAC, or AAC as LRW and TCD-TIMIT ship it); the container follows the
    suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        v.width, v.height, v.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        v.options = {"crf": "18", "preset": "veryfast"}
        a = None
        if audio is not None:
            a = c.add_stream(audio_codec, rate=rate)
            a.layout = "mono"
        for frame in frames:
            for p in v.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                c.mux(p)
        for p in v.encode(None):
            c.mux(p)
        if a is not None:
            # AAC takes float planar frames of 1024 samples; FLAC takes int16 in any frame size.
            planar = audio_codec == "aac"
            samples = (np.asarray(audio, np.float32) / 32768) if planar else np.asarray(audio, np.int16)
            step = 1024 if planar else 4096
            for i in range(0, len(samples), step):
                chunk = np.ascontiguousarray(samples[i : i + step].reshape(1, -1))
                af = av.AudioFrame.from_ndarray(chunk, format="fltp" if planar else "s16", layout="mono")
                af.sample_rate, af.pts = rate, i
                for p in a.encode(af):
                    c.mux(p)
            for p in a.encode(None):
                c.mux(p)
    return path


def retime(frames: np.ndarray, src_fps: float, dst_fps: float) -> np.ndarray:
    """Same duration at another frame rate, each output frame the source frame showing at its time."""
    count = int(round(len(frames) / src_fps * dst_fps))
    idx = np.minimum((np.arange(count) / dst_fps * src_fps).astype(int), len(frames) - 1)
    return frames[idx]


def side_by_side(frames: np.ndarray, second_scale: float = 0.6) -> np.ndarray:
    """The clip's face on the left and a smaller copy on the right: two faces, the left one larger."""
    import cv2

    t, h, w, _ = frames.shape
    small = np.stack([cv2.resize(f, (int(w * second_scale), int(h * second_scale))) for f in frames])
    right = np.zeros_like(frames)
    y0 = (h - small.shape[1]) // 2
    right[:, y0 : y0 + small.shape[1], : small.shape[2]] = small
    return np.concatenate([frames, right], axis=2)


def truncate(src: Path, dst: Path, fraction: float) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst
