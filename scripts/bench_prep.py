"""Benchmark avprep on real GRID s1 clips: time per stage, and the full pipeline against the landmark model alone.

    python scripts/bench_prep.py --grid ../shared/data/grid --clips 50

The floor is the face mesh alone (tracking mode, one face, frames decoded beforehand, only ``process`` timed):
no pipeline built on this detector can be faster. With 2 jobs the floor is the 1-job floor halved: perfect scaling,
the best 2 processes could do. Targets (issue 11): CPU time per clip <= 1.3x the floor's, 2-job wall time <=
1.4x floor / 2. CPU time is process time (all threads), which a machine shared with other work distorts little;
wall time needs a quiet machine. Besides the main configuration (bridging-grid, sentences, 1 and 2 jobs), the
word unit and the two-tower preset (per-clip registration, optical flow) run with 1 job.

Two alternatives, on the same clips:
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
from avprep.pipeline import Options, process_clip
from avprep.prepare import MEAN_FACE_FILE, prepare
from avprep.presets import get_preset
from avprep.reference import estimate_mean_face
from avprep.stages.decode import decode_clip


def mesh_seconds(clips, static: bool) -> tuple[float, float]:
    """(wall, CPU) seconds inside face_mesh.process over all clips (one mesh, reset between clips, as a pipeline
    worker does). CPU time is the whole process's, all threads: it is what a loaded machine distorts least."""
    import mediapipe as mp

    wall = cpu = 0.0
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=static, max_num_faces=1) as mesh:
        for clip in clips:
            frames = decode_clip(clip.video, clip.audio, 25, 16000).frames
            mesh.reset()
            for frame in frames:
                start, start_cpu = time.perf_counter(), time.process_time()
                mesh.process(frame)
                wall += time.perf_counter() - start
                cpu += time.process_time() - start_cpu
    return wall, cpu


def run_prepare(clips, preset, unit: str, jobs: int, mean_face) -> dict:
    """One prepare() run into a scratch folder: wall and CPU seconds (this process + job workers), sizes."""
    out = Path(tempfile.mkdtemp(prefix=f"bench-prep-{jobs}-"))
    try:
        if mean_face is not None:
            np.save(out / MEAN_FACE_FILE, mean_face)
        start, start_cpu = time.perf_counter(), time.process_time()
        report = prepare(clips, "grid", out, preset, unit=unit,
                         vocabulary=tuple(grid.vocabulary()) if unit == "word" else (), jobs=jobs,
                         console=Console(file=open(os.devnull, "w")), progress=False)
        wall = time.perf_counter() - start
        # The per-clip work runs in the runner's worker processes (also with 1 job): their CPU time is in the report.
        cpu = time.process_time() - start_cpu + report.worker_cpu_seconds
        return {"wall": wall, "cpu": cpu, "clips": report.clips_written, "samples": report.samples_written,
                "rejected": dict(report.rejected), "bytes": report.index["bytes"],
                "field_bytes": report.index["field_bytes_per_sample"]}
    finally:
        shutil.rmtree(out)


def stage_cpu(clips, preset, unit: str, mean_face) -> Counter:
    """Process CPU seconds per stage over the clips, run here one after another."""
    options = Options(preset, unit=unit, vocabulary=tuple(grid.vocabulary()) if unit == "word" else ())
    stages: Counter = Counter()
    for clip in clips:
        stages.update(process_clip(clip, options, mean_face).cpu_timings)
    return stages


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


