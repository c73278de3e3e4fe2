"""GRID (Cooke et al., 2006): find clips, their text, word alignments and split in any of GRID's known layouts.

Layouts read (per speaker ``sN``):
- videos: ``sN/*.mpg``, ``sN/video/*.mpg``, ``sN/video/mpg_6000/*.mpg`` (official archives), ``sN/video/*.mkv|mp4``
  (the avbridge sample);
- alignments (optional): ``sN/align/UTT.align`` or ``alignments/sN/UTT.align``; units of 1/25000 s;
- separate audio (optional, the official 50 kHz wavs): ``sN/audio/UTT.wav``, used instead of the video's track.
"""

from __future__ import annotations

import csv
from pathlib import Path

from avbridge.manifests_path import manifest_file
from avprep.types import ClipSpec, Word

ALIGN_UNITS_PER_SECOND = 25000.0
# Every GRID sentence is a 3-second recording (75 frames at 25 fps; a few have 74); its alignment, when there is
# one, ends at 74500 units = 2.98 s (all 1000 of s1). A clip that decodes shorter was cut off.
CLIP_SECONDS = 3.0
VIDEO_SUFFIXES = (".mpg", ".mkv", ".mp4", ".avi", ".mov")
SPLIT_SCHEMES = ("speaker-dependent", "speaker-independent", "none")

_COMMAND = {"b": "bin", "l": "lay", "p": "place", "s": "set"}
_COLOUR = {"b": "blue", "g": "green", "r": "red", "w": "white"}
_PREPOSITION = {"a": "at", "b": "by", "i": "in", "w": "with"}
_DIGIT = {"z": "zero", "1": "one", "2": "two", "3": "three", "4": "four", "5": "five", "6": "six", "7": "seven",
          "8": "eight", "9": "nine"}
_ADVERB = {"a": "again", "n": "now", "p": "please", "s": "soon"}


def vocabulary() -> list[str]:
    """The 51 GRID words; a word's class label is its index here."""
    return manifest_file("grid/vocab.txt").read_text().split()


def text_from_utterance(utterance: str) -> str:
    """The sentence an utterance id encodes by the GRID grammar: 'bbaf2n' -> 'bin blue at f two now'."""
    u = utterance.lower()
    if len(u) != 6:
        raise ValueError(f"GRID utterance ids have 6 characters, got {utterance!r}")
    try:
        words = [_COMMAND[u[0]], _COLOUR[u[1]], _PREPOSITION[u[2]], u[3], _DIGIT[u[4]], _ADVERB[u[5]]]
    except KeyError as e:
        raise ValueError(f"{utterance!r} is not a GRID utterance id (bad code {e.args[0]!r})") from None
    if u[3] == "w" or not u[3].isalpha():
        raise ValueError(f"{utterance!r} is not a GRID utterance id (letter {u[3]!r})")
    return " ".join(words)


def alignment_end(path: Path) -> float | None:
    """Where a ``.align`` file's last entry (silence included) ends, in seconds: how long the recording is."""
    ends = [int(parts[1]) for parts in (line.split() for line in path.read_text().split("\n")) if len(parts) == 3]
    return max(ends) / ALIGN_UNITS_PER_SECOND if ends else None


def read_alignment(path: Path) -> tuple[Word, ...]:
    """Words of a ``.align`` file in seconds, silences and short pauses dropped."""
    words = []
    for line in path.read_text().split("\n"):
        parts = line.split()
        if len(parts) != 3 or parts[2] in ("sil", "sp"):
            continue
        start, end = int(parts[0]) / ALIGN_UNITS_PER_SECOND, int(parts[1]) / ALIGN_UNITS_PER_SECOND
        words.append(Word(parts[2], start, end))
    return tuple(words)


def load_splits(scheme: str) -> dict[tuple[str, str], str]:
    """(speaker, utterance) -> split for a published split scheme; empty for 'none'."""
    if scheme not in SPLIT_SCHEMES:
        raise ValueError(f"unknown GRID split scheme {scheme!r}; choose one of {', '.join(SPLIT_SCHEMES)}")
    if scheme == "none":
        return {}
    with manifest_file(f"grid/{scheme.replace('-', '_')}.tsv").open() as f:
        return {(r["speaker"], r["utterance"]): r["split"] for r in csv.DictReader(f, delimiter="\t")}


def _videos(speaker_dir: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for sub in ("", "video", "video/mpg_6000"):
        folder = speaker_dir / sub
        if folder.is_dir():
            for path in sorted(folder.iterdir()):
                if path.suffix.lower() in VIDEO_SUFFIXES and path.is_file():
                    found.setdefault(path.stem, path)
    return found


def _alignment_path(root: Path, speaker: str, utterance: str) -> Path | None:
    for candidate in (root / speaker / "align" / f"{utterance}.align",
                      root / "alignments" / speaker / f"{utterance}.align"):
        if candidate.is_file():
            return candidate
    return None


def find_clips(
    root: Path,
    speakers: list[str] | None = None,
    split_scheme: str = "speaker-dependent",
    unlisted_split: str = "unlisted",
) -> list[ClipSpec]:
    """All GRID clips under ``root`` for ``speakers`` (default: every ``sN`` folder), sorted by key.

    A clip missing from the split scheme's lists goes to ``unlisted_split``, so nothing is dropped silently.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"GRID root {root} is not a directory")
    if speakers is None:
        speakers = sorted((p.name for p in root.iterdir() if p.is_dir() and p.name[:1] == "s" and p.name[1:].isdigit()),
                          key=lambda s: int(s[1:]))
    splits = load_splits(split_scheme)
    clips = []
    for speaker in speakers:
        speaker_dir = root / speaker
        if not speaker_dir.is_dir():
            raise FileNotFoundError(f"speaker folder {speaker_dir} not found (speakers are named s1 ... s34)")
        videos = _videos(speaker_dir)
        if not videos:
            raise FileNotFoundError(f"no videos ({', '.join(VIDEO_SUFFIXES)}) under {speaker_dir}")
        for utterance, video in videos.items():
            align = _alignment_path(root, speaker, utterance)
            audio = speaker_dir / "audio" / f"{utterance}.wav"
            try:
                text = text_from_utterance(utterance)
            except ValueError:
                text = ""  # not a grammar id: the alignment (if any) still gives the words
            words = read_alignment(align) if align else ()
            if words and not text:
                text = " ".join(w.word for w in words)
            clips.append(
                ClipSpec(
                    key=f"{speaker}_{utterance}",
                    corpus="grid",
                    speaker=speaker,
                    utterance=utterance,
                    split=splits.get((speaker, utterance), unlisted_split),
                    video=video,
                    audio=audio if audio.is_file() else None,
                    text=text,
                    words=words,
                    expected_seconds=(alignment_end(align) if align else None) or CLIP_SECONDS,
                )
            )
    return sorted(clips, key=lambda c: c.key)
