"""prepare(): clips of any corpus -> shards in one output folder. What every corpus function does after discovery.

A run into a folder that holds an earlier run resumes it, and first checks that it would add samples of the same
set: corpus, unit, preset, clip selection (split scheme, speakers, ...), vocabulary, mean face (by hash), seed and
library versions must all match (avprep.runcheck.check_same_run), else the run is refused with one line naming the
difference.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from avbridge import __version__
from avprep.options import PrepOptions
from avprep.pipeline import Options, process_clip
from avprep.presets import Preset
from avprep.reference import central_shape, load_mean_face, mean_face_from, mean_face_picks
from avprep.runcheck import check_same_run
from avprep.runner import RunReport, run_clips, worker_log
from avprep.shards import RUN, PartitionLock
from avprep.types import ClipSpec
from avprep.versions import library_versions
from avprep.workers import WorkerPool, default_max_rss

MEAN_FACE_FILE = "mean_face.npy"
MEAN_FACE_LOCK = ".avprep-mean-face.lock"


def face_hash(face: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(face, np.float32).tobytes()).hexdigest()


def _picks_id(picks: list[ClipSpec]) -> str:
    return hashlib.sha1("\n".join(c.key for c in picks).encode()).hexdigest()


def _estimate(picks: list[ClipSpec], preset: Preset, options: PrepOptions, log_path: Path) -> np.ndarray:
    """The mean face from ``picks``, detected in worker processes (the detector never loads in this one)."""
    cap = default_max_rss(options.jobs) if options.max_worker_rss is None else options.max_worker_rss
    pool = WorkerPool(central_shape, (preset,), jobs=options.jobs, timeout=options.timeout, max_rss=cap,
                      log_path=log_path)
    outcomes = sorted(pool.map(picks), key=lambda o: o.index)  # the Procrustes mean follows the clip order
    return mean_face_from([o.value for o in outcomes if o.failure is None], preset, len(picks))


def resolve_mean_face(clips: list[ClipSpec], preset: Preset, out_dir: Path, options: PrepOptions,
                      previous: dict | None = None, log_path: Path | None = None,
                      estimate: Callable | None = None) -> tuple[np.ndarray | None, dict]:
    """The mean face to register with, and what run.json records of it (hash, where it came from).

    The one given (``options.mean_face``); else the one an earlier run (or another partition) saved in out_dir, if
    it was estimated from the same clips (a ``--limit`` run's face is refused by a full run: its samples would be
    registered differently); else a new one estimated from the clips and saved there, so a resumed run registers
    exactly as the first did. ``estimate(picks, preset, options, log_path)``: how (default: this module's
    ``_estimate``, the detector in worker processes; tests put a fake in).

    Partitions started together (a Slurm array) agree on one face: all of this runs under a lock on the folder, so
    the first partition estimates and saves it while the others wait, then find it and use it; a saved face is
    never replaced."""
    if preset.registration.mode != "mean-face":
        return None, {}
    out, console = Path(out_dir), options.terminal()
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out / MEAN_FACE_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # blocks while another partition estimates
        if (out / RUN).exists():  # another partition may have started the folder while this one waited
            previous = json.loads((out / RUN).read_text())
        return _resolve_mean_face(clips, preset, out, options, previous or {}, log_path, estimate or _estimate,
                                  console)
    finally:
        os.close(fd)  # (drops the lock)


def _resolve_mean_face(clips, preset, out, options, previous, log_path, estimate, console):
    saved = out / MEAN_FACE_FILE
    picks = mean_face_picks(clips)
    if options.mean_face is not None:
        face = load_mean_face(options.mean_face)
        record = {"mean_face_source": f"given: {options.mean_face}"}
    elif saved.exists():
        face = load_mean_face(saved)
        recorded = previous.get("mean_face_estimated_from")
        if recorded and recorded != _picks_id(picks):
            limit = previous.get("limit")
            raise ValueError(
                f"{saved} was estimated from the clips of an earlier run{f' with --limit {limit}' if limit else ''}, "
                f"not from this run's {len(clips)} clips: pass --mean-face {saved} to register with it anyway, "
                "or choose another --out")
        console.log(f"mean face: reusing {saved}")
        record = {"mean_face_source": previous.get("mean_face_source", f"found in {out}")}
        if recorded:
            record["mean_face_estimated_from"] = recorded
        return face, {**record, "mean_face_sha256": face_hash(face)}
    else:
        console.log(f"mean face: estimating from {len(picks)} of {len(clips)} clips")
        face = estimate(picks, preset, options, log_path or worker_log(out))
        record = {"mean_face_source": f"estimated from {len(picks)} of {len(clips)} clips",
                  "mean_face_estimated_from": _picks_id(picks)}
    # Refused before the folder's mean face is replaced: its samples were registered with that one.
    check_same_run(previous, {**previous, "mean_face_sha256": face_hash(face)}, out)
    if saved.exists():
        if face_hash(load_mean_face(saved)) != face_hash(face):
            raise ValueError(f"{saved} holds another mean face than --mean-face {options.mean_face}: pass "
                             f"--mean-face {saved} to register as the folder did, or choose another --out")
    else:
        # Created, never replaced: a file another partition (or an earlier run) already registered with stays.
        tmp = saved.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, face)
        try:
            created = create_once_from(tmp, saved)
        finally:
            tmp.unlink(missing_ok=True)
        if not created:
            face = load_mean_face(saved)
    return face, {**record, "mean_face_sha256": face_hash(face)}


def create_once_from(tmp: Path, path: Path) -> bool:
    """Link ``tmp`` to ``path`` unless ``path`` exists (never replaces it): True if created."""
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False


def prepare(
    clips: list[ClipSpec],
    corpus: str,
    out_dir: Path,
    options: PrepOptions,
    *,
    unit: str = "sentence",
    vocabulary: tuple[str, ...] = (),
    word_context: int = 0,
    selection: dict | None = None,
    process: Callable = process_clip,
) -> RunReport:
    """Write the shards of ``clips`` (the first ``options.limit`` of them, those of its partition) to ``out_dir``;
    resumes what is there. ``options.preset`` names the preset (a corpus function fills in its default).

    ``selection``: what the corpus function was asked for (split scheme, speakers, ...), checked on resume;
    ``process(spec, options, mean_face)``: the per-clip function (tests put a faulty one in)."""
    if unit not in ("sentence", "word"):
        raise ValueError(f"unit must be 'sentence' or 'word', got {unit!r}")
    if word_context < 0 or (word_context and unit != "word"):
        raise ValueError(f"word context must be 0 or more frames, and only with unit 'word' (got {word_context} "
                         f"with unit {unit!r})")
    preset = options.resolved_preset()
    options = dataclasses.replace(options, preset=preset, console=options.terminal())  # one console for the run
    clips = clips[: options.limit] if options.limit else clips
    out = Path(out_dir)
    lock = PartitionLock(out, options.part)  # before anything else: a second process on this partition is refused
    try:
        run_config = {
            "corpus": corpus, "unit": unit, "preset": preset.to_dict(), "preset_hash": preset.hash,
            "tool_version": __version__, "vocabulary": list(vocabulary),
            "word_context": word_context, "partitions": options.num_partitions,
            "selection": dict(selection or {}), "seed": options.seed, "limit": options.limit,
            "versions": library_versions(),
        }
        previous = json.loads((out / RUN).read_text()) if (out / RUN).exists() else {}
        # Everything but the mean face first: a mismatch is refused before minutes of mean-face estimation.
        skip = ("mean_face_sha256",) + (("versions",) if options.allow_version_change else ())
        check_same_run(previous, run_config, out, skip=skip)
        face, face_record = resolve_mean_face(clips, preset, out, options, previous, worker_log(out, options.part))
        run_config.update(face_record)
        work = Options(preset=preset, unit=unit, vocabulary=vocabulary, word_context=word_context)
        return run_clips(clips, work, out, run_config, options, mean_face=face, process=process, lock=lock)
    finally:
        lock.release()
