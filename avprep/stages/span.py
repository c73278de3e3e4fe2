"""Cut a decoded clip to the time span of one segment (``ClipSpec.span``), and put its words in the cut's time.

A segment covers the frames that hold any of ``[start, end)`` at the target rate (the frame containing ``start`` to
the frame containing ``end``), and exactly ``samples_per_frame`` audio samples per frame of those, so audio and video
stay as aligned as in the whole clip. Adjacent segments cut between words may share the one frame their boundary
falls in. A span past the clip's end is cut at the end; if the segment's words then run past its audio (a clip
shorter than its transcript says), the clip is rejected rather than given a transcript it does not hold.
"""

from __future__ import annotations

import math
from dataclasses import replace

from avprep.stages.decode import DecodedClip
from avprep.stages.errors import ClipError
from avprep.types import ClipSpec, Word

# Word tables give times to 10 ms: a last word ending up to half of that past the audio is the table's rounding.
ROUNDING_SECONDS = 0.005


def first_frame(start: float, fps: float) -> int:
    return max(0, math.floor(start * fps + 1e-6))


def localise(spec: ClipSpec, fps: float) -> ClipSpec:
    """The spec with its words in seconds from the segment's first frame (unchanged without a span)."""
    if spec.span is None:
        return spec
    offset = first_frame(spec.span[0], fps) / fps
    words = tuple(Word(w.word, round(w.start - offset, 6), round(w.end - offset, 6)) for w in spec.words)
    return replace(spec, words=words)


def cut(clip: DecodedClip, span: tuple[float, float], words: tuple[Word, ...] = (), min_frames: int = 2) -> DecodedClip:
    """Frames and audio of ``clip`` within ``span`` (seconds of the source clip); ``words`` in the cut's time
    (see :func:`localise`) must end within it. Raises ClipError."""
    start, end = span
    if not end > start >= 0:
        raise ClipError("bad segment", f"span {start:.3f}-{end:.3f} s")
    fps, n = clip.fps, clip.num_frames
    first = first_frame(start, fps)
    last = min(n, math.ceil(end * fps - 1e-6))
    seconds = n / fps
    words_end = max((w.end for w in words), default=0.0)
    if first >= n or words_end > (last - first) / fps + ROUNDING_SECONDS:
        raise ClipError("truncated video", f"the segment's words run to {first / fps + words_end:.2f} s, the clip "
                                           f"decodes to {seconds:.2f} s")
    if last - first < min_frames:
        raise ClipError("too few frames", f"{last - first} frames in the segment {start:.2f}-{end:.2f} s")
    spf = len(clip.audio) // n
    info = {**clip.info, "source_frames": n, "segment_frames": [first, last],
            "segment_seconds": [round(first / fps, 4), round(last / fps, 4)]}
    return DecodedClip(frames=clip.frames[first:last], audio=clip.audio[first * spf : last * spf], fps=fps,
                       sample_rate=clip.sample_rate, info=info)


def on_video_clock(spec: ClipSpec, audio_offset: float) -> ClipSpec:
    """The spec with its words and span on the video's clock: moved by ``audio_offset`` seconds (the audio's first
    sample after the first frame) when they count on the audio's (``words_clock == "audio"``: alignments made on
    the audio, GRID's and LRS's); unchanged otherwise."""
    if spec.words_clock != "audio" or not audio_offset:
        return spec
    words = tuple(Word(w.word, round(w.start + audio_offset, 6), round(w.end + audio_offset, 6)) for w in spec.words)
    span = None if spec.span is None else (max(0.0, spec.span[0] + audio_offset), spec.span[1] + audio_offset)
    return replace(spec, words=words, span=span)


def check_window(clip: DecodedClip, span: tuple[float, float], words: tuple[Word, ...] = ()) -> None:
    """What :func:`cut` checks, for a segment decoded on its own (``decode_clip(window=...)``): its words (in the
    cut's time) must end within its frames. Raises ClipError."""
    first, last = clip.info["segment_frames"]
    total = clip.info.get("source_frames")
    words_end = max((w.end for w in words), default=0.0)
    if words_end > (last - first) / clip.fps + ROUNDING_SECONDS:
        decodes = (f"the clip decodes to {total / clip.fps:.2f} s" if total
                   else f"the segment ends at {last / clip.fps:.2f} s")
        raise ClipError("truncated video", f"the segment's words run to {first / clip.fps + words_end:.2f} s, "
                                           f"{decodes}")
