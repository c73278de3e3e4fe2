"""Per-clip functions for runner tests, importable in worker processes: fake samples in milliseconds, and faults
(segfault, hang, memory blow-up) on chosen keys. Light imports only, so workers start fast."""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass

from avprep.types import ClipResult, ClipSpec, Sample


def fake_result(spec: ClipSpec) -> ClipResult:
    meta = {"key": spec.key, "label": spec.label, "speaker": spec.speaker, "split": spec.split, "pid": os.getpid()}
    sample = Sample(key=spec.key, split=spec.split, fields={"json": json.dumps(meta).encode(),
                                                            "bin": os.urandom(64)}, seconds=1.0)
    return ClipResult(key=spec.key, samples=[sample], timings={"fake": 0.0})


@dataclass(frozen=True)
class Faulty:
    """A per-clip function that crashes, hangs or eats memory on the keys named, and else calls ``then`` (None: a
    fake sample), as mediapipe or FFmpeg can on one bad clip."""

    crash: tuple[str, ...] = ()
    hang: tuple[str, ...] = ()
    hog: tuple[str, ...] = ()
    then: object = None
    delay: float = 0.0  # seconds per healthy clip (to make runs overlap)

    def __call__(self, spec: ClipSpec, options, mean_face) -> ClipResult:
        if spec.key in self.crash:
            os.kill(os.getpid(), signal.SIGSEGV)
        if spec.key in self.hang:
            time.sleep(3600)
        if spec.key in self.hog:
            blocks = []
            for _ in range(80):  # up to 4 GiB, 50 MiB at a time, touched so that it is resident
                blocks.append(bytearray(b"x" * (50 * 2**20)))
                time.sleep(0.02)
            time.sleep(3600)
        if self.delay:
            time.sleep(self.delay)
        return fake_result(spec) if self.then is None else self.then(spec, options, mean_face)


def spin(seconds: float) -> None:
    """A worker initialiser that burns ``seconds`` of CPU (as importing mediapipe and building graphs does)."""
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def fail_to_start() -> None:
    raise RuntimeError("no detector here")


def pid_of(item) -> int:
    return os.getpid()


def pid_after_a_nap(item) -> int:
    time.sleep(0.2)
    return os.getpid()


_ITEMS_DONE: list = []


def pid_after_a_slow_first_item(item) -> int:
    """A process's first item burns 0.3 s of CPU (first-use costs); the later ones sleep 0.2 s, as pid_after_a_nap."""
    first = not _ITEMS_DONE
    _ITEMS_DONE.append(item)
    if first:
        spin(0.3)
        return os.getpid()
    return pid_after_a_nap(item)


def steady_result(spec: ClipSpec, options=None, mean_face=None) -> ClipResult:
    """A fake sample whose bytes depend on the key only (fake_result's carry a pid and random bytes), after a nap
    of 0-40 ms that also depends on the key: with 2 jobs clips finish out of hand-out order."""
    import hashlib

    digest = hashlib.sha256(spec.key.encode()).digest()
    time.sleep(digest[0] / 255 * 0.04)
    meta = {"key": spec.key, "label": spec.label, "speaker": spec.speaker, "split": spec.split}
    sample = Sample(key=spec.key, split=spec.split, fields={"json": json.dumps(meta, sort_keys=True).encode(),
                                                            "bin": digest * 64}, seconds=1.0)
    return ClipResult(key=spec.key, samples=[sample], timings={"fake": 0.0})


@dataclass(frozen=True)
class CrashOnce:
    """Segfaults on the keys named until a marker file in ``folder`` says it did once (a worker killed by the
    system, a node that went away): the next try of the clip works. Other keys: ``steady_result``; ``refuse``:
    a permanent rejection (no face)."""

    folder: str
    crash: tuple[str, ...] = ()
    refuse: tuple[str, ...] = ()
    always: tuple[str, ...] = ()  # crash every time

    def __call__(self, spec: ClipSpec, options, mean_face) -> ClipResult:
        from pathlib import Path

        from avprep.types import Rejection

        marker = Path(self.folder) / f"crashed-{spec.key}"
        if spec.key in self.always or (spec.key in self.crash and not marker.exists()):
            marker.touch()
            os.kill(os.getpid(), signal.SIGSEGV)
        if spec.key in self.refuse:
            return ClipResult(key=spec.key, rejection=Rejection(key=spec.key, split=spec.split, reason="no face",
                                                                detail="no face in any of 75 frames"))
        return steady_result(spec)


def ordered_item(item) -> tuple:
    """(item, start, end) with a nap that makes later items often finish first (WorkerPool order tests)."""
    start = time.time()
    time.sleep(0.12 if item % 3 == 0 else 0.01)
    return item, start, time.time()


def face_of_this_process(picks, preset, options, log_path):
    """A mean-face estimate that differs from process to process (as detectors on two nodes with other CPUs can),
    and takes a moment, so partitions started together overlap in it."""
    import numpy as np

    time.sleep(1.0)
    return np.random.default_rng(os.getpid()).normal(size=(468, 2)).astype(np.float32)
