"""Benchmark avprep on real GRID s1 clips: time per stage, and the full pipeline against the landmark model alone.

    python scripts/bench_prep.py --grid ../shared/data/grid --clips 50

The floor is the face mesh alone (tracking mode, one face, frames decoded beforehand, only ``process`` timed):
no pipeline built on this detector can be faster. With 2 jobs the floor is the 1-job floor halved: perfect scaling,
the best 2 processes could do. Two alternatives, on the same clips:
- the mesh detecting the face afresh on every frame (``static_image_mode=True``), detector time only;
- a straightforward pipeline, timed end to end: ffmpeg-python pipe decode (needs the ffmpeg binary), per-frame
  detection without tracking, a mouth box from each frame's lip landmarks, resize to 112 gray, one .npy per clip.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from avprep.corpora import grid
from avprep.prepare import MEAN_FACE_FILE, prepare
from avprep.presets import get_preset
from avprep.reference import estimate_mean_face
from avprep.stages.decode import decode_clip


def mesh_seconds(clips, static: bool) -> tuple[float, float]:
    """(wall, CPU) seconds inside face_mesh.process over all clips (a fresh mesh per clip, as the pipeline does).
    CPU time is the whole process's, all threads: it is what a loaded machine distorts least."""
    import mediapipe as mp

    wall = cpu = 0.0
    for clip in clips:
        frames = decode_clip(clip.video, clip.audio, 25, 16000).frames
        with mp.solutions.face_mesh.FaceMesh(static_image_mode=static, max_num_faces=1) as mesh:
            for frame in frames:
                start, start_cpu = time.perf_counter(), time.process_time()
                mesh.process(frame)
                wall += time.perf_counter() - start
                cpu += time.process_time() - start_cpu
    return wall, cpu


