"""Bytes <-> arrays for every field a sample stores: H.264 or JPEG crops, FLAC audio, npy arrays, JSON.

Both sides use these: avprep to encode, avtrain to decode. Video decoding is tuned for speed at load time:
raw H.264 in an mp4 with ``tune=fastdecode``, decoded single-threaded (a thread pool per clip costs more than it
saves on 75 small frames) and read straight from the decoded planes. JPEG crops (one image of the frames stacked
top to bottom) decode ~2.5x faster than H.264 for ~4.5x the bytes (docs/benchmarks.md, "Crop codecs").
"""

from __future__ import annotations

import io
import json
import struct
from fractions import Fraction
from typing import Any

import numpy as np

VIDEO_CRF = 18
# 90: on GRID mouth crops 50.7 dB PSNR (H.264 at CRF 18: 44.4 dB) for 43 KiB per 29 frames; 95 costs 1.5x the
# bytes for 2 dB no model can use (docs/benchmarks.md, "Crop codecs").
JPEG_QUALITY = 90
# The frame count rides in a JPEG comment (COM) segment right after SOI, so the field stays a plain JPEG that any
# viewer opens (as a filmstrip) and decoders that do not know the tag skip it.
_JPEG_TAG = b"avbridge-frames="  # then T, or "T,C" for frames laid out in C columns
_JPEG_SIDE = 65535  # the format's limit on either side of an image


# Full-range BT.601, done by hand (OpenCV, or numpy without it): exact control of the range, and ~10x faster than
# swscale on small crops.
_RGB2YUV = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], np.float32)
_YUV2RGB = np.linalg.inv(_RGB2YUV).astype(np.float32)


def _plane(frame, index: int) -> np.ndarray:
    plane = frame.planes[index]
    rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
    return rows[:, : plane.width]


def _luma(rgb: np.ndarray) -> np.ndarray:
    return np.clip(np.round(rgb.astype(np.float32) @ _RGB2YUV[0]), 0, 255).astype(np.uint8)


def _chroma(rgb: np.ndarray) -> np.ndarray:
    """Per frame, the U then V planes (each H/2 x W/2) flattened in that order, as yuv420p stores them."""
    t = rgb.shape[0]
    f = rgb.astype(np.float32)
    # Four strided slices: ~40x faster than .mean() over the interleaved (2, 4) axes of a reshape.
    mean = (f[:, 0::2, 0::2] + f[:, 1::2, 0::2] + f[:, 0::2, 1::2] + f[:, 1::2, 1::2]) * 0.25
    uv = np.clip(np.round(mean @ _RGB2YUV[1:].T + 128.0), 0, 255).astype(np.uint8)
    return uv.transpose(0, 3, 1, 2).reshape(t, -1)


def _x264_options(crf: int, speed: str, x264_params: str | None = None) -> dict[str, str]:
    """The encoder settings of every crop. threads=1: clips are encoded in parallel jobs already, and x264's frame
    threads only add latency on 75 frames. mbtree=0: with x264's macroblock-tree rate control the same frames gave
    other bytes from one process to the next (GRID crops: every run when mediapipe's face mesh ran between encodes,
    about one run in three without it; tests/test_prep_reproducible.py), which broke byte-identical shards. Without
    it a GRID mouth at CRF 18 takes ~36 % more bytes, at +1.2 dB PSNR (docs/format.md, "Reproducible shards")."""
    params = "mbtree=0" + (f":{x264_params}" if x264_params else "")
    return {"crf": str(crf), "preset": speed, "tune": "fastdecode", "threads": "1", "x264-params": params}


def encode_video(frames: np.ndarray, fps: float = 25.0, crf: int = VIDEO_CRF, speed: str = "veryfast",
                 x264_params: str | None = None) -> bytes:
    """Encode uint8 frames (T, H, W) gray or (T, H, W, 3) RGB as H.264 in mp4.

    ``x264_params``: extra x264 settings (``"subme=1:rc-lookahead=5"``) on top of the preset, for benchmarks of
    the encoder (scripts/bench_crop_encode.py); the presets use none.

    Gray is stored as yuv420p with flat chroma and read back from the Y plane (the colour is tagged in the
    stream's metadata): ~1% larger than x264's 4:0:0 ``gray``, which many decoders (NVDEC among them) reject.
    RGB is stored as full-range yuv420p, chroma averaged over 2x2 pixels: talking-face sources are 4:2:0 already,
    and 4:4:4 measured 2x slower to encode for no chroma detail the source has.

    The same frames give the same bytes with one x264 build (single-threaded, no macroblock tree: ``_x264_options``;
    scripts/x264_stability.py); another
    x264 or FFmpeg build may give others (docs/format.md, "Reproducible shards").
    """
    import av

    planes, gray = _yuv_planes(frames)
    height, width = planes.shape[1] * 2 // 3, planes.shape[2]
    buf = io.BytesIO()
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(buf, mode="w", format="mp4") as container:
        stream = _x264_stream(container, rate, width, height, _x264_options(crf, speed, x264_params))
        stream.metadata["title"] = "gray" if gray else "rgb"
        for index, frame_planes in enumerate(planes):
            vf = _yuv_frame(frame_planes)
            vf.pts, vf.time_base = index, 1 / rate
            _mux(container, stream.encode(vf))
        _mux(container, stream.encode(None))
    return buf.getvalue()


