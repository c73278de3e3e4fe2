"""One training process per run folder: a second ``avtrain run`` (or ``sweep-levels`` row) on a folder another
process is training into is refused in one line instead of interleaving its checkpoints and logs with the first's.

A re-submitted cluster job, a sweep started twice, or two shells pointed at the same ``output_dir`` would otherwise
both resume from the same ``last.pt`` and overwrite each other's checkpoints, ``train_log.jsonl`` and TensorBoard
events, leaving a run that no single process trained. The guard is an advisory ``flock`` on
``<output_dir>/.avtrain.lock``, held by the main rank for the whole of training. The kernel drops it when the process
ends, however it ends (SIGKILL, an OOM kill, a preempted node), so a killed run never leaves a stale lock behind and
the next ``avtrain run`` resumes as before. The file also records who holds it, for the error message. On NFS, flock
is honoured across machines by Linux clients of NFSv4; on file systems without locks the guard is skipped.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_NAME = ".avtrain.lock"


class RunInUse(RuntimeError):
    """Another live process is training into this run folder."""


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return "another process"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("since", 0)))
    return f"pid {info.get('pid', '?')} on {info.get('host', '?')}, since {since}"


@contextmanager
def hold_run_dir(run_dir: str | Path) -> Iterator[None]:
    """Hold ``run_dir`` for this process until the block ends; raise :class:`RunInUse` if another process does."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise RunInUse(f"{run_dir} is being trained by {_holder(path)}; wait for it to finish, or pass "
                               f"--set output_dir=... for a run of your own") from None
            if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                raise
            # a file system without locks: train unguarded rather than not at all
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()})
        os.ftruncate(fd, 0)
        os.pwrite(fd, record.encode(), 0)
        yield
    finally:
        os.close(fd)  # closing drops the lock
