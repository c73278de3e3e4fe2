"""Decode a clip once: RGB frames at the preset's frame rate and mono audio with exactly N samples per frame.

One pass over the file demuxes audio and video together. Frames are placed by their presentation timestamps
whatever the nominal rate: target frame k shows the source frame nearest in time to k / fps after the first
decoded frame, so a variable-frame-rate file, dropped or duplicated frames and 29.97 fps sources all land on the
same 25 fps grid. A frame without a timestamp gets one from its neighbours (one nominal frame step after the last
known one): the others keep theirs. The audio is aligned to that first decoded frame by its own first decoded
sample's time (a stream that starts later is padded at the front, one that starts earlier is trimmed), then trimmed
or padded to a whole number of samples per frame. Every correction is recorded; a clip whose audio length is
implausible for its video (outside ``spf_range`` samples per frame) is rejected rather than stretched.

Two ways to hold less (avprep workers on 1080p sources, or on minutes-long clips of which one segment is wanted):

- ``scale``: frames are resized as they are decoded, before any is stored (a number, or a function of the first
  frame that decides it: the pipeline asks how large the face is against what the preset's crops need);
- ``window``: only the target frames covering ``(start, end)`` seconds (after the first frame) are decoded, after a
  seek to the key frame before them; the frames and samples are exactly those the whole clip gives there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avprep.stages.errors import ClipError, io_error

MIN_FRAMES = 2  # fewer decoded frames: "too few frames"


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


def _to_rgb(frame, out: np.ndarray | None = None) -> np.ndarray:
    import cv2

    if frame.format.name == "yuv420p" and frame.width % 2 == 0 and frame.height % 2 == 0:
        # cv2 converts the raw I420 planes about twice as fast as swscale's rgb24 path.
        return cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2RGB_I420, dst=out)
    rgb = frame.to_ndarray(format="rgb24")
    if out is None:
        return rgb
    out[:] = rgb
    return out


class _FrameBuffer:
    """Decoded RGB frames written straight into one growing (T, H, W, 3) array: no per-frame arrays to stack.

    ``scale``: a factor (<= 1), or a function of the first frame (RGB) giving it; frames are resized (area
    averaging) as they come, so only the smaller frames are ever stored. ``scale_xy`` is what was applied per axis
    (sides rounded to even numbers)."""

    def __init__(self, expected: int, scale: float | Callable[[np.ndarray], float] | None = None):
        self.expected = max(expected, 8)
        self.array: np.ndarray | None = None
        self.count = 0
        self.scale = scale
        self.size: tuple[int, int] | None = None  # (width, height) stored
        self.source: tuple[int, int] | None = None  # (width, height) decoded
        self._scratch: np.ndarray | None = None

    @property
    def scale_xy(self) -> tuple[float, float]:
        if self.size is None or self.size == self.source:
            return 1.0, 1.0
        return self.size[0] / self.source[0], self.size[1] / self.source[1]

    def _start(self, frame) -> None:
        self.source = (frame.width, frame.height)
        factor = self.scale
        if callable(factor):
            factor = factor(_to_rgb(frame))
        self.size = self.source
        if factor is not None and 0 < factor < 1:
            self.size = (max(2, 2 * round(frame.width * factor / 2)), max(2, 2 * round(frame.height * factor / 2)))
        self.array = np.empty((self.expected, self.size[1], self.size[0], 3), np.uint8)

    def add(self, frame) -> None:
        import cv2

        if self.array is None:
            self._start(frame)
        elif self.count == len(self.array):
            self.array = np.concatenate([self.array, np.empty_like(self.array)])
        if (frame.width, frame.height) != self.source:
            raise ClipError("unreadable video", f"frame size changes from {self.source[0]}x{self.source[1]} "
                            f"to {frame.width}x{frame.height} at frame {self.count}")
        out = self.array[self.count]
        if self.size == self.source:
            _to_rgb(frame, out)
        else:
            if self._scratch is None:
                self._scratch = np.empty((frame.height, frame.width, 3), np.uint8)
            cv2.resize(_to_rgb(frame, self._scratch), self.size, dst=out, interpolation=cv2.INTER_AREA)
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
    return pick_frames(rel, np.arange(count) / fps)


def pick_frames(rel: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The index of the source frame (times ``rel``, increasing) nearest to each target time; ties go to the
    earlier frame (the one already on screen)."""
    if len(rel) == 1:
        return np.zeros(len(target), int)
    after = np.clip(np.searchsorted(rel, target), 1, len(rel) - 1)
    before = after - 1
    return np.where(target - rel[before] <= rel[after] - target, before, after)


