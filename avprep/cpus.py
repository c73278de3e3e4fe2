"""Pin a worker process to a CPU no other avprep worker on this machine holds.

mediapipe runs each graph on a pool of threads; a face mesh fed one frame at a time gains nothing from them, and
while a core is free they spend CPU waiting on each other: with every thread of the process on one CPU the mesh
took 15-18% less CPU and 8-11% less wall time (``scripts/bench_mesh_threads.py``, docs/benchmarks.md). A pinned
process cannot be moved off a busy CPU, so two pinned workers must never share one: each claim is an exclusive
``flock`` on a per-CPU file, which the kernel releases when the process ends, also by a crash or a kill. When every
allowed CPU is held (more workers than CPUs, or other avprep runs), the worker stays unpinned.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def lock_dir() -> Path:
    """Where the per-CPU claim files live (one folder per user: a claim is about this user's workers)."""
    return Path(tempfile.gettempdir()) / f"avprep-cpus-{os.getuid()}"


def claim_cpu(folder: Path | None = None) -> int | None:
    """Pin this process to the first allowed CPU nobody has claimed and return it; None (not pinned) when all are
    claimed or the platform cannot pin. Call it before threads start: they inherit the process's CPU set. The claim
    lasts as long as the process (its file descriptor is kept open on purpose)."""
    if not hasattr(os, "sched_setaffinity"):  # macOS, Windows
        return None
    import fcntl  # POSIX only: imported where sched_setaffinity exists

    folder = folder or lock_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        allowed = sorted(os.sched_getaffinity(0))
    except OSError:  # no writable temp folder, or a sandbox without affinity calls: run unpinned
        return None
    for cpu in allowed:
        try:
            fd = os.open(folder / f"cpu{cpu}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held by another worker
            os.close(fd)
            continue
        try:
            os.sched_setaffinity(0, {cpu})
        except OSError:  # not allowed here after all: give the CPU back and run unpinned
            os.close(fd)
            return None
        return cpu  # fd stays open: closing it would release the claim
    return None
