"""The library versions a run's samples depend on, recorded in ``run.json`` and in every ledger row.

Same corpus, preset, seed and these versions give the same shard bytes; another version of the detector (landmarks),
of FFmpeg (decoded frames, resampled audio), x264 (crop bytes) or OpenCV (warps, colour conversion) may not. A resume
with other versions is refused (``--allow-version-change`` lets it add samples, and ``index.json`` then says which
shards each set of versions made).
"""

from __future__ import annotations

import functools
import importlib.metadata
import re

from avbridge import __version__

OPENCV_DISTRIBUTIONS = ("opencv-contrib-python", "opencv-python", "opencv-python-headless",
                        "opencv-contrib-python-headless")


def _distribution(*names: str) -> str | None:
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def x264_version() -> str | None:
    """The x264 build PyAV encodes with, as it signs its streams ("core 165"): a 2-frame encode, ~5 ms."""
    try:
        import numpy as np

        from avbridge.codecs import encode_video

        data = encode_video(np.zeros((2, 16, 16), np.uint8))
    except Exception:  # noqa: BLE001 - no libx264 in this FFmpeg: nothing to record
        return None
    match = re.search(rb"x264 - (core \d+(?: r\d+ [0-9a-f]+)?)", data)
    return match.group(1).decode() if match else None


@functools.cache
def library_versions() -> dict[str, str | None]:
    """{"avbridge", "mediapipe", "pyav", "ffmpeg" (libavcodec), "x264", "opencv"}: version strings (None: absent).
    Read from package metadata where possible, so the detector is not imported for it."""
    import av

    codec = av.library_versions.get("libavcodec")
    return {
        "avbridge": __version__,
        "mediapipe": _distribution("mediapipe"),
        "pyav": av.__version__,
        "ffmpeg": getattr(av, "ffmpeg_version_info", None) or None,
        "libavcodec": ".".join(map(str, codec)) if codec else None,
        "x264": x264_version(),
        "opencv": _distribution(*OPENCV_DISTRIBUTIONS),
    }
