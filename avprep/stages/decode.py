"""Decode a clip once: RGB frames at the preset's frame rate and mono audio with exactly N samples per frame.

Audio and video are aligned on the container's timestamps (a stream that starts later is padded at the front),
frames at another rate (29.97 fps) are resampled to the target rate by nearest timestamp, and the audio is trimmed
or padded to a whole number of samples per frame. Every correction is recorded; a clip whose audio length is
implausible for its video (outside ``spf_range`` samples per frame) is rejected rather than stretched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avprep.stages.errors import ClipError


@dataclass
class DecodedClip:
    frames: np.ndarray  # uint8 (T, H, W, 3) RGB at the target fps
    audio: np.ndarray  # float32 (T * samples_per_frame,) mono at the target rate
    fps: float
    sample_rate: int
    info: dict = field(default_factory=dict)  # source fps, audio offset and trim, frame resampling

    @property
    def num_frames(self) -> int:
        return len(self.frames)


def _video_frames(container, stream) -> tuple[list[np.ndarray], list[float]]:
    import av
    import cv2

    stream.thread_type = "NONE"  # parallelism comes from clip-level jobs; decoder threads only contend
    frames, times = [], []
    for frame in container.decode(stream):
        if frame.format.name == "yuv420p" and frame.width % 2 == 0 and frame.height % 2 == 0:
            # cv2 converts the raw I420 planes about twice as fast as swscale's rgb24 path.
            rgb = cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2RGB_I420)
        else:
            rgb = frame.to_ndarray(format="rgb24")
        frames.append(rgb)
        times.append(float(frame.time) if frame.time is not None else len(times) / float(stream.average_rate or 25))
    if not isinstance(stream, av.video.stream.VideoStream):
        raise ClipError("unreadable video", "first stream is not video")
    return frames, times


def _declared_seconds(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000  # av.time_base: microseconds
    return None


def read_audio(path: Path, sample_rate: int) -> tuple[np.ndarray, float]:
    """Mono float32 audio resampled to ``sample_rate`` and the stream's start time in seconds."""
    import av

    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise ClipError("no audio stream", f"{path.name} has no audio stream")
        stream = container.streams.audio[0]
        start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks = []
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    if not chunks:
        raise ClipError("no audio stream", f"{path.name}: audio stream holds no samples")
    return np.concatenate(chunks).astype(np.float32), start


def _resample_frames(frames: list[np.ndarray], times: list[float], src_fps: float, fps: float) -> tuple[np.ndarray, list[int]]:
    """Pick, for each target frame time k / fps, the source frame nearest in time."""
    t0 = times[0]
    duration = len(frames) / src_fps
    count = int(round(duration * fps))
    rel = np.asarray(times) - t0
    picks = [int(np.argmin(np.abs(rel - k / fps))) for k in range(count)]
    return np.stack([frames[i] for i in picks]), picks


def decode_clip(
    video: Path,
    audio: Path | None,
    fps: float,
    sample_rate: int,
    spf_range: tuple[int, int] = (560, 720),
    min_frames: int = 2,
    silent: bool = False,
) -> DecodedClip:
    """Decode video and audio of one clip, aligned, at ``fps`` and ``sample_rate``. Raises ClipError.

    ``silent``: the audio is not read (speech synthesis from silent video); the clip gets zeros of the right length.
    """
    import av

    info: dict = {}
    try:
        with av.open(str(video)) as container:
            if not container.streams.video:
                raise ClipError("no video stream", f"{video.name} has no video stream")
            vstream = container.streams.video[0]
            src_fps = float(vstream.average_rate) if vstream.average_rate else float(fps)
            vstart = float(vstream.start_time * vstream.time_base) if vstream.start_time is not None else 0.0
            declared = _declared_seconds(container, vstream)
            frames, times = _video_frames(container, vstream)
        wave, astart = (None, vstart) if silent else read_audio(audio or video, sample_rate)
    except ClipError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise ClipError("unreadable video", f"{type(e).__name__}: {e}".splitlines()[0][:200]) from None

    if len(frames) < min_frames:
        raise ClipError("too few frames", f"{len(frames)} decoded frames")
    decoded = len(frames) / src_fps
    if declared and decoded < 0.9 * declared - 0.1:
        # A cut-off file decodes cleanly up to the cut; its header still says how long it was meant to be.
        raise ClipError("truncated video", f"decoded {decoded:.2f} s of the {declared:.2f} s the file declares")
    info["source_fps"] = round(src_fps, 4)
    if abs(src_fps - fps) > 1e-3:
        stacked, picks = _resample_frames(frames, times, src_fps, fps)
        info["resampled_from_frames"] = len(frames)
        info["duplicated_frames"] = int(len(picks) - len(set(picks)))
    else:
        stacked = np.stack(frames)
    num_frames = len(stacked)
    spf = int(round(sample_rate / fps))
    if wave is None:
        info["silent"] = True
        return DecodedClip(frames=stacked, audio=np.zeros(num_frames * spf, np.float32), fps=fps,
                           sample_rate=sample_rate, info=info)

    # A/V offset from the container timestamps: audio that starts later than the video gets silence in front.
    offset = int(round((astart - vstart) * sample_rate)) if audio is None else 0
    if offset > 0:
        wave = np.concatenate([np.zeros(offset, np.float32), wave])
    elif offset < 0:
        wave = wave[-offset:]
    info["audio_offset_samples"] = offset

    wave = fit_audio(wave, num_frames, spf, spf_range, info)
    return DecodedClip(frames=stacked, audio=wave, fps=fps, sample_rate=sample_rate, info=info)


def fit_audio(wave: np.ndarray, num_frames: int, spf: int, spf_range: tuple[int, int], info: dict) -> np.ndarray:
    """Exactly ``num_frames * spf`` samples: trimmed or zero-padded at the end (recorded in ``info``).
    Raises ClipError when the audio is implausibly long or short for the video (outside ``spf_range`` per frame)."""
    ratio = len(wave) / num_frames
    if not spf_range[0] <= ratio <= spf_range[1]:
        raise ClipError(
            "audio/video length",
            f"{len(wave)} audio samples for {num_frames} frames = {ratio:.0f} per frame, outside {spf_range[0]}-{spf_range[1]}",
        )
    target = num_frames * spf
    info["audio_trim_samples"] = len(wave) - target  # > 0: samples cut at the end, < 0: zeros padded
    return wave[:target] if len(wave) >= target else np.pad(wave, (0, target - len(wave)))
