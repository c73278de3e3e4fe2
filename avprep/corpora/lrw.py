"""LRW (Chung & Zisserman, 2016): find word clips, their label, split and word duration.

Layout read (``lipread_mp4`` as distributed, given as ``--root`` or as its parent):
``WORD/{train,val,test}/WORD_NNNNN.mp4`` with ``WORD_NNNNN.txt`` beside it; 500 word folders; every clip is
29 frames (1.16 s) at 25 fps, 256x256, with the word centred in it. The ``.txt`` holds lines such as
``Text: ABOUT``, ``Conf: 5`` and ``Duration: 0.53 seconds`` (the word's duration); a ``WORD START END`` table, where
present, gives the word's own start and end instead.
"""

from __future__ import annotations

import re
from pathlib import Path

from avbridge.sample import sample_key
from avprep.types import ClipSpec, Word

SPLITS = ("train", "val", "test")
CLIP_FRAMES, FPS = 29, 25.0
LAYOUT = "WORD/{train,val,test}/WORD_NNNNN.mp4 (+ .txt), as in LRW's lipread_mp4"


def _word_root(root: Path) -> Path:
    for candidate in (root, root / "lipread_mp4"):
        if candidate.is_dir() and any((d / s).is_dir() for d in candidate.iterdir() if d.is_dir() for s in SPLITS):
            return candidate
    raise FileNotFoundError(f"{root} is not an LRW folder: expected {LAYOUT}")


def vocabulary(root: Path) -> list[str]:
    """The word classes: every word folder under the root, sorted (500 in the full corpus); label = index here."""
    base = _word_root(Path(root))
    return sorted(d.name for d in base.iterdir() if d.is_dir() and any((d / s).is_dir() for s in SPLITS))


def read_metadata(path: Path) -> dict:
    """Text, duration (seconds) and, when listed, the word's start and end from an LRW ``.txt``."""
    out: dict = {}
    lines = path.read_text(errors="replace").splitlines()
    for i, line in enumerate(lines):
        key, sep, value = line.partition(":")
        if sep and key.strip() == "Text":
            out["text"] = value.strip()
        elif sep and key.strip() == "Duration":
            match = re.search(r"[-+]?\d*\.?\d+", value)
            if match:
                out["duration"] = float(match.group())
        elif line.split()[:3] == ["WORD", "START", "END"] and i + 1 < len(lines):
            parts = lines[i + 1].split()
            if len(parts) >= 3:
                out["start"], out["end"] = float(parts[1]), float(parts[2])
    return out


def _word_span(meta: dict) -> tuple[float, float] | None:
    if "start" in meta:
        return meta["start"], meta["end"]
    if "duration" in meta:
        # LRW centres each word in its 1.16 s clip; the .txt gives only the duration.
        middle = CLIP_FRAMES / FPS / 2
        half = min(meta["duration"], CLIP_FRAMES / FPS) / 2
        return round(middle - half, 4), round(middle + half, 4)
    return None


def find_clips(root: Path, words: list[str] | None = None, splits: tuple[str, ...] = SPLITS) -> list[ClipSpec]:
    """LRW clips under ``root`` for ``words`` (default: all) in ``splits``, sorted by key."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"LRW root {root} is not a directory (expected {LAYOUT})")
    unknown = set(splits) - set(SPLITS)
    if unknown:
        raise ValueError(f"unknown LRW split(s) {', '.join(sorted(unknown))}; choose from {', '.join(SPLITS)}")
    base = _word_root(root)
    vocab = vocabulary(root)
    chosen = vocab if words is None else words
    missing = [w for w in chosen if w not in vocab]
    if missing:
        raise FileNotFoundError(f"word folder(s) {', '.join(missing[:5])} not found under {base} (expected {LAYOUT})")
    clips = []
    for word in chosen:
        for split in splits:
            folder = base / word / split
            if not folder.is_dir():
                continue
            for video in sorted(folder.glob("*.mp4")):
                txt = video.with_suffix(".txt")
                problem = None
                try:
                    meta = read_metadata(txt) if txt.is_file() else {}
                except (OSError, ValueError) as e:  # one bad sidecar rejects its clip, never the run
                    meta, problem = {}, ("unreadable transcript", f"{txt.name}: {e}"[:300])
                text = meta.get("text", word)
                span = _word_span(meta)
                extra = [("word_duration", meta.get("duration")), ("clip_frames_expected", CLIP_FRAMES)]
                clips.append(ClipSpec(
                    key=sample_key(word, split, video.stem.rpartition("_")[2] or video.stem),
                    corpus="lrw", speaker="unknown",  # LRW does not identify speakers
                    utterance=video.stem, split=split, video=video, text=text,
                    words=(Word(text, *span),) if span else (), words_clock="video",  # the clip's own centre
                    label=vocab.index(word), extra=tuple(extra), problem=problem,
                ))
    if not clips:
        raise FileNotFoundError(f"no .mp4 clips under {base} for the words and splits asked (expected {LAYOUT})")
    return sorted(clips, key=lambda c: c.key)
