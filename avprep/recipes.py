"""One function per corpus: find its clips, then prepare() them into shards. Each `avprep <corpus>` command is a
shell over one of these.

    from avprep import PrepOptions, prepare_grid
    options = PrepOptions(jobs=2)
    report = prepare_grid("/data/grid", "shards/grid-s1-words", speakers=["s1"], unit="word", options=options)
    print(report.clips_written, report.samples_written, dict(report.rejected), report.index_path)

Each takes the corpus's root folder, the output folder, the corpus's own choices of clips (speakers, splits,
subsets, ...; a list, or one comma-separated string as the CLI takes it) and a PrepOptions (None: the defaults, with
the corpus's default preset); each returns the run's RunReport. A run into a folder that holds an earlier one
resumes it (or refuses, naming the setting that differs). Every run starts worker processes with ``spawn``: a script
that calls these needs the usual ``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from avprep.corpora import folder, grid, lrs2, lrs3, lrw, lrw1000, tcd_timit
from avprep.options import PrepOptions
from avprep.types import ClipSpec

if TYPE_CHECKING:
    from avprep.runner import RunReport

# The preset each corpus is prepared with unless PrepOptions.preset names another (`avprep presets` lists them).
DEFAULT_PRESETS = {
    "grid": "bridging-grid", "lrw": "bridging-lrw", "lrw1000": "bridging-lrw1000", "tcd-timit": "two-tower-tcd-timit",
    "lrs3": "bridging-lrw-registered", "lrs2": "bridging-lrw-registered", "folder": "bridging-grid",
}

Names = str | Sequence[str] | None  # "s1,s2" or ["s1", "s2"]; None: the corpus function's default


def names(value: Names) -> list[str] | None:
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else value
    return [s.strip() for s in items if s.strip()] or None


def _ready(options: PrepOptions | None, corpus: str) -> PrepOptions:
    """The options with the preset resolved: a bad name or override is refused before the corpus is scanned."""
    return (options or PrepOptions()).with_preset(DEFAULT_PRESETS[corpus])


def _prepare(clips: list[ClipSpec], corpus: str, out: Path, options: PrepOptions, selection: dict,
             **what) -> RunReport:
    """prepare() with the speakers found added to the selection (checked when a run resumes)."""
    from avprep.prepare import prepare

    selection = {**selection, "speakers": sorted({c.speaker for c in clips})}
    return prepare(clips, corpus, out, options, selection=selection, **what)


def prepare_grid(root: Path, out: Path, *, speakers: Names = None, unit: str = "sentence",
                 split_scheme: str = "speaker-dependent", word_context: int = 0,
                 options: PrepOptions | None = None) -> RunReport:
    """GRID (Cooke et al. 2006) -> shards per split. ``speakers``: s1, s2, ... (default: every one found);
    ``unit``: "sentence" (one sample per clip) or "word" (one per aligned word, labelled in the 51-word vocabulary);
    ``split_scheme``: speaker-dependent | speaker-independent | none; ``word_context``: frames kept on each side of
    a word (unit "word"; the word's own frames are the sample JSON's ``word_span``)."""
    options = _ready(options, "grid")
    clips = grid.find_clips(root, names(speakers), split_scheme)
    vocabulary = tuple(grid.vocabulary()) if unit == "word" else ()
    return _prepare(clips, "grid", out, options, {"split_scheme": split_scheme}, unit=unit, vocabulary=vocabulary,
                    word_context=word_context)


def prepare_lrw(root: Path, out: Path, *, words: Names = None, splits: Names = lrw.SPLITS,
                options: PrepOptions | None = None) -> RunReport:
    """LRW (Chung & Zisserman 2016) word clips -> shards per split, labelled with their word class. ``words``: word
    folders (default: all 500). The default preset crops LRW's fixed box; ``bridging-lrw-registered`` registers the
    mouth on landmarks instead."""
    options = _ready(options, "lrw")
    chosen, split_list = names(words), names(splits) or []
    clips = lrw.find_clips(root, chosen, tuple(split_list))
    return _prepare(clips, "lrw", out, options, {"words": chosen, "splits": ",".join(split_list)},
                    vocabulary=tuple(lrw.vocabulary(root)))


def prepare_lrw1000(root: Path, out: Path, *, splits: Names = tuple(lrw1000.SPLIT_FILES), audio_lead: float = 0.0,
                    options: PrepOptions | None = None) -> RunReport:
    """LRW-1000 (pre-cropped lip images + audio) -> shards per split, the video span matched to the audio.
    ``audio_lead``: seconds the audio files start before the word."""
    options = _ready(options, "lrw1000")
    split_list = names(splits) or []
    clips = lrw1000.find_clips(root, tuple(split_list), audio_lead)
    return _prepare(clips, "lrw1000", out, options, {"splits": ",".join(split_list), "audio_lead": audio_lead},
                    vocabulary=tuple(lrw1000.vocabulary(root)))


def prepare_tcd_timit(root: Path, out: Path, *, speakers: Names = "lipspeakers", camera: str = "straightcam",
                      test_fraction: float = 0.1, options: PrepOptions | None = None) -> RunReport:
    """TCD-TIMIT (Harte & Gillen 2015) -> shards, 29.97 fps kept by the default preset. ``speakers``: lipspeakers |
    volunteers | all | ids (Lipspkr1, 01M, ...); ``camera``: straightcam | 30degcam; per speaker ``test_fraction``
    of the clips go to the test split, drawn with ``options.seed`` (which also seeds the write order)."""
    options = _ready(options, "tcd-timit")
    speaker_set = speakers if isinstance(speakers, str) or speakers is None else ",".join(speakers)
    clips = tcd_timit.find_clips(root, speaker_set, camera, test_fraction, options.seed)
    selection = {"speaker_set": speaker_set, "camera": camera, "test_fraction": test_fraction,
                 "split_seed": options.seed}
    return _prepare(clips, "tcd-timit", out, options, selection)


def prepare_lrs3(root: Path, out: Path, *, subsets: Names = None, max_seconds: float = lrs3.MAX_SECONDS,
                 options: PrepOptions | None = None) -> RunReport:
    """LRS3-TED (Afouras et al. 2018) -> shards per subset (pretrain, trainval, test; default: all present), text
    and word timings from the .txt; pretrain clips cut at word boundaries into segments of at most ``max_seconds``."""
    options = _ready(options, "lrs3")
    chosen = names(subsets)
    clips = lrs3.find_clips(root, tuple(chosen) if chosen else None, max_seconds)
    return _prepare(clips, "lrs3", out, options, {"subsets": chosen, "max_seconds": max_seconds})


def prepare_lrs2(root: Path, out: Path, *, splits: Names = None, max_seconds: float = lrs3.MAX_SECONDS,
                 options: PrepOptions | None = None) -> RunReport:
    """LRS2-BBC (Afouras et al. 2018) -> shards per split list (pretrain, train, val, test; default: every list
    present), text and word timings from the .txt; pretrain clips cut as LRS3's."""
    options = _ready(options, "lrs2")
    chosen = names(splits)
    clips = lrs2.find_clips(root, tuple(chosen) if chosen else None, max_seconds)
    return _prepare(clips, "lrs2", out, options, {"splits": chosen, "max_seconds": max_seconds})


def prepare_folder(root: Path, out: Path, *, manifest: Path | None = None, split: str = "train",
                   options: PrepOptions | None = None) -> RunReport:
    """Any folder of talking-face videos (searched recursively; transcripts from NAME.txt sidecars, or a CSV
    ``manifest`` with columns path[,text,speaker,split,audio]) -> shards; ``split`` for clips the manifest gives
    none."""
    options = _ready(options, "folder")
    clips = folder.find_clips(root, manifest, split)
    return _prepare(clips, "folder", out, options, {"manifest": str(manifest) if manifest else None, "split": split})
