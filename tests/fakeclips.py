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
