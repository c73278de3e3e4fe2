"""Decode a clip once: RGB frames at the preset's frame rate and mono audio with exactly N samples per frame.

One pass over the file demuxes audio and video together. Frames are placed by their presentation timestamps
whatever the nominal rate: target frame k shows the source frame nearest in time to k / fps after the first
decoded frame, so a variable-frame-rate file, dropped or duplicated frames and 29.97 fps sources all land on the
same 25 fps grid. The audio is aligned to that first decoded frame by its own first decoded sample's time (a
stream that starts later is padded at the front, one that starts earlier is trimmed), then trimmed or padded to
a whole number of samples per frame. Every correction is recorded; a clip whose audio length is implausible for
its video (outside ``spf_range`` samples per frame) is rejected rather than stretched.
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


class _FrameBuffer:
    """Decoded RGB frames written straight into one growing (T, H, W, 3) array: no per-frame arrays to stack."""

    def __init__(self, expected: int):
        self.expected = max(expected, 8)
        self.array: np.ndarray | None = None
        self.count = 0

    def add(self, frame) -> None:
        import cv2

        if self.array is None:
            self.array = np.empty((self.expected, frame.height, frame.width, 3), np.uint8)
        elif self.count == len(self.array):
            self.array = np.concatenate([self.array, np.empty_like(self.array)])
        if (frame.height, frame.width) != self.array.shape[1:3]:
            raise ClipError("unreadable video", f"frame size changes from {self.array.shape[2]}x{self.array.shape[1]} "
                            f"to {frame.width}x{frame.height} at frame {self.count}")
        out = self.array[self.count]
        if frame.format.name == "yuv420p" and frame.width % 2 == 0 and frame.height % 2 == 0:
            # cv2 converts the raw I420 planes about twice as fast as swscale's rgb24 path.
            cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2RGB_I420, dst=out)
        else:
            out[:] = frame.to_ndarray(format="rgb24")
        self.count += 1

    @property
    def frames(self) -> np.ndarray:
        return self.array[: self.count] if self.array is not None else np.empty((0, 0, 0, 3), np.uint8)


def _declared_seconds(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000  # av.time_base: microseconds
    return None


class _AudioSink:
    """Decoded audio frames -> mono float32 at ``sample_rate``, and the time of the first decoded sample."""

    def __init__(self, sample_rate: int):
        import av

        self.resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        self.chunks: list[np.ndarray] = []
        self.start: float | None = None

    def add(self, frame) -> None:
        if self.start is None and frame.time is not None:
            self.start = float(frame.time)
        for out in self.resampler.resample(frame):
            self.chunks.append(out.to_ndarray().reshape(-1))

    def finish(self, name: str) -> tuple[np.ndarray, float | None]:
        for out in self.resampler.resample(None):
            self.chunks.append(out.to_ndarray().reshape(-1))
        if not self.chunks:
            raise ClipError("no audio stream", f"{name}: audio stream holds no samples")
        return np.concatenate(self.chunks).astype(np.float32), self.start


def read_audio(path: Path, sample_rate: int) -> tuple[np.ndarray, float]:
    """Mono float32 audio resampled to ``sample_rate`` and its first decoded sample's time in seconds."""
    import av

    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise ClipError("no audio stream", f"{path.name} has no audio stream")
        stream = container.streams.audio[0]
        sink = _AudioSink(sample_rate)
        for frame in container.decode(stream):
            sink.add(frame)
    wave, start = sink.finish(path.name)
    return wave, start if start is not None else 0.0


