"""Decode an image-sequence clip (pre-cropped corpora such as LRW-1000): numbered frame images plus an audio file.

The audio decides the span: its length in frames (rounded) is how many images are read from the first one on, so
the video covers exactly what the audio covers. The audio file starts ``audio_start`` seconds after the first
image's start (LRW-1000's starts at the word, inside that image's 40 ms): it is placed there, behind that much
silence, so sound and picture stay in step (the bridging paper's handling of LRW-1000, whose audio runs past the
word boundary). A folder that runs out of images before the audio ends gives fewer frames; the audio is then fitted
to them under the same samples-per-frame sanity band as video clips, so a badly short folder is rejected.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from avprep.stages.decode import MIN_FRAMES, DecodedClip, fit_audio, read_audio
from avprep.stages.errors import ClipError, io_error


def _read_image(path: Path) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ClipError("unreadable image", f"{path.name} in {path.parent.name} is not a readable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def decode_images(
    folder: Path,
    first: int,
    suffix: str,
    audio: Path,
    fps: float,
    sample_rate: int,
    spf_range: tuple[int, int] = (560, 720),
    audio_start: float = 0.0,
) -> DecodedClip:
    """RGB frames ``folder/<first + k><suffix>`` for the audio's duration, and that audio at ``sample_rate``,
    starting ``audio_start`` seconds after the first image's start."""
    import av
    import cv2

    folder = Path(folder)
    if not folder.is_dir():
        raise ClipError("missing images", f"image folder {folder} not found")
    try:
        wave, _ = read_audio(audio, sample_rate)
    except ClipError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise io_error(e) or ClipError("unreadable audio", f"{type(e).__name__}: {e}".splitlines()[0][:200]) from None
    offset = int(round(audio_start * sample_rate))
    if offset > 0:
        wave = np.concatenate([np.zeros(offset, np.float32), wave])
    spf = int(round(sample_rate / fps))
    wanted = max(1, int(round(len(wave) / spf)))
    paths = [folder / f"{first + k}{suffix}" for k in range(wanted)]
    present = [p for p in paths if p.is_file()]
    # Only a run of images from the first one counts: a gap would silently shift video against audio.
    count = next((k for k, p in enumerate(paths) if not p.is_file()), wanted)
    if count < MIN_FRAMES:
        raise ClipError("too few frames", f"{count} images from {first}{suffix} in {folder.name} ({len(present)} of "
                        f"{wanted} the audio spans)")
    frames = [_read_image(p) for p in paths[:count]]
    height, width = frames[0].shape[:2]
    resized = 0
    for i, frame in enumerate(frames):
        if frame.shape[:2] != (height, width):
            # Crops of one word are meant to share a size; an odd one is resized rather than dropped.
            frames[i] = cv2.resize(frame, (width, height), interpolation=cv2.INTER_LINEAR)
            resized += 1
    info = {
        "source": "images",
        "first_image": first,
        "audio_seconds": round(len(wave) / sample_rate, 4),
        "audio_frames": wanted,
        "missing_tail_images": wanted - count,
        "resized_images": resized,
        "source_fps": fps,
        "audio_offset_samples": max(0, offset),
    }
    wave = fit_audio(wave, count, spf, spf_range, info)
    return DecodedClip(frames=np.stack(frames), audio=wave, fps=fps, sample_rate=sample_rate, info=info)
