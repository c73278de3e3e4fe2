"""The ``.txt`` beside each LRS2 / LRS3 clip, the cutting of long clips into segments at word boundaries, and the
ClipSpecs of one clip made from both (shared by :mod:`avprep.corpora.lrs2` and :mod:`avprep.corpora.lrs3`).

A sidecar is a few ``Key:  value`` lines, then (optionally, after a blank line) a word table::

    Text:  SO WE WENT BACK
    Conf:  4
    Ref:   ...                      (some releases; any other ``Key: value`` line is kept too)

    WORD START END ASDSCORE
    SO 0.22 0.35 5.1
    WE 0.35 0.50 6.0

``START`` and ``END`` are seconds from the start of the clip. The table ends at a blank line or at the header of
another table (a line of words only, e.g. ``FRAME X Y W H``). LRW's ``.txt`` (``Text:``, ``Conf:``, ``Duration:``)
reads the same way. A file without a ``Text:`` line is not a sidecar of this kind (``parse`` returns None): a plain
transcript is then the whole file.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from avbridge.sample import sample_key
from avprep.types import ClipSpec, Word

FPS = 25.0  # LRS2 and LRS3 clips are 25 fps
_HEADER = re.compile(r"^\s*([A-Za-z][A-Za-z _-]*?)\s*:\s?(.*)$")


@dataclass(frozen=True)
class Sidecar:
    text: str
    words: tuple[Word, ...] = ()
    header: dict[str, str] = field(default_factory=dict)  # the other Key: value lines (Conf, Ref, ...)


def _number(token: str) -> float | None:
    try:
        return float(token)
    except ValueError:
        return None


def parse(content: str, source: str = "sidecar") -> Sidecar | None:
    """Text, word table and other header lines of one sidecar; None without a ``Text:`` line.
    Raises ValueError (naming ``source`` and the line) for a word row that is not ``WORD START END [SCORE]`` with
    0 <= START <= END, or a word that starts before the one above it."""
    text: str | None = None
    header: dict[str, str] = {}
    words: list[Word] = []
    in_table = False
    for number, line in enumerate(content.splitlines(), 1):
        tokens = line.split()
        if in_table:
            if not tokens:
                break
            start, end = (_number(t) for t in (tokens + ["", ""])[1:3])
            if start is None and end is None and all(_number(t) is None for t in tokens):
                break  # the header of another table
            if len(tokens) < 3 or start is None or end is None or not 0 <= start <= end:
                raise ValueError(f"{source}:{number}: expected 'WORD START END [SCORE]' with 0 <= START <= END, "
                                 f"got {line.strip()!r}")
            if words and start < words[-1].start:
                raise ValueError(f"{source}:{number}: {tokens[0]} starts at {start} s, before the word above it "
                                 f"({words[-1].word} at {words[-1].start} s)")
            words.append(Word(tokens[0], start, end))
        elif [t.upper() for t in tokens[:3]] == ["WORD", "START", "END"]:
            in_table = True
        else:
            match = _HEADER.match(line)
            if match and match.group(1).strip().lower() == "text":
                text = " ".join(match.group(2).split())
            elif match:
                header[match.group(1).strip()] = " ".join(match.group(2).split())
    if text is None:
        return None
    return Sidecar(text=text, words=tuple(words), header=header)


def read(path: Path) -> Sidecar | None:
    return parse(Path(path).read_text(encoding="utf-8", errors="replace"), str(path))


def segments(words: tuple[Word, ...], max_seconds: float, frame_seconds: float = 1 / FPS
             ) -> list[tuple[tuple[float, float], tuple[Word, ...]]]:
    """Cut a long clip's words into runs from the first word's start to the last one's end, and give each run a span:
    the run itself, widened into the silence around it (never past the midpoint of the gap to the next run's words).
    Spans are at most ``max_seconds - frame_seconds`` long, so that the whole frames covering one (at the corpus's
    25 fps) are at most ``max_seconds``; only a single word longer than that gives a longer span. The last span may
    reach past the clip's end (the cut stops there)."""
    if max_seconds <= frame_seconds:
        raise ValueError(f"the maximum segment length must be more than one frame, got {max_seconds} s")
    # A span of whole-frame length L - 1 frame, wherever it starts, touches at most L frames.
    max_seconds = (math.floor(max_seconds / frame_seconds + 1e-9) - 1) * frame_seconds
    runs: list[tuple[Word, ...]] = []
    i = 0
    while i < len(words):
        j = i
        while j + 1 < len(words) and words[j + 1].end - words[i].start <= max_seconds:
            j += 1
        runs.append(tuple(words[i : j + 1]))
        i = j + 1
    out = []
    for k, run in enumerate(runs):
        first, last = run[0], run[-1]
        # Boundaries in the gap between runs; words that overlap across it keep their whole span on both sides.
        lo = 0.0 if k == 0 else min(first.start, (runs[k - 1][-1].end + first.start) / 2)
        hi = float("inf") if k == len(runs) - 1 else max(last.end, (last.end + runs[k + 1][0].start) / 2)
        budget = max(0.0, max_seconds - (last.end - first.start))
        before = min(first.start - lo, budget / 2)
        after = min(hi - last.end, budget - before)
        before = min(first.start - lo, budget - after)
        out.append(((first.start - before, last.end + after), run))
    return out


def check_unique(clips: list[ClipSpec], corpus: str) -> list[ClipSpec]:
    """``clips`` sorted by key; two clips with one key (folder names that differ only in ``.``, ``/`` or ``_``) are
    refused rather than merged."""
    clips = sorted(clips, key=lambda c: c.key)
    for a, b in zip(clips, clips[1:]):
        if a.key == b.key:
            raise ValueError(f"{corpus}: {a.video} and {b.video} both map to the key {a.key!r}")
    return clips


def clip_specs(clip: ClipSpec, subset: str, cut: bool, max_seconds: float, layout: str) -> list[ClipSpec]:
    """The ClipSpecs of one LRS2/LRS3 clip (``clip``: its key, corpus, speaker, utterance, split, video and the
    corpus's extra metadata), text and words from its sidecar: one for the whole clip, or one per segment (keyed
    ``KEY_sK``) when ``cut``. A clip whose sidecar is missing or unreadable is one spec carrying that problem: it
    is rejected with its reason when the run reaches it, and the corpus's other clips go on."""
    sidecar_path = clip.video.with_suffix(".txt")
    if not sidecar_path.is_file():
        return [replace(clip, problem=("no transcript", f"{clip.video.name} has no {sidecar_path.name} beside it "
                                                        f"(expected {layout})"))]
    try:
        sidecar = read(sidecar_path)
    except (OSError, ValueError) as e:  # a table row that is not WORD START END, a file that cannot be read
        return [replace(clip, problem=("unreadable transcript", str(e).splitlines()[0][:300]))]
    if sidecar is None:
        return [replace(clip, problem=("unreadable transcript", f"{sidecar_path.name}: no 'Text:' line (an LRS "
                                                                "transcript starts 'Text:  WORDS')"))]
    # Nested, so that no header line can overwrite a key of the sample JSON.
    meta = (("subset", subset), ("sidecar", {k.lower(): v for k, v in sorted(sidecar.header.items())}), *clip.extra)
    if not cut or not sidecar.words:  # without word times a clip cannot be cut safely: kept whole
        return [replace(clip, text=sidecar.text, words=sidecar.words, extra=meta)]
    pieces = segments(sidecar.words, max_seconds)
    return [replace(clip, key=sample_key(clip.key, f"s{k}"), text=" ".join(w.word for w in words), words=words,
                    span=span, extra=(*meta, ("segment", k), ("segments", len(pieces)), ("clip_text", sidecar.text)))
            for k, (span, words) in enumerate(pieces)]
