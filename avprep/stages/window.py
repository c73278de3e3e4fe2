"""Decode one segment of a long clip (LRS2/LRS3 ``pretrain``) without decoding the whole clip.

:func:`decode_window` gives the target frames covering ``(start, end)`` seconds after the clip's first frame, and
their samples, exactly as :func:`avprep.stages.decode.decode_clip` of the whole clip followed by
:func:`avprep.stages.span.cut` gives them, decoding video only from the key frame before the window.
:func:`start_times` reads where the clip's first frame and first audio sample lie from the first packets alone (the
pipeline needs the audio offset to place a segment whose words count on the audio's clock before decoding it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from avprep.stages.decode import (
    MIN_FRAMES,
    DecodedClip,
    _AudioSink,
    _check_stretch,
    _frame_time,
    _FrameBuffer,
    _record,
    fill_times,
    pick_frames,
    read_audio,
)
from avprep.stages.errors import ClipError, io_error

WINDOW_MARGIN = 1.0  # seconds decoded before and after a window (its nearest frames, the audio decoder's run-in)


def start_times(video: Path, audio: Path | None = None, silent: bool = False) -> tuple[float, float | None]:
    """(time of the first video frame, time of the first audio sample) in the video file's clock, from the first
    packets only: what :func:`decode_clip` of the whole clip takes as its zero and its audio offset."""
    import av

    try:
        with av.open(str(video)) as container:
            if not container.streams.video:
                raise ClipError("no video stream", f"{video.name} has no video stream")
            vstream = container.streams.video[0]
            vstream.thread_type = "NONE"
            own = audio is None and not silent and bool(container.streams.audio)
            astream = container.streams.audio[0] if own else None
            zero = container.start_time / 1_000_000 if container.start_time is not None else 0.0
            first_video = first_audio = None
            seen = 0
            for packet in container.demux(*(s for s in (vstream, astream) if s is not None)):
                if packet.stream is vstream and first_video is None:
                    for frame in packet.decode():
                        first_video = _frame_time(frame)
                        first_video = zero if first_video is None else first_video
                        break
                elif astream is not None and packet.stream is astream and first_audio is None:
                    for frame in packet.decode():
                        first_audio = _frame_time(frame)
                        break
                seen += 1
                if first_video is not None and (astream is None or first_audio is not None or seen > 2000):
                    break
        if audio is not None and not silent:
            first_audio = zero + read_audio(audio, 16000)[1]
    except ClipError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise io_error(e) or ClipError("unreadable video", f"{type(e).__name__}: {e}".splitlines()[0][:200]) from None
    if first_video is None:
        raise ClipError("too few frames", "0 decoded frames")
    return first_video, first_audio


def _key_packet_before(video: Path, at: float) -> int | None:
    """The pts of the last key-frame video packet that starts at or before ``at`` seconds (packets only, nothing
    decoded), or None when there is none before it (decode from the first packet)."""
    import av

    key = None
    with av.open(str(video)) as container:
        vstream = container.streams.video[0]
        for packet in container.demux(vstream):
            if packet.pts is None or packet.time_base is None:
                continue
            if float(packet.pts * packet.time_base) > at:
                break
            if packet.is_keyframe:
                key = packet.pts
    return key


def decode_window(
    video: Path,
    audio: Path | None,
    fps: float,
    sample_rate: int,
    window: tuple[float, float],
    spf_range: tuple[int, int] = (560, 720),
    silent: bool = False,
    scale: float | Callable[[np.ndarray], float] | None = None,
) -> DecodedClip:
    """The target frames ``[floor(start * fps), ceil(end * fps))`` of a clip and their samples, decoding only
    around them: video from the key frame before ``start`` (less :data:`WINDOW_MARGIN`), the packets before it
    demuxed but not decoded, the demux stopped past ``end``. The audio is decoded from the file's start (a small
    share of the work): a codec such as AAC with noise substitution gives other samples when it starts mid-stream,
    so only this way are the samples exactly the whole clip's. ``window`` is in seconds after the clip's first
    frame; the frames, the audio offset and the samples are those :func:`decode_clip` of the whole clip gives at
    that place. The window is cut at the clip's end when it reaches past it. ``info`` as :func:`avprep.stages.span.cut`
    records it: ``segment_frames``, ``segment_seconds``, ``source_frames`` (None when the clip's end was not
    reached), and the clip's ``audio_offset_samples``."""
    import av

    start, end = window
    if not end > start >= 0:
        raise ClipError("bad segment", f"span {start:.3f}-{end:.3f} s")
    first_time, first_audio = start_times(video, audio, silent)
    first = max(0, math.floor(start * fps + 1e-6))
    last = math.ceil(end * fps - 1e-6)
    lo, hi = first_time + first / fps - WINDOW_MARGIN, first_time + last / fps + WINDOW_MARGIN
    own_audio = audio is None and not silent
    times: list[float | None] = []
    reached_end = True
    try:
        with av.open(str(video)) as container:
            vstream = container.streams.video[0]
            vstream.thread_type = "NONE"
            if own_audio and not container.streams.audio:
                raise ClipError("no audio stream", f"{video.name} has no audio stream")
            astream = container.streams.audio[0] if own_audio else None
            nominal = float(vstream.average_rate) if vstream.average_rate else float(fps)
            zero = container.start_time / 1_000_000 if container.start_time is not None else 0.0
            key = _key_packet_before(video, lo)
            buffer = _FrameBuffer(int((hi - lo) * nominal) + 2, scale)
            sink = _AudioSink(sample_rate) if astream is not None else None
            video_done, audio_done = False, astream is None
            feeding = key is None
            for packet in container.demux(*(s for s in (vstream, astream) if s is not None)):
                if packet.stream is vstream and not video_done:
                    # Video is decoded from the key frame before the window on; the packets before it are skipped
                    # undecoded (demuxing them costs next to nothing).
                    feeding = feeding or (packet.is_keyframe and packet.pts == key)
                    if not feeding:
                        continue
                    for frame in packet.decode():
                        t = _frame_time(frame)
                        if t is not None and t < lo:
                            continue
                        if t is not None and t > hi:
                            video_done = True
                            break
                        buffer.add(frame)
                        times.append(t)
                elif packet.stream is astream and not audio_done:
                    for frame in packet.decode():
                        t = _frame_time(frame)
                        if t is not None and t > hi:
                            audio_done = True
                            break
                        sink.add(frame)
                if video_done and audio_done:
                    reached_end = False
                    break
            if sink is not None:
                wave, astart = sink.finish(video.name)
        if audio is not None and not silent:
            wave, file_start = read_audio(audio, sample_rate)
            astart = zero + file_start
    except ClipError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise io_error(e) or ClipError("unreadable video", f"{type(e).__name__}: {e}".splitlines()[0][:200]) from None

    frames = buffer.frames
    if not len(frames):
        raise ClipError("truncated video", f"the segment {start:.2f}-{end:.2f} s starts after the clip's last frame")
    times = fill_times(times, nominal)
    stamps = np.asarray(times, np.float64)
    order = np.argsort(stamps, kind="stable")
    stamps = stamps[order]
    keep = np.concatenate([[True], np.diff(stamps) > 1e-6])
    order, stamps = order[keep], stamps[keep]
    steps = np.diff(stamps)
    last_duration = float(np.median(steps)) if len(steps) else 1.0 / nominal
    _check_stretch(stamps[-1] - stamps[0] + last_duration, nominal, len(frames))
    info: dict = {}
    total = None
    if reached_end:  # the clip's end is known: the whole clip's frame count, as decode_clip counts it
        total = max(1, int(round((stamps[-1] - first_time + last_duration) * fps)))
        last = min(last, total)
    if first >= last:
        raise ClipError("truncated video", f"the segment {start:.2f}-{end:.2f} s starts after the clip's "
                        f"{(total or 0) / fps:.2f} s")
    if last - first < MIN_FRAMES:
        raise ClipError("too few frames", f"{last - first} frames in the segment {start:.2f}-{end:.2f} s")
    picks = order[pick_frames(stamps - first_time, np.arange(first, last) / fps)]
    stacked = frames[picks]
    _record(info, nominal, fps, len(frames), picks, buffer)
    info.update({"source_frames": total, "segment_frames": [first, last],
                 "segment_seconds": [round(first / fps, 4), round(last / fps, 4)]})
    spf = int(round(sample_rate / fps))
    count = last - first
    if silent:
        info["silent"] = True
        return DecodedClip(frames=stacked, audio=np.zeros(count * spf, np.float32), fps=fps, sample_rate=sample_rate,
                           info=info)
    # The whole clip's audio offset (its first sample against its first frame), and this window's samples on that
    # clock: sample j of the clip's audio lies at first_time + j / sample_rate.
    offset = int(round(((first_audio if first_audio is not None else first_time) - first_time) * sample_rate))
    info["audio_offset_samples"] = offset
    at = int(round(((astart if astart is not None else first_time) - first_time) * sample_rate))
    lo_sample, hi_sample = first * spf, last * spf
    segment = np.zeros(count * spf, np.float32)
    a, b = max(lo_sample, at), min(hi_sample, at + len(wave))
    if b > a:
        segment[a - lo_sample : b - lo_sample] = wave[a - at : b - at]
    held = max(0, b - a)
    info["audio_trim_samples"] = held - count * spf  # < 0: zeros padded where the audio has no samples
    # The whole clip may lack up to (spf - spf_range[0]) samples per frame at its end (fit_audio pads them): a
    # window is held to that, over the whole clip when it reaches the end, else over its own frames.
    missing, allowed = count * spf - held, (spf - spf_range[0]) * (total if total is not None else count)
    if missing > allowed:
        raise ClipError("audio/video length", f"{held} audio samples for the segment's {count} frames = "
                        f"{held / count:.0f} per frame, under {spf_range[0]}")
    return DecodedClip(frames=stacked, audio=segment, fps=fps, sample_rate=sample_rate, info=info)
