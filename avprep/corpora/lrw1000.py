"""LRW-1000 / CAS-VSR-W1k (Yang et al., 2019): find word samples, their label, split and audio.

Layout read (``LRW1000_Public`` as distributed, given as ``--root`` or as its parent):

- ``images/FOLDER/N.jpg``: pre-cropped lip images of one recording, numbered from 1 at 25 fps (the frame at time
  ``t`` seconds is ``int(t * 25) + 1``, as the public loaders index it);
- ``audio/AUDIO.wav``: one audio file per word sample (it runs 0.4 s past the word boundary);
- ``info/{trn,val,tst}_1000.txt``: one word sample per line, ``FOLDER,CHINESE,PINYIN,START,END`` (START and END:
  the word's boundary in seconds within FOLDER's frames); a six-column line ``FOLDER,AUDIO,CHINESE,PINYIN,START,END``
  names the audio itself;
- ``info/all_audio_video.txt``: ``FOLDER,AUDIO,CHINESE,PINYIN,START,END`` for every sample, the audio of a
  five-column split line (joined on folder, pinyin, start and end).

The class of a sample is its pinyin (1000 classes; label = index in the sorted pinyins of all split files). The
Chinese and pinyin columns are told apart by their characters, so either order is read. Keys are the folder and the
word's timestamps with the dots replaced (``FOLDER_0_28_0_76``): webdataset splits member names at the first dot.
"""

from __future__ import annotations

from pathlib import Path

from avbridge.sample import sample_key
from avprep.types import ClipSpec, Word

FPS = 25.0
SPLIT_FILES = {"train": "trn_1000.txt", "val": "val_1000.txt", "test": "tst_1000.txt"}
AUDIO_INDEX = "all_audio_video.txt"
AUDIO_SUFFIXES = (".wav", ".flac", ".m4a", ".mp3")
LAYOUT = ("images/FOLDER/N.jpg, audio/AUDIO.wav and info/{trn,val,tst}_1000.txt (+ info/all_audio_video.txt), "
          "as in LRW1000_Public")


def _has_cjk(text: str) -> bool:
    return any("\u3400" <= ch <= "\u9fff" for ch in text)


def _base(root: Path) -> Path:
    for candidate in (root, root / "LRW1000_Public"):
        if (candidate / "info").is_dir() and (candidate / "images").is_dir():
            return candidate
    raise FileNotFoundError(f"{root} is not an LRW-1000 folder: expected {LAYOUT}")


def _time_key(value: str) -> str:
    return f"{float(value):.3f}"


def _parse(line: str, path: Path, number: int) -> dict | None:
    parts = [p.strip() for p in line.strip().split(",")]
    if parts == [""]:
        return None
    if len(parts) == 5:
        folder, a, b, start, end = parts
        audio = None
    elif len(parts) == 6:
        folder, audio, a, b, start, end = parts
    else:
        raise ValueError(f"{path}:{number}: expected 5 or 6 comma-separated fields (see {LAYOUT}), got {len(parts)}")
    chinese, pinyin = (b, a) if _has_cjk(b) and not _has_cjk(a) else (a, b)
    try:
        float(start), float(end)
    except ValueError:
        raise ValueError(f"{path}:{number}: start/end {start!r}, {end!r} are not seconds") from None
    return {"folder": folder, "audio": audio, "chinese": chinese, "pinyin": pinyin, "start": start, "end": end}


def _read(path: Path) -> list[dict]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        row = _parse(line, path, number)
        if row:
            rows.append(row)
    return rows


def _audio_file(base: Path, name: str) -> Path:
    direct = base / "audio" / name
    if direct.suffix and direct.is_file():
        return direct
    for suffix in AUDIO_SUFFIXES:
        if (base / "audio" / f"{name}{suffix}").is_file():
            return base / "audio" / f"{name}{suffix}"
    return base / "audio" / f"{name}.wav"  # missing: the decode stage rejects the sample with this path named


def find_clips(root: Path, splits: tuple[str, ...] = tuple(SPLIT_FILES), audio_lead: float = 0.0) -> list[ClipSpec]:
    """LRW-1000 word samples under ``root`` in ``splits``, sorted by key.

    ``audio_lead``: seconds the audio file starts before the word's START (0: it starts at the word and runs 0.4 s
    past its END). The video span starts there too and is as long as the audio (matched in the decode stage).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"LRW-1000 root {root} is not a directory (expected {LAYOUT})")
    unknown = set(splits) - set(SPLIT_FILES)
    if unknown:
        raise ValueError(f"unknown LRW-1000 split(s) {', '.join(sorted(unknown))}; "
                         f"choose from {', '.join(SPLIT_FILES)}")
    base = _base(root)
    per_split = {}
    for split, name in SPLIT_FILES.items():
        path = base / "info" / name
        if path.is_file():
            per_split[split] = _read(path)
    if not per_split:
        raise FileNotFoundError(f"no split files ({', '.join(SPLIT_FILES.values())}) in {base / 'info'} "
                                f"(expected {LAYOUT})")
    vocab = sorted({r["pinyin"] for rows in per_split.values() for r in rows})
    audio_index = {}
    if (base / "info" / AUDIO_INDEX).is_file():
        for r in _read(base / "info" / AUDIO_INDEX):
            audio_index[(r["folder"], r["pinyin"], _time_key(r["start"]), _time_key(r["end"]))] = r["audio"]
    clips = []
    for split in splits:
        for r in per_split.get(split, []):
            index_key = (r["folder"], r["pinyin"], _time_key(r["start"]), _time_key(r["end"]))
            audio = r["audio"] or audio_index.get(index_key)
            if audio is None:
                raise FileNotFoundError(f"no audio for {r['folder']},{r['start']},{r['end']} in info/{AUDIO_INDEX} "
                                        f"(expected {LAYOUT})")
            start, end = float(r["start"]), float(r["end"])
            audio_from = max(0.0, start - audio_lead)  # where the audio file starts in the folder's time
            first = int(audio_from * FPS) + 1
            span_start = (first - 1) / FPS
            # The word's boundaries count from the first image (the folder's time): on the video's clock.
            word = Word(r["pinyin"], round(start - span_start, 4), round(end - span_start, 4))
            clips.append(ClipSpec(
                key=sample_key(r["folder"], r["start"], r["end"]),
                corpus="lrw1000", speaker="unknown",  # the public release does not identify speakers
                utterance=f"{r['folder']}_{r['start']}_{r['end']}", split=split,
                video=base / "images" / r["folder"], audio=_audio_file(base, audio), text=r["chinese"],
                words=(word,), label=vocab.index(r["pinyin"]), first_image=first, words_clock="video",
                # The audio starts at the word (less the lead), inside its image's 40 ms: not on the image's start.
                audio_start=round(audio_from - span_start, 6),
                extra=(("pinyin", r["pinyin"]), ("word_start", start), ("word_end", end),
                       # the word's image numbers as the public loaders compute them (int(t * 25) + 1)
                       ("word_images", [int(start * FPS) + 1, int(end * FPS) + 1]),
                       ("audio_lead", audio_lead)),
            ))
    keys = [c.key for c in clips]
    if len(set(keys)) != len(keys):
        raise ValueError("LRW-1000 info files list the same folder and timestamps twice")
    return sorted(clips, key=lambda c: c.key)


def vocabulary(root: Path) -> list[str]:
    """The pinyin classes of all split files, sorted; a sample's label is its index here."""
    base = _base(Path(root))
    return sorted({r["pinyin"] for name in SPLIT_FILES.values() if (base / "info" / name).is_file()
                   for r in _read(base / "info" / name)})
