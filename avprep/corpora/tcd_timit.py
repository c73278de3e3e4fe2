"""TCD-TIMIT (Harte & Gillen, 2015): find clips of volunteers and lipspeakers, their text and the 90/10 split.

Layout read (as the per-speaker downloads unpack):
``volunteers/NN[MF]/Clips/straightcam/UTT.mp4`` (59 volunteers, e.g. ``01M``) and
``lipspeakers/LipspkrN/Clips/straightcam/UTT.mp4`` (3 lipspeakers); ``30degcam`` beside ``straightcam`` holds the
30-degree camera. Videos are 1920x1080 at 29.97 fps with 48 kHz audio; UTT is the TIMIT sentence id (``sa1``,
``si1234``, ``sx56``). An optional ``UTT.txt`` beside the video gives the sentence (TIMIT style: a leading pair of
sample offsets is dropped).

Split: the two-tower paper trains on "a random 90/10 train/test split of the 254 videos of Lipspeakers 1-3". We make
that split reproducible: within each speaker, clips are ranked by a hash of (seed, speaker, utterance) and the first
10% (rounded half up: 9 + 9 + 8 of 85 + 85 + 84) are ``test``. A clip's split never depends on which other speakers
or clips are in the run.
"""

from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path

from avbridge.sample import sample_key
from avprep.types import ClipSpec

GROUPS = {"volunteers": re.compile(r"^\d{2}[MF]$"), "lipspeakers": re.compile(r"^Lipspkr\d+$")}
CAMERAS = ("straightcam", "30degcam")
LAYOUT = "volunteers/NN[MF]/Clips/straightcam/UTT.mp4 and/or lipspeakers/LipspkrN/Clips/straightcam/UTT.mp4"


def speaker_folders(root: Path) -> dict[str, Path]:
    """Every speaker folder under the root: name -> folder."""
    found = {}
    for group, pattern in GROUPS.items():
        folder = root / group
        if folder.is_dir():
            for d in sorted(folder.iterdir()):
                if d.is_dir() and pattern.match(d.name):
                    found[d.name] = d
    return found


def _select(found: dict[str, Path], speakers: str | list[str] | None) -> list[str]:
    if speakers is None or speakers == "all":
        return list(found)
    if isinstance(speakers, str) and speakers in GROUPS:
        return [name for name in found if GROUPS[speakers].match(name)]
    names = speakers.split(",") if isinstance(speakers, str) else list(speakers)
    names = [n.strip() for n in names if n.strip()]
    missing = [n for n in names if n not in found]
    if missing:
        raise FileNotFoundError(f"speaker folder(s) {', '.join(missing)} not found "
                                f"(known: {', '.join(found) or 'none'})")
    return names


def read_text(path: Path) -> str:
    words = path.read_text(errors="replace").split()
    if len(words) >= 2 and words[0].isdigit() and words[1].isdigit():
        words = words[2:]  # TIMIT .txt: "0 46797 She had your dark suit ..."
    return " ".join(words)


def split_of(speaker: str, utterances: list[str], test_fraction: float, seed: int) -> dict[str, str]:
    """Reproducible random split of one speaker's utterances: ``test_fraction * n`` (rounded half up) go to test."""
    def rank(u: str) -> str:
        return hashlib.sha256(f"{seed}:{speaker}:{u}".encode()).hexdigest()

    ordered = sorted(utterances, key=rank)
    n_test = math.floor(test_fraction * len(utterances) + 0.5)  # half up: 85 clips -> 9 (round() would give 8)
    return {u: ("test" if i < n_test else "train") for i, u in enumerate(ordered)}


def find_clips(root: Path, speakers: str | list[str] | None = "lipspeakers", camera: str = "straightcam",
               test_fraction: float = 0.1, seed: int = 0) -> list[ClipSpec]:
    """TCD-TIMIT clips for ``speakers`` ("lipspeakers", "volunteers", "all" or a list of folder names), sorted by
    key."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"TCD-TIMIT root {root} is not a directory (expected {LAYOUT})")
    if camera not in CAMERAS:
        raise ValueError(f"unknown camera {camera!r}; choose one of {', '.join(CAMERAS)}")
    if not 0 <= test_fraction < 1:
        raise ValueError(f"test fraction must be in [0, 1), got {test_fraction}")
    found = speaker_folders(root)
    if not found:
        raise FileNotFoundError(f"{root} holds no TCD-TIMIT speaker folders: expected {LAYOUT}")
    chosen = _select(found, speakers)
    if not chosen:
        raise FileNotFoundError(f"no {speakers} folders under {root} (expected {LAYOUT})")
    clips = []
    for speaker in chosen:
        folder = found[speaker] / "Clips" / camera
        videos = sorted(folder.glob("*.mp4")) if folder.is_dir() else []
        if not videos:
            raise FileNotFoundError(f"no .mp4 clips in {folder} (expected {LAYOUT})")
        splits = split_of(speaker, [v.stem for v in videos], test_fraction, seed)
        group = next(g for g, pattern in GROUPS.items() if pattern.match(speaker))
        for video in videos:
            txt = video.with_suffix(".txt")
            clips.append(ClipSpec(
                key=sample_key(speaker, video.stem), corpus="tcd-timit", speaker=speaker, utterance=video.stem,
                split=splits[video.stem], video=video, text=read_text(txt) if txt.is_file() else "",
                extra=(("speaker_group", group), ("camera", camera), ("split_seed", seed)),
            ))
    return sorted(clips, key=lambda c: c.key)
