"""Refuse a shard whose bytes are not the ones avprep wrote: its SHA-256 against the one its ledger recorded.

Each loader worker hashes a shard just before it reads it (the file is then in the page cache for the read that
follows), once per process for each state of the file (path, size, modification time, inode). A mismatch raises
:class:`avbridge.shardlist.ChecksumError` naming the shard: a damaged shard is a storage problem, not a bad sample,
so it stops the run under ``data.on_bad_sample: skip`` too. Shards without a recorded checksum (folders written
before avprep 0.3, or shards copied without their ledger) are read unchecked. ``data.verify_checksums: false``
turns it off; scripts/bench_verify.py measures its cost against loading.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

from avbridge.shardlist import recorded_checksums, verify_shard

_VERIFIED: set[tuple] = set()  # this process's shards already checked, by file state


def check(path: str | Path, expected: dict[str, str | None]) -> bool:
    """Hash ``path`` (unless this process did already, and it has not changed since) and compare with
    ``expected[name]``; True if checked, False if nothing was recorded for it. Raises ChecksumError."""
    path = Path(path)
    digest = expected.get(path.name)
    if not digest:
        return False
    st = os.stat(path)
    state = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
    if state not in _VERIFIED:
        verify_shard(path, digest)
        _VERIFIED.add(state)
    return True


class VerifiedShards:
    """A webdataset stage in the worker splitter's place: ``splitter``'s shards, each checked (:func:`check`)
    against the ledgers of ``root`` before it is opened."""

    def __init__(self, root: str | Path, splitter: Callable):
        self.root = str(root)
        self.splitter = splitter
        self._expected: dict[str, str | None] | None = None

    def __call__(self, src: Iterator[dict]) -> Iterator[dict]:
        if self._expected is None:
            self._expected = {name: rec["sha256"] for name, rec in recorded_checksums(self.root).items()}
        for shard in self.splitter(src):
            check(shard["url"], self._expected)
            yield shard
