"""Any folder of talking-face videos: every video under the root (recursively), or the ones a CSV manifest lists.

- Without a manifest: each video file is a clip; ``NAME.txt`` beside ``NAME.mp4`` (optional) is its transcript
  (an LRS/LRW-style ``.txt``, ``Text:  WORDS`` + ``Conf:`` + a ``WORD START END`` table, gives its ``Text:`` line
  and the word timings instead);
  the speaker is the video's parent folder relative to the root (``""`` for videos at the top).
- With a manifest (CSV with a header): column ``path`` (relative to the root, or absolute) is required; ``text``,
  ``speaker``, ``split`` and ``audio`` (a separate audio file) are optional. A ``text`` column overrides sidecars.

Keys are the relative path without its suffix, separators and dots replaced by underscores; two videos that map to
the same key (``a/b_c.mp4`` and ``a_b/c.mp4``) are refused rather than merged.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from avbridge.sample import sample_key
from avprep.corpora import lrs_sidecar
from avprep.types import ClipSpec, Word

VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".mpg", ".mpeg", ".webm")
MANIFEST_COLUMNS = ("path", "text", "speaker", "split", "audio")


def _sidecar(video: Path) -> tuple[str, tuple[Word, ...], tuple[str, str] | None]:
    """Text and word timings of ``NAME.txt``: an LRS/LRW-style file gives its ``Text:`` line and word table, any
    other file is the transcript itself. Third: the problem of a sidecar that cannot be read (the clip is then
    rejected with it, the run goes on), else None."""
    txt = video.with_suffix(".txt")
    if not txt.is_file():
        return "", (), None
    try:
        content = txt.read_text(encoding="utf-8", errors="replace")
        parsed = lrs_sidecar.parse(content, str(txt))
    except (OSError, ValueError) as e:
        return "", (), ("unreadable transcript", str(e).splitlines()[0][:300])
    return ((parsed.text, parsed.words) if parsed else (" ".join(content.split()), ())) + (None,)


def _rows_from_manifest(root: Path, manifest: Path) -> list[dict]:
    manifest = Path(manifest)
    with manifest.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        if "path" not in columns:
            raise ValueError(f"manifest {manifest} needs a 'path' column (optional: text, speaker, split, audio); "
                             f"it has {', '.join(columns) or 'no header'}")
        unknown = set(columns) - set(MANIFEST_COLUMNS)
        if unknown:
            raise ValueError(f"manifest {manifest}: unknown column(s) {', '.join(sorted(unknown))}")
        rows = []
        for number, row in enumerate(reader, 2):
            video = Path(row["path"]) if Path(row["path"]).is_absolute() else root / row["path"]
            problem = None if video.is_file() else ("missing video", f"manifest {manifest.name}, line {number}: "
                                                                     f"{video} not found")
            audio = row.get("audio") or None
            # The manifest's text wins; a sidecar's word timings would not belong to it.
            text, words, sidecar_problem = (row["text"], (), None) if row.get("text") is not None else _sidecar(video)
            rows.append({
                "problem": problem or sidecar_problem,
                "video": video,
                "text": text,
                "words": words,
                "speaker": row.get("speaker"),
                "split": row.get("split") or None,
                "audio": (Path(audio) if Path(audio).is_absolute() else root / audio) if audio else None,
            })
    return rows


def find_clips(root: Path, manifest: Path | None = None, split: str = "train") -> list[ClipSpec]:
    """Clips of a folder of videos (or of a CSV manifest), sorted by key; ``split`` where the manifest gives none."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"folder root {root} is not a directory")
    if manifest is not None:
        rows = _rows_from_manifest(root, manifest)
    else:
        videos = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
        rows = []
        for v in videos:
            text, words, problem = _sidecar(v)
            rows.append({"video": v, "text": text, "words": words, "speaker": None, "split": None, "audio": None,
                         "problem": problem})
    if not rows:
        raise FileNotFoundError(f"no videos ({', '.join(VIDEO_SUFFIXES)}) under {root}")
    clips, seen = [], {}
    for row in rows:
        video = row["video"]
        try:
            # abspath, not resolve(): a symlinked video keeps the name it has under the root.
            relative = Path(os.path.abspath(video)).relative_to(os.path.abspath(root))
        except ValueError:
            relative = Path(video.name)  # an absolute path outside the root: keyed by its name
        key = sample_key(*relative.with_suffix("").parts)
        if key in seen:
            raise ValueError(f"{video} and {seen[key]} both map to the key {key!r}; rename one")
        seen[key] = video
        speaker = row["speaker"] if row["speaker"] is not None else "/".join(relative.parent.parts)
        clips.append(ClipSpec(key=key, corpus="folder", speaker=speaker, utterance=relative.with_suffix("").as_posix(),
                              split=row["split"] or split, video=video, audio=row["audio"], text=row["text"],
                              words=row["words"], problem=row["problem"]))
    return sorted(clips, key=lambda c: c.key)
