"""prepare(): clips of any corpus -> shards in one output folder. What every corpus command does after discovery."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from rich.console import Console

from avbridge import __version__
from avprep.pipeline import Options
from avprep.presets import Preset
from avprep.reference import estimate_mean_face, load_mean_face
from avprep.runner import RunReport, run_clips
from avprep.shards import Partition
from avprep.types import ClipSpec

MEAN_FACE_FILE = "mean_face.npy"


def resolve_mean_face(clips: list[ClipSpec], preset: Preset, out_dir: Path, given: Path | None, jobs: int,
                      console: Console) -> np.ndarray | None:
    """The mean face to register with: the one given, else the one an earlier run saved in out_dir, else a new one
    estimated from the clips (and saved there, so a resumed run registers exactly as the first did)."""
    if preset.registration.mode != "mean-face":
        return None
    saved = Path(out_dir) / MEAN_FACE_FILE
    if given is not None:
        face = load_mean_face(given)
    elif saved.exists():
        face = load_mean_face(saved)
        console.log(f"mean face: reusing {saved}")
        return face
    else:
        console.log(f"mean face: estimating from up to 64 of {len(clips)} clips")
        face = estimate_mean_face(clips, preset, jobs=jobs)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    # Partitions sharing the folder may all get here: each writes the same array (the estimate is deterministic
    # and uses the full clip list), atomically, so none reads a half-written file.
    tmp = saved.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, face)
    tmp.rename(saved)
    return face


def prepare(
    clips: list[ClipSpec],
    corpus: str,
    out_dir: Path,
    preset: Preset,
    unit: str = "sentence",
    vocabulary: tuple[str, ...] = (),
    jobs: int = 1,
    mean_face: Path | None = None,
    shard_bytes: int = 100 * 2**20,
    shard_clips: int = 250,
    console: Console | None = None,
    progress: bool = True,
    retry_failed: bool = False,
    partition: Partition = Partition(),
    backend: str = "loky",
    address: str | None = None,
) -> RunReport:
    """Write the shards of ``clips`` (those of ``partition``) to ``out_dir``; resumes what is there."""
    if unit not in ("sentence", "word"):
        raise ValueError(f"unit must be 'sentence' or 'word', got {unit!r}")
    console = console or Console(stderr=True)
    face = resolve_mean_face(clips, preset, out_dir, mean_face, jobs, console)
    run_config = {
        "corpus": corpus, "unit": unit, "preset": preset.to_dict(), "preset_hash": preset.hash,
        "tool_version": __version__, "vocabulary": list(vocabulary), "partitions": partition.count,
    }
    options = Options(preset=preset, unit=unit, vocabulary=vocabulary)
    return run_clips(clips, options, out_dir, run_config, mean_face=face, jobs=jobs, shard_bytes=shard_bytes,
                     shard_clips=shard_clips, console=console, progress=progress, retry_failed=retry_failed,
                     partition=partition, backend=backend, address=address)