def quiet_native_stderr(log: Path) -> None:
    """Send file descriptor 2 (where mediapipe's C++ logging writes) to ``log``; Python's own stderr keeps the
    terminal, so errors and tracebacks still show."""
    import sys

    log.parent.mkdir(parents=True, exist_ok=True)
    terminal = os.dup(2)
    with open(log, "ab") as f:
        os.dup2(f.fileno(), 2)
    sys.stderr = os.fdopen(terminal, "w", buffering=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "grid")
    parser.add_argument("--clips", type=int, default=50)
    parser.add_argument("--preset", default="bridging-grid", help="the main configuration's preset")
    parser.add_argument("--unit", default="sentence", help="the main configuration's unit")
    parser.add_argument("--no-extras", action="store_true", help="skip the word-unit and two-tower runs")
    parser.add_argument("--no-alternatives", action="store_true", help="skip the per-frame mesh and plain pipeline")
    parser.add_argument("--detector-log", type=Path, default=Path("out/bench-prep-detector.log"),
                        help="where the detector's C++ log lines go (the floor runs mediapipe in this process)")
    args = parser.parse_args()
    console = Console()
    if not (args.grid / "s1").is_dir():
        raise SystemExit(f"GRID s1 not found under {args.grid}: pass --grid /path/to/grid")
    quiet_native_stderr(args.detector_log)
    console.print(f"detector log lines: {args.detector_log}")

    clips = grid.find_clips(args.grid, ["s1"])[: args.clips]
    preset = get_preset(args.preset)
    frames = sum(len(decode_clip(c.video, None, 25, 16000).frames) for c in clips[:1]) * len(clips)  # 75 per clip
    console.print(f"{len(clips)} s1 clips (~{frames} frames), main: preset {preset.name}, unit {args.unit}; "
                  f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    mean_face = estimate_mean_face(clips, preset) if preset.registration.mode == "mean-face" else None

    floor, floor_cpu = mesh_seconds(clips, static=False)
    per_frame = plain = None
    if not args.no_alternatives:
        per_frame, _ = mesh_seconds(clips, static=True)
        plain_out = Path(tempfile.mkdtemp(prefix="bench-plain-"))
        plain = straightforward_seconds(clips, plain_out)
        shutil.rmtree(plain_out)

    runs = {(preset.name, args.unit, jobs): run_prepare(clips, preset, args.unit, jobs, mean_face) for jobs in (1, 2)}
    stages = stage_cpu(clips, preset, args.unit, mean_face)
    if not args.no_extras:
        extras = [(preset, "word" if args.unit != "word" else "sentence"), (get_preset("two-tower"), "sentence")]
        for extra, unit in extras:
            face = estimate_mean_face(clips, extra) if extra.registration.mode == "mean-face" else None
            if extra.name == preset.name:
                face = mean_face
            runs[(extra.name, unit, 1)] = run_prepare(clips, extra, unit, 1, face)

    n = len(clips)
    ms = lambda secs: f"{secs / n * 1000:.0f}"  # noqa: E731
    table = Table(title=f"avprep bench: {n} GRID s1 clips")
    for col in ("what", "seconds", "ms / clip", "vs floor"):
        table.add_column(col, justify="right" if col != "what" else "left")
    table.add_row("[bold]CPU time (process time, all threads)[/]", "", "", "")
    table.add_row("floor: face mesh alone (tracking)", f"{floor_cpu:.2f}", ms(floor_cpu), "1.00")
    for stage, secs in sorted(stages.items(), key=lambda kv: -kv[1]):
        table.add_row(f"  stage {stage} ({preset.name}, {args.unit})", f"{secs:.2f}", ms(secs), f"{secs / floor_cpu:.2f}")
    for (name, unit, jobs), run in runs.items():
        table.add_row(f"full pipeline: {name}, {unit}, {jobs} job{'s' * (jobs > 1)}", f"{run['cpu']:.2f}",
                      ms(run["cpu"]), f"{run['cpu'] / floor_cpu:.2f}")
    table.add_row("[bold]wall time (needs a quiet machine)[/]", "", "", "")
    table.add_row("floor: face mesh alone (tracking)", f"{floor:.2f}", ms(floor), "1.00")
    if per_frame is not None:
        table.add_row("alternative: face mesh per frame (no tracking)", f"{per_frame:.2f}", ms(per_frame),
                      f"{per_frame / floor:.2f}")
    if plain is not None:
        table.add_row("alternative: ffmpeg pipe + per-frame mesh + crop (1 job)", f"{plain:.2f}", ms(plain),
                      f"{plain / floor:.2f}")
    for (name, unit, jobs), run in runs.items():
        versus = floor if jobs == 1 else floor / 2
        table.add_row(f"full pipeline: {name}, {unit}, {jobs} job{'s' * (jobs > 1)}"
                      + (" vs floor / 2" if jobs > 1 else ""), f"{run['wall']:.2f}", ms(run["wall"]),
                      f"{run['wall'] / versus:.2f}")
    console.print(table)
    main1, main2 = runs[(preset.name, args.unit, 1)], runs[(preset.name, args.unit, 2)]
    cpu_ratio, wall_ratio = main1["cpu"] / floor_cpu, main2["wall"] / (floor / 2)
    console.print(f"load average after the run: {os.getloadavg()[0]:.2f}")
    console.print(f"TARGET cpu: {preset.name} {args.unit}, 1 job: CPU per clip {cpu_ratio:.2f}x the floor's "
                  f"(target <= 1.3) {'met' if cpu_ratio <= 1.3 else 'NOT met'}")
    console.print(f"TARGET wall: 2 jobs {wall_ratio:.2f}x floor / 2 (target <= 1.4) {'met' if wall_ratio <= 1.4 else 'NOT met'}"
                  " -- wall time: valid on a quiet machine only")
    for key, run in runs.items():
        if run["rejected"]:
            console.print(f"[yellow]{key}: rejected {run['rejected']}[/]")
    rates = f"clips/s: 1 job {n / main1['wall']:.2f}, 2 jobs {n / main2['wall']:.2f}"
    if plain is not None:
        rates += f"; straightforward pipeline {n / plain:.2f} (avprep 1 job is {plain / main1['wall']:.2f}x faster)"
    console.print(rates)
    for (name, unit, jobs), run in runs.items():
        if jobs == 1:
            console.print(f"shard bytes per clip ({name}, {unit}) {run['bytes'] / max(run['clips'], 1) / 1024:.1f} KiB; "
                          "per sample: " + ", ".join(f"{k} {v / 1024:.1f} KiB" for k, v in sorted(run["field_bytes"].items())))


if __name__ == "__main__":
    main()
