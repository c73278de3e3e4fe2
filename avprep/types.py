"""The values that flow through avprep: what a corpus module finds, and what the pipeline makes of it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Word:
    word: str
    start: float  # seconds from the start of the clip (of its audio or its video: ClipSpec.words_clock)
    end: float


@dataclass(frozen=True)
class ClipSpec:
    """One source clip, as a corpus module finds it. Everything the per-clip pipeline needs, nothing more."""

    key: str  # webdataset-safe, unique within a corpus (no dots)
    corpus: str
    speaker: str
    utterance: str
    split: str
    video: Path  # the video file; for an image-sequence clip, the folder of its images
    audio: Path | None = None  # separate audio file; None = the video's own audio stream
    text: str = ""
    words: tuple[Word, ...] = ()
    label: int | None = None  # class index of a whole-clip sample (word corpora: LRW, LRW-1000)
    # Image-sequence source (pre-cropped corpora): frames are ``video/<n><image_suffix>`` numbered from
    # ``first_image``; how many are read follows from the audio's length (the stage matches the span to it).
    first_image: int | None = None
    image_suffix: str = ".jpg"
    # A segment of a long source clip: (start, end) seconds of ``video`` that this clip covers, cut after decoding
    # (``words`` stay in the source's time; the pipeline makes them relative to the cut). None = the whole clip.
    span: tuple[float, float] | None = None
    # How long the corpus says the clip is (GRID: 3 s, or its alignment's end): a file that decodes to less is
    # rejected as truncated even when its container declares no length. None = unknown.
    expected_seconds: float | None = None
    extra: tuple[tuple[str, Any], ...] = ()  # corpus-specific metadata, copied into the sample JSON
    # What clock ``words`` (and ``span``) count on. "audio": from the audio's first sample, as alignments made on the
    # audio do (GRID, LRS2/LRS3): the pipeline moves them by the decoded audio offset onto the video's clock, on
    # which frames and samples are cut. "video": from the first video frame already (LRW-1000's boundaries, LRW's
    # centred word).
    words_clock: str = "audio"
    # Seconds after the start of an image sequence's first image at which its ``audio`` file starts: LRW-1000's
    # audio starts at the word (less ``audio_lead``), inside that image's 40 ms, not on its boundary. (A video file's
    # separate audio starts at the video file's time zero.)
    audio_start: float = 0.0
    # A clip the listing already knows it cannot use, as (reason, detail): a missing or unreadable transcript, a
    # listed video that is not there. It is rejected without being processed, counted like any other rejection.
    problem: tuple[str, str] | None = None


@dataclass
class Sample:
    """One training sample: webdataset fields (already encoded to bytes) under one key."""

    key: str
    split: str
    fields: dict[str, bytes]
    seconds: float


# Reasons a clip may not meet again on another try: its worker died or hung, or storage failed. A resume retries
# such a clip (``PrepOptions.retry_transient`` times; every other reason is the clip's own and permanent: no face,
# no audio, truncated, audio/video length, ...).
TRANSIENT_REASONS = ("worker crashed", "timeout", "out of memory", "I/O error")


def is_transient(reason: str) -> bool:
    return reason in TRANSIENT_REASONS


@dataclass
class Rejection:
    """A clip the pipeline could not turn into a sample, and why (one line a user can act on)."""

    key: str
    split: str
    reason: str  # a short category, counted in the summary: "no face", "audio/video length", ...
    detail: str = ""
    trace: str = ""  # the traceback of an "internal error" (a bug to report), empty otherwise


@dataclass
class ClipResult:
    """What processing one clip yields: its samples (several with unit=word) or a rejection; stage timings."""

    key: str
    samples: list[Sample] = field(default_factory=list)
    rejection: Rejection | None = None
    timings: dict[str, float] = field(default_factory=dict)  # wall seconds per stage
    cpu_timings: dict[str, float] = field(default_factory=dict)  # process CPU seconds per stage
