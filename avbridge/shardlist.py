"""Which shards an avprep output folder holds, read the way avprep writes them (standard library only).

The ledgers (``ledger.jsonl``, ``ledger-p003of008.jsonl``, ...) are the truth: a shard is renamed into place and
then named in its partition's ledger, so a ``.tar`` no ledger names is a killed run's leftover whose clips are redone.
``index.json`` is rebuilt from the ledgers when a partition finishes, so while partitions still run it lags them:
readers list shards from the ledgers, and fall back to ``index.json`` or the file names only for folders without
ledgers (shards copied elsewhere on their own).

A kill can leave the last line of a ledger cut short. Readers skip such a line (and count it); writers start the
next line on a fresh line, so the line after a torn one is never lost.

Each ledger row (from avprep 0.3) carries its shard's SHA-256 and sample count: :func:`verify_shard` checks a file
against them (``avprep inspect --verify``, and avtrain before it reads a shard), and :func:`unlisted_tars` names the
``.tar`` files no ledger names, which readers never take for data.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


def read_jsonl(path: Path) -> tuple[list[dict], int]:
    """Rows of a JSON-lines file, and how many lines could not be read (cut short by a kill)."""
    path = Path(path)
    if not path.exists():
        return [], 0
    rows, torn = [], 0
    for line in path.read_bytes().decode("utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            torn += 1
            continue
        if isinstance(row, dict):
            rows.append(row)
        else:
            torn += 1
    return rows, torn


def ledger_rows(root: Path, stem: str = "ledger") -> tuple[list[dict], int]:
    """Rows of every partition's ledger (stem 'ledger') or failure log (stem 'failures'), and the torn lines."""
    rows, torn = [], 0
    for path in sorted(Path(root).glob(f"{stem}*.jsonl")):
        more, bad = read_jsonl(path)
        rows += more
        torn += bad
    return rows, torn


def shard_names(root: str | Path, split: str | None = None) -> list[str]:
    """File names of the finished shards of ``split`` (all splits if None) in an avprep output folder, sorted."""
    root = Path(root)
    ledger, _ = ledger_rows(root)
    if ledger:
        return sorted({r["shard"] for r in ledger if "shard" in r and (split is None or r.get("split") == split)})
    index = root / "index.json"
    if index.exists():
        splits = json.loads(index.read_text()).get("splits", {})
        return sorted(n for s, info in splits.items() if split is None or s == split for n in info.get("shards", []))
    return sorted(p.name for p in root.glob(f"{split}-*.tar" if split else "*.tar"))


class ChecksumError(ValueError):
    """A shard whose bytes are not the ones its ledger recorded, in one line naming the shard."""


def recorded_checksums(root: str | Path) -> dict[str, dict]:
    """Shard file name -> {"sha256": hex or None (written before avprep 0.3), "samples": count}, from the ledgers."""
    rows, _ = ledger_rows(Path(root))
    return {r["shard"]: {"sha256": r.get("sha256"), "samples": r.get("num_samples", len(r.get("samples", [])))}
            for r in rows if "shard" in r}


def file_sha256(path: str | Path, block: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def verify_shard(path: str | Path, expected: str | None) -> bool:
    """Check a shard file against its recorded SHA-256: True if it matches, False if none was recorded;
    ChecksumError naming the shard if it differs."""
    if not expected:
        return False
    got = file_sha256(path)
    if got != expected:
        raise ChecksumError(f"{Path(path).name}: SHA-256 {got[:16]}... differs from the {expected[:16]}... its ledger "
                            "recorded: the file changed after avprep wrote it (damaged in storage or in a copy)")
    return True


def unlisted_tars(root: str | Path) -> list[str]:
    """``.tar`` files in an avprep output folder that no ledger names (a killed run's leftover, or a stray copy):
    never read as data. Empty for a folder without ledgers (shards copied on their own are all read)."""
    root = Path(root)
    names = {r["shard"] for r in ledger_rows(root)[0] if "shard" in r}
    if not names:
        return []
    return sorted(p.name for p in root.glob("*.tar") if p.name not in names)
