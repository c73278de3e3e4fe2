"""LRS3-TED (Afouras et al., 2018): find clips, their text, word timings and split; cut long pretrain clips.

Layout read (the release unpacked, given as ``--root``): ``{pretrain,trainval,test}/ID/NNNNN.mp4`` with
``NNNNN.txt`` beside each (``Text:``, ``Conf:``, maybe ``Ref:``, and a ``WORD START END ASDSCORE`` table: see
:mod:`avprep.corpora.lrs_sidecar`). ``ID`` is the TED talk's identifier, the corpus's unit of identity; the split is
the folder (``pretrain``, ``trainval``, ``test``: LRS3 has no official validation list).

Clips in ``pretrain`` run up to minutes; each is cut at word boundaries into segments of at most ``max_seconds``
(one :class:`ClipSpec` per segment, keyed ``pretrain_ID_NNNNN_sK``). ``trainval`` and ``test`` clips are kept whole.
"""

from __future__ import annotations

from pathlib import Path

from avbridge.sample import sample_key
from avprep.corpora import lrs_sidecar
from avprep.types import ClipSpec

SUBSETS = ("pretrain", "trainval", "test")
LAYOUT = "{pretrain,trainval,test}/ID/NNNNN.mp4 with NNNNN.txt beside it, as in LRS3"
# AV-HuBERT's LRS3 preparation splits pretrain clips longer than 15 s; auto-avsr cuts them at 24 s.
MAX_SECONDS = 15.0


def find_clips(root: Path, subsets: tuple[str, ...] | None = None, max_seconds: float = MAX_SECONDS) -> list[ClipSpec]:
    """LRS3 clips (and pretrain segments) under ``root`` in ``subsets`` (default: every subset folder present),
    sorted by key."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"LRS3 root {root} is not a directory (expected {LAYOUT})")
    unknown = set(subsets or ()) - set(SUBSETS)
    if unknown:
        raise ValueError(f"unknown LRS3 subset(s) {', '.join(sorted(unknown))}; choose from {', '.join(SUBSETS)}")
    present = [s for s in SUBSETS if (root / s).is_dir()]
    if not present:
        raise FileNotFoundError(f"{root} is not an LRS3 folder: expected {LAYOUT}")
    chosen = list(subsets) if subsets else present
    clips: list[ClipSpec] = []
    for subset in chosen:
        folder = root / subset
        if not folder.is_dir():
            raise FileNotFoundError(f"no {subset}/ folder in {root} (found {', '.join(present)})")
        for speaker_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
            for video in sorted(speaker_dir.glob("*.mp4")):
                clip = ClipSpec(key=sample_key(subset, speaker_dir.name, video.stem), corpus="lrs3",
                                speaker=speaker_dir.name, utterance=f"{subset}/{speaker_dir.name}/{video.stem}",
                                split=subset, video=video)
                clips += lrs_sidecar.clip_specs(clip, subset, subset == "pretrain", max_seconds, LAYOUT)
    if not clips:
        raise FileNotFoundError(f"no clips under {', '.join(str(root / s) for s in chosen)} (expected {LAYOUT})")
    return lrs_sidecar.check_unique(clips, "LRS3")
