"""What writing in hand-out order costs (issue 22, item 1), and the pipeline before and after issue 22.

    OMP_NUM_THREADS=1 PYTHONPATH=. python scripts/bench_reorder.py --grid ../shared/data/grid --clips 60 \
        [--before /path/to/checkout-before] [--json out/bench-reorder.json]

Part 1, the reorder window alone: one pool of 2 workers (started once, kept) runs real GRID s1 clips through the real
pipeline, alternating rounds with ``ordered=True`` (results in hand-out order through the window, as avprep writes
them now) and ``ordered=False`` (as they finish, as before); each round takes its own interleaved slice of the
clips. Reported: wall and worker CPU per clip of each mode, and their ratio.

Part 2, before and after (with ``--before``, a checkout of the code before issue 22): ``prepare_grid`` on the same
clips in fresh processes, one version then the other, round by round; reported: worker CPU per clip (start-up
apart), wall per clip with start-up, and the steady-state clips/s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

RUN_ONE = """
import json, os, sys
from rich.console import Console
from avprep.options import PrepOptions
from avprep.recipes import prepare_grid
if __name__ == "__main__":
    grid, out, face, limit = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    r = prepare_grid(grid, out, speakers=["s1"], options=PrepOptions(jobs=2, limit=limit, mean_face=face,
                     progress=False, console=Console(file=open(os.devnull, "w"))))
    done = r.clips_written + sum(r.rejected.values())
    print(json.dumps({"clips": done, "wall": r.wall_seconds, "cpu": r.worker_cpu_seconds,
                      "startup_cpu": r.worker_startup_cpu_seconds, "steady_wall": r.steady_wall_seconds,
                      "steady_clips": r.steady_clips}))
"""


def part1(grid: Path, clips: int, rounds: int) -> dict:
    import numpy as np

    from avprep.corpora import grid as corpus
    from avprep.pipeline import Options, process_clip, start_worker
    from avprep.presets import get_preset
    from avprep.reference import estimate_mean_face
    from avprep.workers import WorkerPool

    specs = corpus.find_clips(grid, ["s1"])[:clips]
    preset = get_preset("bridging-grid")
    face = estimate_mean_face(specs[:8], preset)
    options = Options(preset)
    pool = WorkerPool(process_clip, (options, face), jobs=2, timeout=600, init=partial(start_worker, options))
    list(pool.map(specs[-2:], keep_workers=True))  # start both workers and warm them (first clips)
    stats = {True: [0.0, 0.0, 0], False: [0.0, 0.0, 0]}
    try:
        for r in range(rounds):
            ordered = r % 2 == 0 if (r // 2) % 2 == 0 else r % 2 == 1  # ABBA: on, off, off, on, ...
            todo = specs[r::rounds]
            cpu0, start = pool.cpu_seconds, time.perf_counter()
            outcomes = list(pool.map(todo, ordered=ordered, keep_workers=True))
            wall = time.perf_counter() - start
            stats[ordered][0] += wall
            stats[ordered][1] += pool.cpu_seconds - cpu0
            stats[ordered][2] += len(outcomes)
            print(f"round {r} ordered={ordered}: {len(todo)} clips, {wall:.1f} s wall", flush=True)
    finally:
        pool.close()
    per = {k: {"wall_ms": 1000 * v[0] / v[2], "cpu_ms": 1000 * v[1] / v[2], "clips": v[2]} for k, v in stats.items()}
    return {"ordered": per[True], "as_finished": per[False],
            "wall_ratio": per[True]["wall_ms"] / per[False]["wall_ms"],
            "cpu_ratio": per[True]["cpu_ms"] / per[False]["cpu_ms"], "mean_face_sum": float(np.sum(face))}


def part2(grid: Path, clips: int, rounds: int, before: Path, work: Path) -> dict:
    import numpy as np

    from avprep.corpora import grid as corpus
    from avprep.presets import get_preset
    from avprep.reference import estimate_mean_face

    face = work / "mf.npy"
    np.save(face, estimate_mean_face(corpus.find_clips(grid, ["s1"])[:8], get_preset("bridging-grid")))
    script = work / "run_one.py"
    script.write_text(RUN_ONE)
    after = Path(__file__).resolve().parents[1]
    results: dict[str, list[dict]] = {"before": [], "after": []}
    for r in range(rounds):
        for name in (("before", "after") if r % 2 == 0 else ("after", "before")):
            code = before if name == "before" else after
            out = work / f"{name}-{r}"
            proc = subprocess.run([sys.executable, str(script), str(grid), str(out), str(face), str(clips)],
                                  capture_output=True, text=True, cwd=code, env={**os.environ, "PYTHONPATH": str(code)})
            if proc.returncode:
                raise RuntimeError(proc.stderr[-2000:])
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            results[name].append(row)
            print(f"round {r} {name}: {row}", flush=True)
    summary = {}
    for name, rows in results.items():
        n = sum(x["clips"] for x in rows)
        steady = sum(x["steady_clips"] for x in rows)
        summary[name] = {
            "worker_cpu_ms_per_clip": 1000 * sum(x["cpu"] - x["startup_cpu"] for x in rows) / n,
            "wall_ms_per_clip_with_startup": 1000 * sum(x["wall"] for x in rows) / n,
            "steady_clips_per_s": steady / sum(x["steady_wall"] for x in rows) if steady else None,
        }
    summary["cpu_after_over_before"] = (summary["after"]["worker_cpu_ms_per_clip"]
                                        / summary["before"]["worker_cpu_ms_per_clip"])
    summary["wall_after_over_before"] = (summary["after"]["wall_ms_per_clip_with_startup"]
                                         / summary["before"]["wall_ms_per_clip_with_startup"])
    return summary


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--grid", type=Path, required=True)
    parser.add_argument("--clips", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--before", type=Path, default=None, help="a checkout of the code before issue 22")
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-reorder"))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--skip-window", action="store_true")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    result = {"load_average_start": os.getloadavg()}
    if not args.skip_window:
        result["window"] = part1(args.grid.resolve(), args.clips, args.rounds)
    if args.before:
        result["before_after"] = part2(args.grid.resolve(), args.clips // 2, args.rounds, args.before.resolve(),
                                       args.work.resolve())
    result["load_average_end"] = os.getloadavg()
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
