"""Does the face mesh waste CPU on its own threads? One mesh graph, the same clips run twice each, alternately with
all of this process's threads pinned to one CPU and free on every CPU (so both see the same machine minute).

    OMP_NUM_THREADS=1 python scripts/bench_mesh_threads.py --grid ../shared/data/grid --clips 30

mediapipe runs each graph on a pool of threads (two per graph on a 2-core machine, plus the inference threads); a
mesh run one frame at a time gains little from them, and an idle second core lets them spend CPU waiting for each
other. Linux only (sched_setaffinity).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from avprep.corpora import grid
from avprep.stages.decode import decode_clip
from avprep.stages.landmarks import _serialised_outputs
from bench_prep import quiet_native_stderr  # scripts/ is on the path when a script runs


def set_affinity(cpus: set[int]) -> None:
    """Every thread of this process (the graph's included) onto ``cpus``."""
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except OSError:  # a thread that ended meanwhile
            pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "grid")
    parser.add_argument("--clips", type=int, default=30)
    parser.add_argument("--detector-log", type=Path, default=Path("out/bench-prep-detector.log"))
    args = parser.parse_args()
    quiet_native_stderr(args.detector_log)
    import mediapipe as mp

    allowed = os.sched_getaffinity(0)
    clips = [decode_clip(c.video, None, 25, 16000).frames for c in grid.find_clips(args.grid, ["s1"])[: args.clips]]
    totals = {"one CPU": [0.0, 0.0], f"free ({len(allowed)} CPUs)": [0.0, 0.0]}
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=False, max_num_faces=1) as mesh:
        for frame in clips[0]:  # warm-up: the graph's threads exist before the first pinning
            _serialised_outputs(mesh, frame, "multi_face_landmarks", True)
        for frames in clips:
            for name, cpus in zip(totals, ({min(allowed)}, allowed)):
                set_affinity(cpus)
                mesh.reset()
                start, start_cpu = time.perf_counter(), time.process_time()
                for frame in frames:
                    _serialised_outputs(mesh, frame, "multi_face_landmarks", True)
                totals[name][0] += time.process_time() - start_cpu
                totals[name][1] += time.perf_counter() - start
    set_affinity(allowed)
    n = len(clips)
    for name, (cpu, wall) in totals.items():
        print(f"mesh graph, threads on {name}: CPU {cpu / n * 1000:.1f} ms / clip, wall {wall / n * 1000:.1f} ms / clip")
    (pin_cpu, pin_wall), (free_cpu, free_wall) = totals.values()
    print(f"one CPU / free: CPU {pin_cpu / free_cpu:.2f}, wall {pin_wall / free_wall:.2f}")


if __name__ == "__main__":
    main()
