"""Does the face mesh waste CPU on its own threads? The same clips through two mesh graphs, alternately clip by clip
(so both see the same machine minute): one on mediapipe's default pool of threads, one run on the calling thread
(``landmarks.on_calling_thread``, as avprep workers run it). Both are fed directly; their landmarks must be equal.

    OMP_NUM_THREADS=1 python scripts/bench_mesh_threads.py --grid ../shared/data/grid --clips 30

mediapipe gives a graph a pool of threads (one per core) and schedules each of the ~50 calculators a frame passes
through on it; a mesh fed one frame at a time cannot use them, and the hand-offs cost CPU.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from avprep.corpora import grid
from avprep.stages.decode import decode_clip
from avprep.stages.landmarks import _serialised_outputs, on_calling_thread
from bench_prep import quiet_native_stderr  # scripts/ is on the path when a script runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "grid")
    parser.add_argument("--clips", type=int, default=30)
    parser.add_argument("--detector-log", type=Path, default=Path("out/bench-prep-detector.log"))
    args = parser.parse_args()
    quiet_native_stderr(args.detector_log)
    import mediapipe as mp

    clips = [decode_clip(c.video, None, 25, 16000).frames for c in grid.find_clips(args.grid, ["s1"])[: args.clips]]
    kinds = {"own thread pool": mp.solutions.face_mesh.FaceMesh,
             "calling thread": on_calling_thread(mp.solutions.face_mesh.FaceMesh)}
    meshes = {name: cls(static_image_mode=False, max_num_faces=1) for name, cls in kinds.items()}
    totals = {name: [0.0, 0.0] for name in kinds}
    for i, frames in enumerate(clips):
        outputs = []
        for name in list(kinds)[:: 1 if i % 2 == 0 else -1]:  # who goes first alternates
            mesh = meshes[name]
            mesh.reset()
            start, start_cpu = time.perf_counter(), time.process_time()
            outputs.append([_serialised_outputs(mesh, frame, "multi_face_landmarks", True) for frame in frames])
            totals[name][0] += time.process_time() - start_cpu
            totals[name][1] += time.perf_counter() - start
        if outputs[0] != outputs[1]:
            raise SystemExit("the two graphs gave different landmarks")
    for mesh in meshes.values():
        mesh.close()
    n = len(clips)
    for name, (cpu, wall) in totals.items():
        print(f"mesh graph on its {name}: CPU {cpu / n * 1000:.1f} ms / clip, wall {wall / n * 1000:.1f} ms / clip")
    (pool_cpu, pool_wall), (own_cpu, own_wall) = totals.values()
    print(f"calling thread / thread pool: CPU {own_cpu / pool_cpu:.2f}, wall {own_wall / pool_wall:.2f} "
          f"(landmarks equal on all {n} clips)")


if __name__ == "__main__":
    main()