def fill_times(times: list[float | None], nominal: float) -> list[float]:
    """Presentation times with the missing ones filled in: one nominal frame step after the frame before (before
    the first known time, one step before the frame after), so one frame without a timestamp takes its neighbours'
    clock instead of all frames being re-timed from zero. None known at all: ``i / nominal``."""
    known = next((i for i, t in enumerate(times) if t is not None), None)
    if known is None:
        return [i / nominal for i in range(len(times))]
    out = list(times)
    for i in range(known - 1, -1, -1):
        out[i] = out[i + 1] - 1 / nominal
    for i in range(known + 1, len(out)):
        if out[i] is None:
            out[i] = out[i - 1] + 1 / nominal
    return out


def _frame_time(frame) -> float | None:
    return float(frame.time) if frame.time is not None else None


def decode_clip(
    video: Path,
    audio: Path | None,
    fps: float,
    sample_rate: int,
    spf_range: tuple[int, int] = (560, 720),
    silent: bool = False,
    scale: float | Callable[[np.ndarray], float] | None = None,
    window: tuple[float, float] | None = None,
) -> DecodedClip:
    """Decode video and audio of one clip, aligned, at ``fps`` and ``sample_rate``. Raises ClipError.

    ``audio``: a separate audio file, starting at the video file's time zero; None = the video's own audio track.
    ``silent``: the audio is not read (speech synthesis from silent video); the clip gets zeros of the right length.
    ``scale``: frames resized as decoded (a factor, or a function of the first frame); ``info["decode_scale"]``
    then holds the (x, y) factors. ``window``: only the frames covering ``(start, end)`` seconds after the first
    frame (see :func:`avprep.stages.window.decode_window`).
    """
    if window is not None:
        from avprep.stages.window import decode_window

        return decode_window(video, audio, fps, sample_rate, window, spf_range, silent, scale)
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
            buffer = _FrameBuffer(min(int(vstream.frames or round((declared or 3.0) * nominal)) + 2, 3000), scale)
            sink = _AudioSink(sample_rate) if astream is not None else None
            for packet in container.demux(*(s for s in (vstream, astream) if s is not None)):
                if packet.stream is vstream:
                    for frame in packet.decode():
                        buffer.add(frame)
                        times.append(_frame_time(frame))
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
        raise io_error(e) or ClipError("unreadable video", f"{type(e).__name__}: {e}".splitlines()[0][:200]) from None

    frames = buffer.frames
    if len(frames) < MIN_FRAMES:
        raise ClipError("too few frames", f"{len(frames)} decoded frames")
    if any(t is None for t in times):  # anchored on the known ones, never re-timed from zero
        info["frames_without_timestamp"] = sum(t is None for t in times)
        times = fill_times(times, nominal)
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
    _check_stretch(decoded, nominal, len(frames))
    picks = order[place_frames(stamps, fps, last_duration)]
    # The common case, one source frame per target frame in order, keeps the decoded array as it is.
    identity = len(picks) == len(frames) and (picks == np.arange(len(frames))).all()
    stacked = frames if identity else frames[picks]
    _record(info, nominal, fps, len(frames), picks, buffer)
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


def _check_stretch(decoded: float, nominal: float, count: int) -> None:
    stretch = decoded * nominal / count  # timestamp span against what the frame count at the nominal rate gives
    if not np.isfinite(stretch) or stretch > 4:
        # A timestamp jump (a corrupt or hostile file) would stretch a few frames over hours of duplicates.
        raise ClipError("bad timestamps", f"{count} frames span {decoded:.1f} s of timestamps "
                        f"({stretch:.1f}x what {nominal:g} fps gives)")


def _record(info: dict, nominal: float, fps: float, count: int, picks: np.ndarray, buffer: _FrameBuffer) -> None:
    info["source_fps"] = round(nominal, 4)
    info["file_frames"] = count  # as decoded from the file, before placing them on the target grid
    if abs(nominal - fps) > 1e-3:
        info["resampled_from_frames"] = count
    shown = set(picks.tolist())
    info["duplicated_frames"] = int(len(picks) - len(shown))  # target frames showing a frame again
    info["unused_frames"] = int(count - len(shown))  # source frames no target frame shows
    if buffer.scale_xy != (1.0, 1.0):
        info["decode_scale"] = [round(v, 6) for v in buffer.scale_xy]
        info["source_size"] = list(buffer.source)


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
