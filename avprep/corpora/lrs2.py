"""LRS2-BBC (Afouras et al., 2018): find clips by the official split lists, their text and word timings; cut long
pretrain clips.

Layout read (the release unpacked, given as ``--root``; ``--root`` may also be ``mvlrs_v1`` itself):

- ``mvlrs_v1/main/ID/NNNNN.mp4`` + ``NNNNN.txt`` (``Text:`` and ``Conf:``) for the train, val and test lists;
- ``mvlrs_v1/pretrain/ID/NNNNN.mp4`` + ``NNNNN.txt`` (with a ``WORD START END ASDSCORE`` table) for pretrain;
- ``train.txt``, ``val.txt``, ``test.txt``, ``pretrain.txt`` beside ``mvlrs_v1``: one ``ID/NNNNN`` per line, maybe
  followed by flags (the test list's ``NF`` / ``MV``), which are kept as ``list_flags`` in the sample JSON.

The lists define the clips and their split (a clip in no list is not read). ``ID/NNNNN`` names can appear in both
``main`` and ``pretrain``, so keys carry the folder: ``main_ID_NNNNN``, ``pretrain_ID_NNNNN_sK``. ``ID`` (a BBC
programme, not a person) is stored as the speaker.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from avbridge.sample import sample_key
from avprep.corpora import lrs_sidecar
from avprep.corpora.lrs3 import MAX_SECONDS
from avprep.types import ClipSpec

LISTS = {"pretrain": "pretrain", "train": "main", "val": "main", "test": "main"}  # split -> folder under mvlrs_v1
LAYOUT = ("mvlrs_v1/{main,pretrain}/ID/NNNNN.mp4 (+ .txt) and the lists pretrain.txt, train.txt, val.txt, test.txt "
          "beside mvlrs_v1, as in LRS2")


def _base(root: Path) -> Path:
    for candidate in (root, root.parent):
        if (candidate / "mvlrs_v1").is_dir() and any((candidate / f"{s}.txt").is_file() for s in LISTS):
            return candidate
    raise FileNotFoundError(f"{root} is not an LRS2 folder: expected {LAYOUT}")


def read_list(path: Path) -> list[tuple[str, tuple[str, ...]]]:
    """(``ID/NNNNN``, flags) of each line of a split list."""
    out = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        tokens = line.split()
        if not tokens:
            continue
        name = tokens[0]
        if name.count("/") != 1 or not all(name.split("/")):
            raise ValueError(f"{path}:{number}: expected 'ID/NNNNN [flags]', got {line.strip()!r}")
        out.append((name, tuple(tokens[1:])))
    return out


def find_clips(root: Path, splits: tuple[str, ...] | None = None, max_seconds: float = MAX_SECONDS) -> list[ClipSpec]:
    """LRS2 clips (and pretrain segments) of the split lists ``splits`` (default: every list present), sorted by key."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"LRS2 root {root} is not a directory (expected {LAYOUT})")
    unknown = set(splits or ()) - set(LISTS)
    if unknown:
        raise ValueError(f"unknown LRS2 split(s) {', '.join(sorted(unknown))}; choose from {', '.join(LISTS)}")
    base = _base(root)
    present = [s for s in LISTS if (base / f"{s}.txt").is_file()]
    chosen = list(splits) if splits else present
    clips: list[ClipSpec] = []
    listed: dict[str, str] = {}
    for split in chosen:
        path = base / f"{split}.txt"
        if not path.is_file():
            raise FileNotFoundError(f"no split list {path.name} in {base} (found {', '.join(present)})")
        folder = LISTS[split]
        for name, flags in read_list(path):
            where = f"{folder}/{name}"
            if where in listed:
                raise ValueError(f"{where} is listed in both {listed[where]}.txt and {split}.txt")
            listed[where] = split
            video = base / "mvlrs_v1" / folder / f"{name}.mp4"
            speaker, utt = name.split("/")
            clip = ClipSpec(key=sample_key(folder, speaker, utt), corpus="lrs2", speaker=speaker, utterance=where,
                            split=split, video=video, extra=(("list_flags", list(flags)),) if flags else ())
            if not video.is_file():  # one clip the list names but the folder lacks: rejected, the run goes on
                clips.append(replace(clip, problem=("missing video", f"{path.name} lists {name}, but {video} is "
                                                                     f"missing (expected {LAYOUT})")))
                continue
            clips += lrs_sidecar.clip_specs(clip, folder, folder == "pretrain", max_seconds, LAYOUT)
    return lrs_sidecar.check_unique(clips, "LRS2")
