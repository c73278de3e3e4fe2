"""What a resume compares: the settings in a folder's ``run.json`` that define its sample set, and a one-line
refusal naming the first that differs (corpus, unit, preset, selection, vocabulary, mean face, seed, library
versions)."""

from __future__ import annotations

from pathlib import Path


def _first_difference(a, b, path: str = "") -> str:
    """Where two JSON-like values first differ, as ``path: a vs b`` (short enough for one line)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{path}.{key}" if path else str(key))
    if isinstance(a, list) and isinstance(b, list):
        if len(repr(a)) + len(repr(b)) > 120:
            at = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            if len(a) != len(b):
                return f"{path}: {len(a)} entries vs {len(b)}, first difference at [{at}]"
            return _first_difference(a[at], b[at], f"{path}[{at}]")
        if len(a) == len(b):
            at = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
            return _first_difference(a[at], b[at], f"{path}[{at}]")
    return f"{path}: {a!r} (this folder) vs {b!r} (this run)"


# What defines the sample set of a folder (a resume must match all of them) and how a mismatch is named.
RUN_KEYS = {
    "corpus": "corpus", "unit": "unit", "preset_hash": "preset hash", "partitions": "partitions",
    "selection": "selection", "vocabulary": "vocabulary", "word_context": "word context",
    "mean_face_sha256": "mean face", "seed": "seed",
    "versions": "library versions",
}


def _same_preset(previous: dict, config: dict) -> bool:
    """Whether two run configs name the same preset although their hashes differ: avprep before 0.3 hashed the
    preset's description text too, so a folder it wrote records another hash for the same parameters."""
    old, new = previous.get("preset"), config.get("preset")
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return False
    drop = lambda p: {k: v for k, v in p.items() if k != "description"}  # noqa: E731
    return drop(old) == drop(new)


def check_same_run(previous: dict, config: dict, out: Path, skip: tuple[str, ...] = ()) -> None:
    """Refuse (ValueError, one line naming the difference) a run whose settings differ from the folder's.
    A key the folder's run.json lacks (written by an older avprep) is not checked."""
    if not previous:
        return  # a new folder
    defaults = {"partitions": 1, "word_context": 0}  # run.json files from before partitioning / word context
    for key, name in RUN_KEYS.items():
        if key in skip or (key not in previous and key not in defaults):
            continue
        old, new = previous.get(key, defaults.get(key)), config.get(key, defaults.get(key))
        if old == new or (key == "preset_hash" and _same_preset(previous, config)):
            continue
        if key == "versions":
            diff = _first_difference(old, new, "versions") if isinstance(old, dict) and isinstance(new, dict) else \
                f"versions: {old!r} vs {new!r}"
            raise ValueError(f"{out} was written with other library versions ({diff}): pass "
                             "--allow-version-change to add samples made with these (index.json records which "
                             "shards each made), or choose another --out")
        if key == "preset_hash" and previous.get("preset") and config.get("preset"):
            diff = _first_difference(previous["preset"], config["preset"], "preset")
        elif key == "mean_face_sha256":
            diff = (f"mean face sha256 {str(old)[:12]} (this folder) vs {str(new)[:12]} (this run); pass "
                    f"--mean-face {out / 'mean_face.npy'} to register as the folder did")
        else:
            diff = _first_difference(old, new, name)
        raise ValueError(f"{out} holds a run with other settings ({diff}): resume with the same settings or "
                         "choose another --out")
