"""A shard folder's catalogue: avprep's index and ledgers -> the shards of a split, its size, its vocabulary, and how
the shards were made (the preset and mean face ``avtrain synth`` needs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from avbridge.shardlist import shard_names
from avtrain.config.recipe import RecipeError
from avtrain.data.fields import Fields


def read_index(root: str | Path) -> dict[str, Any]:
    path = Path(root) / "index.json"
    return json.loads(path.read_text()) if path.exists() else {}


def split_shards(root: str | Path, split: str) -> list[str]:
    """Shard paths of a split: from avprep's ledgers (index.json may lag them), else index.json or the file names."""
    root = Path(root)
    names = shard_names(root, split)
    if not names:
        raise FileNotFoundError(f"no shards for split {split!r} in {root}")
    return [str(root / n) for n in names]


def vocabulary(root: str | Path) -> list[str]:
    """Class names by label index, as avprep records them in index.json (``run.vocabulary``); [] if absent."""
    return list(read_index(root).get("run", {}).get("vocabulary") or [])


def check_fields(root: str | Path, fields: Fields) -> None:
    """Refuse what the shards cannot give a task: a word-boundary indicator on word clips cut without context (each
    such clip is its word alone, so the indicator would be 1.0 on every frame, a constant input)."""
    run = read_index(root).get("run") or {}
    if fields.boundary and run.get("unit") == "word" and not run.get("word_context"):
        raise RecipeError(f"model_conf.boundary: the word clips in {root} were cut without context (word_context 0), "
                         f"so every frame is the word; make shards with context (avprep grid --unit word "
                         f"--word-context 3) or leave model_conf.boundary off")


def split_size(root: str | Path, split: str) -> int | None:
    info = read_index(root).get("splits", {}).get(split)
    return int(info["samples"]) if info and "samples" in info else None


def preprocessing_record(root: str | Path) -> dict[str, Any]:
    """How the shards were made: avprep's preset (as a dict) and the mean face registration used (or None).
    Stored in checkpoints so that ``avtrain synth`` prepares a new video exactly as the training clips were."""
    root = Path(root)
    run = read_index(root).get("run") or {}
    if not run and (root / "run.json").exists():
        run = json.loads((root / "run.json").read_text())
    face = root / "mean_face.npy"
    return {"preset": run.get("preset"), "mean_face": np.load(face).tolist() if face.exists() else None}