def place_frames(times: np.ndarray, fps: float, last_duration: float) -> np.ndarray:
    """For each target frame k / fps after the first source frame, the index of the source frame nearest in time.

    ``times``: increasing presentation times (s); ``last_duration``: how long the last source frame shows. The
    clip spans first to last frame plus that duration, rounded to whole target frames."""
    rel = times - times[0]
    count = max(1, int(round((rel[-1] + last_duration) * fps)))
    target = np.arange(count) / fps
    after = np.clip(np.searchsorted(rel, target), 1, len(rel) - 1) if len(rel) > 1 else np.zeros(count, int)
    if len(rel) == 1:
        return after
    before = after - 1
    # Ties go to the earlier frame (the one already on screen).
    return np.where(target - rel[before] <= rel[after] - target, before, after)


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

    ``audio``: a separate audio file (its time zero is the video file's); None = the video's own audio track.
    ``silent``: the audio is not read (speech synthesis from silent video); the clip gets zeros of the right length.
    """
    import av

    info: dict = {}
    own_audio = audio is None and not silent
    times: list[float | None] = []
    try:
        with av.open(str(video)) as container:
            if not container.streams.video:
                raise ClipError("no video stream", f"{video.name} has no video stream")
            vstream = container.streams.video[0]
            vstream.thread_type = "NONE"  # parallelism comes from clip-level jobs; decoder threads only contend
            if own_audio and not container.streams.audio:
                raise ClipError("no audio stream", f"{video.name} has no audio stream")
            astream = container.streams.audio[0] if own_audio else None
            nominal = float(vstream.average_rate) if vstream.average_rate else float(fps)
            declared = _declared_seconds(container, vstream)
            zero = container.start_time / 1_000_000 if container.start_time is not None else 0.0
            # Sized from the header, capped (a header can lie); it grows when a clip has more frames.
            buffer = _FrameBuffer(min(int(vstream.frames or round((declared or 3.0) * nominal)) + 2, 3000))
            sink = _AudioSink(sample_rate) if astream is not None else None
            for packet in container.demux(*(s for s in (vstream, astream) if s is not None)):
                if packet.stream is vstream:
                    for frame in packet.decode():
                        buffer.add(frame)
                        times.append(float(frame.time) if frame.time is not None else None)
                else:
                    for frame in packet.decode():
                        sink.add(frame)
            if sink is not None:
                wave, astart = sink.finish(video.name)
        if audio is not None and not silent:
            wave, file_start = read_audio(audio, sample_rate)
            astart = zero + file_start  # a separate file starts when the video file does
    except ClipError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise ClipError("unreadable video", f"{type(e).__name__}: {e}".splitlines()[0][:200]) from None

    frames = buffer.frames
    if len(frames) < min_frames:
        raise ClipError("too few frames", f"{len(frames)} decoded frames")
    if any(t is None for t in times):  # no timestamps at all: the nominal rate is all there is
        times = [i / nominal for i in range(len(frames))]
    stamps = np.asarray(times, np.float64)
    order = np.argsort(stamps, kind="stable")  # decoders return presentation order; a broken stream may not
    stamps = stamps[order]
    keep = np.concatenate([[True], np.diff(stamps) > 1e-6])  # one frame per timestamp
    order, stamps = order[keep], stamps[keep]
    steps = np.diff(stamps)
    last_duration = float(np.median(steps)) if len(steps) else 1.0 / nominal
    decoded = stamps[-1] - stamps[0] + last_duration
    # A/V offset from the first decoded frame and sample (used below). An audio track that starts after the picture
    # ends, or ends before it starts, has nothing to align (and would mean a huge block of padding).
    offset = 0 if silent else int(round(((astart if astart is not None else stamps[0]) - stamps[0]) * sample_rate))
    if offset / sample_rate >= decoded or (not silent and (offset + len(wave)) / sample_rate <= 0):
        raise ClipError("audio/video offset", f"audio starts {offset / sample_rate:+.2f} s from the first frame, "
                        f"outside the {decoded:.2f} s of video")
    if declared and decoded < 0.9 * declared - 0.1:
        # A cut-off file decodes cleanly up to the cut; its header still says how long it was meant to be.
        raise ClipError("truncated video", f"decoded {decoded:.2f} s of the {declared:.2f} s the file declares")
    stretch = decoded * nominal / len(frames)  # timestamp span against what the frame count at the nominal rate gives
    if not np.isfinite(stretch) or stretch > 4:
        # A timestamp jump (a corrupt or hostile file) would stretch a few frames over hours of duplicates.
        raise ClipError("bad timestamps", f"{len(frames)} frames span {decoded:.1f} s of timestamps "
                        f"({stretch:.1f}x what {nominal:g} fps gives)")
    picks = order[place_frames(stamps, fps, last_duration)]
    # The common case, one source frame per target frame in order, keeps the decoded array as it is.
    identity = len(picks) == len(frames) and (picks == np.arange(len(frames))).all()
    stacked = frames if identity else frames[picks]
    info["source_fps"] = round(nominal, 4)
    info["file_frames"] = len(frames)  # as decoded from the file, before placing them on the target grid
    if abs(nominal - fps) > 1e-3:
        info["resampled_from_frames"] = len(frames)
    info["duplicated_frames"] = int(len(picks) - len(set(picks.tolist())))  # target frames showing a frame again
    info["unused_frames"] = int(len(frames) - len(set(picks.tolist())))  # source frames no target frame shows
    num_frames = len(stacked)
    spf = int(round(sample_rate / fps))
    if silent:
        info["silent"] = True
        return DecodedClip(frames=stacked, audio=np.zeros(num_frames * spf, np.float32), fps=fps,
                           sample_rate=sample_rate, info=info)

    # Audio that starts later than the video gets silence in front, audio that starts earlier loses its head.
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
            f"{len(wave)} audio samples for {num_frames} frames = {ratio:.0f} per frame, "
            f"outside {spf_range[0]}-{spf_range[1]}",
        )
    target = num_frames * spf
    info["audio_trim_samples"] = len(wave) - target  # > 0: samples cut at the end, < 0: zeros padded
    return wave[:target] if len(wave) >= target else np.pad(wave, (0, target - len(wave)))