def _x264_stream(container, rate: Fraction, width: int, height: int, options: dict[str, str]):
    """A yuv420p libx264 stream of ``container`` with ``options`` (:func:`_x264_options`, plus any of the caller's)."""
    stream = container.add_stream("libx264", rate=rate)
    stream.width, stream.height = width, height
    stream.pix_fmt = "yuv420p"
    stream.options = options
    return stream


def _mux(container, packets) -> None:
    for packet in packets:
        container.mux(packet)


def decode_video(data: bytes, max_frames: int | None = None, max_bytes: int | None = None) -> np.ndarray:
    """Decode bytes from :func:`encode_video` back to uint8 (T, H, W) or (T, H, W, 3).

    ``max_frames`` / ``max_bytes``: stop with ValueError past that many frames or decoded bytes (shards from
    elsewhere: a few bytes of H.264 can declare huge or endless frames)."""
    import av

    out = []
    decoded = 0
    with av.open(io.BytesIO(data)) as container:
        if not container.streams.video:
            raise ValueError("no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "NONE"
        # the mp4 muxer hands the title back as "name"
        gray = (stream.metadata.get("name") or stream.metadata.get("title")) == "gray"
        declared = stream.codec_context.width * stream.codec_context.height * (1 if gray else 3)
        if max_bytes is not None and declared > max_bytes:
            raise ValueError(f"declares {stream.codec_context.width}x{stream.codec_context.height} frames, over "
                             f"the {max_bytes}-byte decoding budget")
        for frame in container.decode(stream):
            decoded += frame.width * frame.height * (1 if gray else 3)
            if max_frames is not None and len(out) >= max_frames:
                raise ValueError(f"more than {max_frames} frames")
            if max_bytes is not None and decoded > max_bytes:
                raise ValueError(f"decodes to more than its {max_bytes}-byte budget")
            if gray:
                out.append(_plane(frame, 0))
            else:
                y, u, v = (_plane(frame, i) for i in range(3))
                if u.shape != y.shape:  # 4:2:0 (4:4:4 in shards written before 0.1.0's final format)
                    u, v = (np.repeat(np.repeat(c, 2, axis=0), 2, axis=1)[: y.shape[0], : y.shape[1]] for c in (u, v))
                out.append(np.stack([y, u, v], axis=-1))
    if not out:
        raise ValueError("video field holds no frames")
    video = np.stack(out)
    if gray:
        return video
    return _to_rgb(video)


def _yuv_planes(frames: np.ndarray) -> tuple[np.ndarray, bool]:
    """yuv420p planes (T, 3H/2, W) of uint8 gray (T, H, W) or RGB (T, H, W, 3) frames, as :func:`encode_video`
    stores them, and whether the frames are gray."""
    frames = np.ascontiguousarray(frames)
    if frames.dtype != np.uint8 or frames.ndim not in (3, 4) or len(frames) == 0:
        raise ValueError(f"encode_video wants non-empty uint8 (T,H,W) or (T,H,W,3), got {frames.dtype} {frames.shape}")
    gray = frames.ndim == 3
    count, height, width = frames.shape[:3]
    if height % 2 or width % 2:
        raise ValueError(f"crops need even sides for 4:2:0, got {height}x{width}")
    planes = np.empty((count, height * 3 // 2, width), np.uint8)
    if gray:
        planes[:, :height], planes[:, height:] = frames, 128
        return planes, gray
    try:
        import cv2
    except ImportError:  # the core install (avtrain) has no OpenCV; avprep, which encodes crops, always has it
        planes[:, :height] = _luma(frames)
        planes[:, height:] = _chroma(frames).reshape(count, height // 2, width)
        return planes, gray
    # OpenCV's YCrCb is the same full-range BT.601 (JPEG) as _RGB2YUV, ~5x faster than the numpy path; it rounds
    # each pixel before the 2x2 chroma average, so a chroma value may differ from the numpy path's by one level.
    ycc = cv2.cvtColor(frames.reshape(count * height, width, 3), cv2.COLOR_RGB2YCrCb)
    planes[:, :height] = ycc[..., 0].reshape(count, height, width)
    # Frames are stacked with even heights, so no 2x2 block spans two frames.
    half = cv2.resize(ycc, (width // 2, count * height // 2), interpolation=cv2.INTER_AREA)
    planes[:, height:] = half[..., [2, 1]].reshape(count, height // 2, width // 2, 2).transpose(0, 3, 1, 2).reshape(
        count, height // 2, width)
    return planes, gray


def _yuv_frame(planes: np.ndarray):
    """A full-range yuv420p VideoFrame over one frame's planes (3H/2, W), without a copy: the encoder
    copies a frame it is handed that owns no buffer (libavcodec's av_frame_ref), so the planes may change after
    ``encode`` returns. 4.7 us a frame against from_ndarray's 31 (its checks and copy): 4 ms of a GRID clip."""
    import av

    vf = av.VideoFrame.from_numpy_buffer(planes, format="yuv420p")
    vf.color_range = 2  # JPEG/full range: pixels round-trip without the 16-235 squeeze
    return vf


def encode_video_segments(frames: np.ndarray, segments: list[tuple[int, int]], fps: float = 25.0,
                          crf: int = VIDEO_CRF, speed: str = "veryfast") -> list[bytes]:
    """Frames ``[start, end)`` of each segment as its own mp4 in :func:`encode_video`'s layout, from one x264
    session instead of one per segment (segments may overlap; frames outside every segment are not encoded).

    The frames the segments cover are encoded once with an IDR frame at every segment start and end: each segment
    is then a run of closed groups of pictures (B-frames never refer across an IDR frame), and its packets,
    copied into a container of their own, decode to exactly the frames the whole stream decodes to there."""
    import av

    count = len(frames)
    if not segments or any(not 0 <= s < e <= count for s, e in segments):
        raise ValueError(f"segments {segments} do not lie within {count} frames")
    covered = np.zeros(count, bool)
    for s, e in segments:
        covered[s:e] = True
    kept = np.flatnonzero(covered)  # encoded frame j is source frame kept[j]
    cuts = {int(i) for s, e in segments for i in (s, e) if i < count}
    planes, gray = _yuv_planes(frames[kept])
    height, width = frames.shape[1:3]
    whole = io.BytesIO()
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(whole, mode="w", format="mp4") as container:
        stream = _x264_stream(container, rate, width, height, {**_x264_options(crf, speed), "forced-idr": "1"})
        for j, frame_planes in enumerate(planes):
            vf = _yuv_frame(frame_planes)
            vf.pts, vf.time_base = int(kept[j]), 1 / rate  # source frame numbers: gaps are fine
            if j == 0 or kept[j] in cuts or kept[j - 1] != kept[j] - 1:
                vf.pict_type = av.video.frame.PictureType.I
            _mux(container, stream.encode(vf))
        _mux(container, stream.encode(None))
    whole.seek(0)
    out = []
    with av.open(whole) as source:
        template = source.streams.video[0]
        step = 1 / (rate * template.time_base)  # stream ticks per frame
        # (frame, payload, pts, dts, keyframe) in decode order: muxing consumes a packet, and segments share some.
        packets = [(int(round(p.pts / step)), bytes(p), p.pts, p.dts, p.is_keyframe) for p in source.demux(template)
                   if p.size]
        if sorted(p[0] for p in packets) != kept.tolist():
            raise RuntimeError(f"x264 gave {len(packets)} packets for {len(kept)} frames")
        for s, e in segments:
            run = [p for p in packets if s <= p[0] < e]
            if not run[0][4] or run[0][0] != s:
                raise RuntimeError(f"segment {s}-{e} does not start with its own keyframe")
            buf = io.BytesIO()
            with av.open(buf, mode="w", format="mp4") as container:
                stream = container.add_stream_from_template(template)
                stream.metadata["title"] = "gray" if gray else "rgb"
                base = run[0][2]
                for _, payload, pts, dts, key in run:
                    packet = av.Packet(payload)
                    packet.pts, packet.dts, packet.time_base = pts - base, dts - base, template.time_base
                    packet.is_keyframe, packet.stream = key, stream
                    container.mux(packet)
            out.append(buf.getvalue())
    return out


def _to_rgb(yuv_planes: np.ndarray) -> np.ndarray:
    yuv = yuv_planes.astype(np.float32)
    yuv[..., 1:] -= 128.0
    return np.clip(np.round(yuv @ _YUV2RGB.T), 0, 255).astype(np.uint8)


def encode_jpeg_frames(frames: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """Encode uint8 frames (T, H, W) gray or (T, H, W, 3) RGB as one baseline JPEG: the frames top to bottom (T*H x W),
    or, where that passes JPEG's 65535-pixel side (T*H > 65535: ~23 s of 112-pixel crops), in C columns filled
    row by row, the last row padded with black frames.

    One image instead of T: a single libjpeg-turbo call per clip, 3x faster to decode than T small JPEGs of the
    same quality (measured, docs/benchmarks.md). RGB is stored 4:2:0 like the H.264 crops; with H and W multiples
    of 16 no chroma block spans two frames (8 for gray).
    """
    from PIL import Image

    frames = np.ascontiguousarray(frames)
    if frames.dtype != np.uint8 or frames.ndim not in (3, 4) or len(frames) == 0 or \
            (frames.ndim == 4 and frames.shape[3] != 3):
        raise ValueError(f"encode_jpeg_frames wants non-empty uint8 (T,H,W) or (T,H,W,3), got {frames.dtype} "
                         f"{frames.shape}")
    count, height, width = frames.shape[:3]
    columns = -(-count * height // _JPEG_SIDE)
    rows = -(-count // columns)
    if rows * height > _JPEG_SIDE or columns * width > _JPEG_SIDE:
        raise ValueError(f"{count} frames of {height}x{width} do not fit one JPEG (65535-pixel sides)")
    if rows * columns > count:
        frames = np.concatenate([frames, np.zeros((rows * columns - count, *frames.shape[1:]), np.uint8)])
    grid = frames.reshape(rows, columns, *frames.shape[1:]).swapaxes(1, 2)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(grid).reshape(rows * height, columns * width, *frames.shape[3:])).save(
        buf, "JPEG", quality=quality, subsampling="4:2:0")
    data = buf.getvalue()
    comment = _JPEG_TAG + (f"{count}" if columns == 1 else f"{count},{columns}").encode()
    return data[:2] + b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment + data[2:]


def decode_jpeg_frames(data: bytes, max_frames: int | None = None, max_bytes: int | None = None) -> np.ndarray:
    """Decode bytes from :func:`encode_jpeg_frames` back to uint8 (T, H, W) or (T, H, W, 3).

    ``max_frames`` caps the frame count the comment may declare, ``max_bytes`` the decoded size the JPEG header may
    declare; both are checked before any pixel is decoded (ValueError)."""
    from PIL import Image

    if data[:4] != b"\xff\xd8\xff\xfe":
        raise ValueError("jpg crop field does not start with avbridge's frame-count comment")
    size = struct.unpack(">H", data[4:6])[0]
    comment = data[6 : 4 + size]
    if not comment.startswith(_JPEG_TAG):
        raise ValueError(f"jpg crop field has a foreign comment {comment[:40]!r}, not a frame count")
    count, _, cols = comment[len(_JPEG_TAG) :].decode().partition(",")
    count, columns = int(count), int(cols or 1)
    if max_frames is not None and count > max_frames:
        raise ValueError(f"jpg crop field declares {count} frames, more than the {max_frames} of its sample")
    with Image.open(io.BytesIO(data)) as image:  # reads the header only; pixels are decoded by np.array below
        if image.mode not in ("L", "RGB"):
            raise ValueError(f"jpg crop field is {image.mode}, expected L (gray) or RGB")
        declared = image.width * image.height * len(image.mode)
        if max_bytes is not None and declared > max_bytes:
            raise ValueError(f"jpg crop field declares {image.width}x{image.height} {image.mode} = {declared} bytes, "
                             f"over the {max_bytes} its {len(data)} stored bytes allow")
        grid = np.array(image)  # a writable copy; the decoder's buffer is not ours to keep
    rows = -(-count // max(columns, 1))
    if count <= 0 or columns <= 0 or grid.shape[0] % rows or grid.shape[1] % columns:
        raise ValueError(f"jpg crop field: a {grid.shape[0]}x{grid.shape[1]} image does not hold {count} frames in "
                         f"{columns} columns")
    height, width = grid.shape[0] // rows, grid.shape[1] // columns
    frames = grid.reshape(rows, height, columns, width, *grid.shape[2:]).swapaxes(1, 2)
    return np.ascontiguousarray(frames.reshape(rows * columns, height, width, *grid.shape[2:])[:count])


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
