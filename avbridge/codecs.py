"""Bytes <-> arrays for every field a sample stores: H.264 crops, FLAC audio, npy arrays, JSON.

Both sides use these: avprep to encode, avtrain to decode. Video decoding is tuned for speed at load time:
raw H.264 in an mp4 with ``tune=fastdecode``, decoded single-threaded (a thread pool per clip costs more than it
saves on 75 small frames) and read straight from the decoded planes.
"""

from __future__ import annotations

import io
import json
from fractions import Fraction
from typing import Any

import numpy as np

VIDEO_CRF = 18


# Full-range BT.601, done in numpy: exact control of the range, and ~10x faster than swscale on small crops.
_RGB2YUV = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], np.float32)
_YUV2RGB = np.linalg.inv(_RGB2YUV).astype(np.float32)


def _plane(frame, index: int) -> np.ndarray:
    plane = frame.planes[index]
    rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
    return rows[:, : plane.width]


def encode_video(frames: np.ndarray, fps: float = 25.0, crf: int = VIDEO_CRF, speed: str = "veryfast") -> bytes:
    """Encode uint8 frames (T, H, W) gray or (T, H, W, 3) RGB as H.264 in mp4.

    Gray is stored as yuv420p with flat chroma and read back from the Y plane (the colour is tagged in the
    stream's metadata): ~1% larger than x264's 4:0:0 ``gray``, which many decoders (NVDEC among them) reject.
    RGB is stored as full-range yuv444p: crops are small, and 4:2:0 would blur lip edges for little gain.

    Not byte-deterministic: measured here, the same frames occasionally encode to one of two slightly different
    streams from call to call within a process (pixels differ by a few levels); see docs/format.md.
    """
    import av

    frames = np.ascontiguousarray(frames)
    if frames.dtype != np.uint8 or frames.ndim not in (3, 4) or len(frames) == 0:
        raise ValueError(f"encode_video wants non-empty uint8 (T,H,W) or (T,H,W,3), got {frames.dtype} {frames.shape}")
    gray = frames.ndim == 3
    height, width = frames.shape[1:3]
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        rate = Fraction(fps).limit_denominator(1001)
        frame_rate_base = 1 / rate
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p" if gray else "yuv444p"
        # threads=1: clips are encoded in parallel jobs already; x264 frame threads only add latency on 75 frames.
        stream.options = {"crf": str(crf), "preset": speed, "tune": "fastdecode", "threads": "1"}
        stream.metadata["title"] = "gray" if gray else "rgb"
        for index, frame in enumerate(frames):
            if gray:
                if height % 2 or width % 2:
                    raise ValueError(f"gray crops need even sides for 4:2:0, got {height}x{width}")
                planes = np.full((height * 3 // 2, width), 128, np.uint8)
                planes[:height] = frame
                vf = av.VideoFrame.from_ndarray(planes, format="yuv420p")
            else:
                yuv = frame.astype(np.float32) @ _RGB2YUV.T
                yuv[..., 1:] += 128.0
                planes = np.clip(np.round(yuv), 0, 255).astype(np.uint8).transpose(2, 0, 1)
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(planes), format="yuv444p")
                vf.color_range = 2
            # Explicit timestamps: without them x264's rate control sees whatever the frame pool held last,
            # and the same crops encode to different bytes from one call to the next.
            vf.pts = index
            vf.time_base = frame_rate_base
            for packet in stream.encode(vf):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buf.getvalue()


def decode_video(data: bytes) -> np.ndarray:
    """Decode bytes from :func:`encode_video` back to uint8 (T, H, W) or (T, H, W, 3)."""
    import av

    out = []
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "NONE"
        # the mp4 muxer hands the title back as "name"
        gray = (stream.metadata.get("name") or stream.metadata.get("title")) == "gray"
        for frame in container.decode(stream):
            if gray:
                out.append(_plane(frame, 0))
            else:
                out.append(np.stack([_plane(frame, i) for i in range(3)], axis=-1))
    if not out:
        raise ValueError("video field holds no frames")
    video = np.stack(out)
    if gray:
        return video
    yuv = video.astype(np.float32)
    yuv[..., 1:] -= 128.0
    return np.clip(np.round(yuv @ _YUV2RGB.T), 0, 255).astype(np.uint8)


def encode_flac(wave: np.ndarray, sample_rate: int) -> bytes:
    """Float waveform in [-1, 1] (or int16) to 16-bit FLAC bytes."""
    import soundfile as sf

    if wave.dtype != np.int16:
        # x 32768 mirrors soundfile's int16 -> float (/ 32768), so 16-bit sources round-trip bit-exactly.
        wave = np.clip(np.round(np.asarray(wave, np.float64) * 32768.0), -32768, 32767).astype(np.int16)
    buf = io.BytesIO()
    sf.write(buf, wave, sample_rate, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def decode_flac(data: bytes) -> tuple[np.ndarray, int]:
    """FLAC bytes to (float32 waveform in [-1, 1], sample rate)."""
    import soundfile as sf

    wave, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
    return wave, int(sr)


def encode_npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def decode_npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def encode_npz(array: np.ndarray) -> bytes:
    """Deflate-compressed npy, for arrays that compress well (quantised flow)."""
    buf = io.BytesIO()
    np.savez_compressed(buf, a=np.ascontiguousarray(array))
    return buf.getvalue()


def decode_npz(data: bytes) -> np.ndarray:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return z["a"]


def encode_q8(array: np.ndarray, lo: float, hi: float) -> bytes:
    """Float array quantised to 256 levels over [lo, hi] (clipped), deflated, with its range inside."""
    q = np.clip(np.round((np.asarray(array, np.float32) - lo) / (hi - lo) * 255), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    np.savez_compressed(buf, q=q, range=np.array([lo, hi], np.float64))
    return buf.getvalue()


def decode_q8(data: bytes) -> np.ndarray:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        lo, hi = z["range"]
        return (z["q"].astype(np.float32) * np.float32((hi - lo) / 255) + np.float32(lo)).astype(np.float32)


def encode_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def decode_json(data: bytes) -> Any:
    return json.loads(data)
