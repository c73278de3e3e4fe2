"""Benchmark the loader's area resize (112 -> 64 mouth crops, the CPU recipes' input) alone and beside training.

    python scripts/bench_resize.py                 # 10-frame word clips and 75-frame sentences, idle and busy
    python scripts/bench_resize.py --json out/bench-resize.json

Three ways to compute the same INTER_AREA average, each per clip in one loader-worker-like process (torch at one
thread, as DataLoader sets it in its workers):

* ``torch`` (``avtrain.data.augment.resize_frames``): two matmuls with the area weights on torch's own threads;
* ``numpy``: the same two matmuls through numpy, whose OpenBLAS starts a thread per core of its own (what the
  loader did before 2026-12-05);
* ``cv2``: OpenCV's ``INTER_AREA`` frame by frame on float32 frames (the floor; OpenCV threads of its own too).

"idle" is the process alone; "busy" runs a stand-in for the training beside it: a second process doing float32
matmuls on as many torch threads as the machine has cores (a 2-thread run on a 2-core machine). Wall time per clip
is what the trainer waits for; CPU time is what the worker takes from the machine.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import time
from pathlib import Path

import numpy as np
import torch


def _busy(stop, threads: int) -> None:
    torch.set_num_threads(threads)
    a = torch.randn(512, 512)
    while not stop.is_set():
        a = torch.tanh(a @ a)


def _methods(size: int):
    import cv2

    from avtrain.data.augment import _area_weights, resize_frames

    def numpy_matmul(video: np.ndarray) -> np.ndarray:
        rows, cols = _area_weights(video.shape[1], size), _area_weights(video.shape[2], size)
        return np.matmul(np.matmul(rows, video.astype(np.float32)), cols.T)

    def opencv(video: np.ndarray) -> np.ndarray:
        return np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA)
                         for f in video.astype(np.float32)])

    return {"torch": lambda v: resize_frames(v, size), "numpy": numpy_matmul, "cv2": opencv}


def measure(fn, clips: list[np.ndarray], seconds: float) -> tuple[float, float]:
    """(wall ms, CPU ms) per clip over at least ``seconds``."""
    fn(clips[0])
    n, wall, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - wall < seconds:
        fn(clips[n % len(clips)])
        n += 1
    return (time.perf_counter() - wall) / n * 1e3, (time.process_time() - cpu) / n * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="per method, length and condition")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)  # as in a DataLoader worker
    rng = np.random.default_rng(0)
    methods = _methods(64)
    reference = rng.integers(0, 256, (10, 112, 112), dtype=np.uint8)
    outs = {name: fn(reference) for name, fn in methods.items()}
    agree = max(float(np.abs(o - outs["torch"]).max()) for o in outs.values())
    rows = []
    ctx = mp.get_context("spawn")
    for condition in ("idle", "busy"):
        stop, busy = ctx.Event(), None
        if condition == "busy":
            busy = ctx.Process(target=_busy, args=(stop, os.cpu_count() or 1), daemon=True)
            busy.start()
            time.sleep(2.0)  # let it reach full speed
        try:
            for frames in (10, 75):
                clips = [rng.integers(0, 256, (frames, 112, 112), dtype=np.uint8) for _ in range(8)]
                for name, fn in methods.items():
                    wall, cpu = measure(fn, clips, args.seconds)
                    rows.append({"condition": condition, "frames": frames, "method": name,
                                 "wall_ms": round(wall, 3), "cpu_ms": round(cpu, 3)})
        finally:
            stop.set()
            if busy is not None:
                busy.join(5)
    print(f"{os.cpu_count()} cores; 112 -> 64 area resize per clip; largest difference between methods {agree:.1e}")
    print(f"{'condition':<10}{'frames':>7}  {'method':<7}{'wall ms':>10}{'CPU ms':>10}{'wall / torch':>14}")
    for r in rows:
        base = next(b for b in rows if (b["condition"], b["frames"], b["method"]) == (r["condition"], r["frames"],
                                                                                        "torch"))
        print(f"{r['condition']:<10}{r['frames']:>7}  {r['method']:<7}{r['wall_ms']:>10.3f}{r['cpu_ms']:>10.3f}"
              f"{r['wall_ms'] / base['wall_ms']:>14.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"cores": os.cpu_count(), "max_difference": agree, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
