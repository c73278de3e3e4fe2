"""``index.json``: a folder's counts, checksums and library versions, rebuilt from every partition's ledgers and
failure logs at the end of each run (and by ``avprep index``). It holds no time stamp, so the same shards give the
same index bytes."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import uuid
from collections import Counter
from pathlib import Path

from avbridge.shardlist import ledger_rows
from avprep.types import is_transient

INDEX, RUN = "index.json", "run.json"


def write_atomic(path: Path, text: str) -> None:
    """Write a file under a temporary name of this process's own, then rename it into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_index(out_dir: Path) -> dict:
    """Rebuild ``index.json`` from the ledgers and failure logs of every partition in the folder.

    Partitions finishing together take turns (a lock on the folder's index): each appends its last ledger rows
    before it gets here, so the last one to write sees every partition's rows, and no stale index replaces it."""
    out = Path(out_dir)
    fd = os.open(out / ".avprep-index.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return _write_index(out)
    finally:
        os.close(fd)  # (closing drops the lock)


def transient_row(row: dict) -> bool:
    """Whether a failure-log row's reason is transient (rows from before 0.3 say nothing: judged by the reason)."""
    return bool(row.get("transient", is_transient(row.get("reason", ""))))


def versions_id(versions: dict) -> str:
    return hashlib.sha256(json.dumps(versions, sort_keys=True).encode()).hexdigest()[:12]


def _write_index(out: Path) -> dict:
    (ledger, torn_ledger), (failures, torn_failures) = ledger_rows(out, "ledger"), ledger_rows(out, "failures")
    run = json.loads((out / RUN).read_text()) if (out / RUN).exists() else {}
    splits: dict[str, dict] = {}
    field_bytes: Counter = Counter()
    checksums: dict[str, dict] = {}
    made_with: dict[str, dict] = {}
    for row in sorted(ledger, key=lambda r: r["shard"]):
        s = splits.setdefault(row["split"], {"shards": [], "clips": 0, "samples": 0, "seconds": 0.0, "bytes": 0})
        s["shards"].append(row["shard"])
        s["clips"] += len(row["clips"])
        s["samples"] += len(row["samples"])
        s["seconds"] = round(s["seconds"] + row["seconds"], 3)
        s["bytes"] += row["bytes"]
        field_bytes.update(row["field_bytes"])
        vid = versions_id(row["versions"]) if isinstance(row.get("versions"), dict) else "unrecorded"
        entry = made_with.setdefault(vid, {"versions": row.get("versions"), "shards": 0, "samples": 0})
        entry["shards"] += 1
        entry["samples"] += len(row["samples"])
        checksums[row["shard"]] = {"sha256": row.get("sha256"), "samples": len(row["samples"]), "bytes": row["bytes"],
                                   "versions": vid}
    # The last row of each clip counts; a clip written since (a transient failure healed on a resume) is not rejected.
    written = {c for row in ledger for c in row["clips"]}
    last: dict[str, dict] = {}
    for row in failures:
        last[row["key"]] = row
    rejected = [row for key, row in last.items() if key not in written]
    healed = sorted(key for key, row in last.items() if key in written)
    total_samples = sum(s["samples"] for s in splits.values())
    index = {
        "run": run,
        "splits": splits,
        "samples": total_samples,
        "clips": sum(s["clips"] for s in splits.values()),
        "hours": round(sum(s["seconds"] for s in splits.values()) / 3600, 4),
        "bytes": sum(s["bytes"] for s in splits.values()),
        "rejected": len(rejected),
        "rejected_by_reason": dict(sorted(Counter(r["reason"] for r in rejected).items())),
        "rejected_transient": sum(transient_row(r) for r in rejected),  # a resume retries these
        "healed": len(healed),  # rejected for a transient reason once, written on a later try
        "shard_checksums": checksums,  # shard -> sha256 (None: written before 0.3), samples, bytes, versions id
        "versions": made_with,  # versions id -> the library versions, shards and samples made with them
        "torn_lines": {"ledger": torn_ledger, "failures": torn_failures},  # cut short by a kill, skipped
        "field_bytes_total": dict(field_bytes),
        "field_bytes_per_sample": ({k: round(v / total_samples) for k, v in field_bytes.items()}
                                   if total_samples else {}),
    }
    write_atomic(out / INDEX, json.dumps(index, indent=2, sort_keys=True))  # partitions may do this at once
    return index
