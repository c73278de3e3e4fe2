"""avprep: audio-visual speech corpora to verified, resumable WebDataset shards.

    from avprep import PrepOptions, prepare_grid
    report = prepare_grid("/data/grid", "shards/grid-s1", speakers=["s1"], options=PrepOptions(jobs=2))

One function per corpus (``prepare_grid``, ``prepare_lrw``, ``prepare_lrw1000``, ``prepare_tcd_timit``,
``prepare_lrs3``, ``prepare_lrs2``, ``prepare_folder``: avprep.recipes), one options object (avprep.options); the
CLI (avprep.cli) is a shell over them. Importing the package is light: each of these loads on first use, and the
detector (mediapipe) and OpenCV load only in the stages that use them; the CLI is never imported.
"""

from avbridge import __version__

_LAZY = {
    "PrepOptions": "avprep.options",
    "RunReport": "avprep.runner",
    "ShardSink": "avprep.shards",
    **{f"prepare_{c}": "avprep.recipes" for c in ("grid", "lrw", "lrw1000", "tcd_timit", "lrs3", "lrs2", "folder")},
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'avprep' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