def straightforward_seconds(clips, out: Path) -> float | None:
    """The pipeline people write first (see the module docstring); None when ffmpeg is not installed."""
    import cv2
    import mediapipe as mp

    try:
        import ffmpeg
    except ImportError:
        return None
    if shutil.which("ffmpeg") is None:
        return None
    lips = [61, 291, 0, 17]
    start = time.perf_counter()
    for clip in clips:
        probe = ffmpeg.probe(str(clip.video))
        video = next(s for s in probe["streams"] if s["codec_type"] == "video")
        w, h = int(video["width"]), int(video["height"])
        raw, _ = ffmpeg.input(str(clip.video)).output("pipe:", format="rawvideo", pix_fmt="rgb24").run(quiet=True)
        frames = np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3)
        crops = []
        with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1) as mesh:
            for frame in frames:
                found = mesh.process(frame).multi_face_landmarks
                if not found:
                    continue
                pts = np.array([(found[0].landmark[i].x * w, found[0].landmark[i].y * h) for i in lips])
                cx, cy = pts.mean(0)
                half = int(max(np.ptp(pts[:, 0]), 1) * 0.9)
                box = frame[max(int(cy) - half, 0): int(cy) + half, max(int(cx) - half, 0): int(cx) + half]
                crops.append(cv2.resize(cv2.cvtColor(box, cv2.COLOR_RGB2GRAY), (112, 112)))
        np.save(out / f"{clip.key}.npy", np.stack(crops))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "grid")
    parser.add_argument("--clips", type=int, default=50)
    parser.add_argument("--preset", default="bridging-grid")
    parser.add_argument("--unit", default="sentence")
    args = parser.parse_args()
    console = Console()
    if not (args.grid / "s1").is_dir():
        raise SystemExit(f"GRID s1 not found under {args.grid}: pass --grid /path/to/grid")

    clips = grid.find_clips(args.grid, ["s1"])[: args.clips]
    preset = get_preset(args.preset)
    frames = sum(len(decode_clip(c.video, None, 25, 16000).frames) for c in clips[:1]) * len(clips)  # 75 per clip
    console.print(f"{len(clips)} s1 clips (~{frames} frames), preset {preset.name}, unit {args.unit}, "
                  f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    mean_face = estimate_mean_face(clips, preset) if preset.registration.mode == "mean-face" else None

    floor, floor_cpu = mesh_seconds(clips, static=False)
    per_frame, _ = mesh_seconds(clips, static=True)
    plain_out = Path(tempfile.mkdtemp(prefix="bench-plain-"))
    plain = straightforward_seconds(clips, plain_out)
    shutil.rmtree(plain_out)

    walls, stages = {}, Counter()
    for jobs in (1, 2):
        out = Path(tempfile.mkdtemp(prefix=f"bench-prep-{jobs}-"))
        if mean_face is not None:
            np.save(out / MEAN_FACE_FILE, mean_face)
        start, start_cpu = time.perf_counter(), time.process_time()
        report = prepare(clips, "grid", out, preset, unit=args.unit,
                         vocabulary=tuple(grid.vocabulary()) if args.unit == "word" else (), jobs=jobs,
                         console=Console(file=open(os.devnull, "w")), progress=False)
        walls[jobs] = time.perf_counter() - start
        if jobs == 1:  # one job runs in this process, so its CPU time is all the pipeline's
            pipeline_cpu = time.process_time() - start_cpu
            stages = report.stage_seconds
            bytes_per_clip = report.index["bytes"] / max(report.clips_written, 1)
            field_bytes = report.index["field_bytes_per_sample"]
        shutil.rmtree(out)

    table = Table(title=f"avprep bench: {len(clips)} GRID s1 clips, {preset.name}")
    for col in ("what", "seconds", "ms / clip", "vs floor"):
        table.add_column(col, justify="right" if col != "what" else "left")
    table.add_row("floor: face mesh alone (tracking)", f"{floor:.2f}", f"{floor / len(clips) * 1000:.0f}", "1.00")
    table.add_row("alternative: face mesh per frame (no tracking)", f"{per_frame:.2f}",
                  f"{per_frame / len(clips) * 1000:.0f}", f"{per_frame / floor:.2f}")
    if plain is not None:
        table.add_row("alternative: ffmpeg pipe + per-frame mesh + crop (1 job)", f"{plain:.2f}",
                      f"{plain / len(clips) * 1000:.0f}", f"{plain / floor:.2f}")
    for stage, secs in sorted(stages.items(), key=lambda kv: -kv[1]):
        table.add_row(f"  stage {stage} (1 job)", f"{secs:.2f}", f"{secs / len(clips) * 1000:.0f}", f"{secs / floor:.2f}")
    table.add_row("full pipeline, 1 job (wall)", f"{walls[1]:.2f}", f"{walls[1] / len(clips) * 1000:.0f}",
                  f"{walls[1] / floor:.2f}")
    table.add_row("full pipeline, 2 jobs (wall) vs floor / 2", f"{walls[2]:.2f}",
                  f"{walls[2] / len(clips) * 1000:.0f}", f"{walls[2] / (floor / 2):.2f}")
    table.add_row("CPU time: floor", f"{floor_cpu:.2f}", f"{floor_cpu / len(clips) * 1000:.0f}", "1.00")
    table.add_row("CPU time: full pipeline, 1 job", f"{pipeline_cpu:.2f}", f"{pipeline_cpu / len(clips) * 1000:.0f}",
                  f"{pipeline_cpu / floor_cpu:.2f}")
    console.print(table)
    console.print(f"load average after the run: {os.getloadavg()[0]:.2f}")
    rates = f"clips/s: 1 job {len(clips) / walls[1]:.2f}, 2 jobs {len(clips) / walls[2]:.2f}"
    if plain is not None:
        rates += f"; straightforward pipeline {len(clips) / plain:.2f} (avprep 1 job is {plain / walls[1]:.2f}x faster)"
    console.print(rates)
    console.print(f"shard bytes per clip {bytes_per_clip / 1024:.1f} KiB; per field: "
                  + ", ".join(f"{k} {v / 1024:.1f} KiB" for k, v in sorted(field_bytes.items())))


if __name__ == "__main__":
    main()
