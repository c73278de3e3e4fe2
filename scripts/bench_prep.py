"""Benchmark avprep on real GRID s1 clips: time per stage, and the full pipeline against the landmark model alone.

    python scripts/bench_prep.py --grid ../shared/data/grid --clips 100

Floors, all the face mesh alone (tracking mode, one face, one graph reset between clips, frames decoded beforehand,
only the mesh call timed, after one untimed clip on a new graph): through ``FaceMesh.process``, the public call with
mediapipe's threads free (the floor issue 11 set its targets against); the graph fed directly (no per-call Python
wrapper); and the **strict floor**, the graph fed directly and run on the calling thread, as an avprep worker runs
it (``landmarks.on_calling_thread``): no pipeline on this detector can be faster than that. With 2 jobs a floor is
halved: perfect scaling. Targets (issue 11): CPU time per clip <= 1.3x the floor's, 2-job wall time <= 1.4x floor /
2, printed against the issue's floor and the strict one. CPU time is process time (all threads), which a machine
shared with other work distorts little; wall time needs a quiet machine. What a worker pays once per run, its
start-up (spawn, imports, detector graphs) and its first clip (first decoder and encoder set-up, first touch of its
buffers), is left out of the per-clip CPU figures and printed on its own (the target line also gives the ratio with
first clips); wall times are given with start-up, and for the steady state: clips finished while every worker was
busy past its first clip (from the moment all had finished one to the moment the last clip was handed out), the rate
a long run settles at.

The main configuration (bridging-grid, sentences) runs with 1 and 2 jobs, once per crop codec (mp4, the preset
default, and jpg); the word unit and the two-tower preset (per-clip registration, optical flow) run with 1 job.

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
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from avprep.corpora import grid
from avprep.options import PrepOptions
from avprep.prepare import MEAN_FACE_FILE
from avprep.presets import get_preset, with_overrides
from avprep.recipes import prepare_grid
from avprep.reference import estimate_mean_face
from avprep.stages.decode import decode_clip


def mesh_seconds(clips, static: bool, direct: bool = False, calling_thread: bool = False) -> tuple[float, float]:
    """(wall, CPU) seconds inside the face mesh over all clips (one mesh, reset between clips, as a pipeline
    worker does). CPU time is the whole process's, all threads: it is what a loaded machine distorts least.

    ``direct``: the graph fed as avprep feeds it (``_serialised_outputs``), without FaceMesh.process's per-call
    Python wrapper; otherwise FaceMesh.process, the public call. ``calling_thread``: the graph run on the thread
    that feeds it instead of its own pool, as an avprep worker runs it."""
    import mediapipe as mp

    from avprep.stages.landmarks import _serialised_outputs, on_calling_thread

    mesh_class = mp.solutions.face_mesh.FaceMesh
    if calling_thread:
        mesh_class = on_calling_thread(mesh_class)
    wall = cpu = 0.0
    with mesh_class(static_image_mode=static, max_num_faces=1) as mesh:
        feed = (lambda frame: _serialised_outputs(mesh, frame, "multi_face_landmarks", lean=True)) if direct \
            else mesh.process
        # One untimed clip first: the graph's first frames pay one-off costs, as a pipeline worker's first clip
        # does (left out there too).
        for frame in decode_clip(clips[0].video, clips[0].audio, 25, 16000).frames:
            feed(frame)
        for clip in clips:
            frames = decode_clip(clip.video, clip.audio, 25, 16000).frames
            mesh.reset()
            for frame in frames:
                start, start_cpu = time.perf_counter(), time.process_time()
                feed(frame)
                wall += time.perf_counter() - start
                cpu += time.process_time() - start_cpu
    return wall, cpu


def grid_folder(grid_root: Path, clips, folder: Path) -> Path:
    """A GRID folder holding only ``clips`` of s1: links to their videos, and to s1's alignments (and separate
    audio, where the corpus has it)."""
    (folder / "s1" / "video").mkdir(parents=True)
    for clip in clips:
        (folder / "s1" / "video" / clip.video.name).symlink_to(clip.video.resolve())
    for sub in ("s1/align", "s1/audio", "alignments/s1"):
        if (grid_root / sub).is_dir():
            (folder / sub).parent.mkdir(parents=True, exist_ok=True)
            (folder / sub).symlink_to((grid_root / sub).resolve())
    return folder


def run_prepare(grid_root: Path, clips, preset, unit: str, jobs: int, mean_face) -> Counter:
    """One prepare_grid() run (what `avprep grid` runs) over ``clips`` into a scratch folder: wall and CPU seconds
    (this process + job workers), sizes; as a Counter, so that the runs of several rounds add up."""
    scratch = Path(tempfile.mkdtemp(prefix=f"bench-prep-{jobs}-"))
    try:
        root, out = grid_folder(grid_root, clips, scratch / "grid"), scratch / "shards"
        out.mkdir()
        if mean_face is not None:
            np.save(out / MEAN_FACE_FILE, mean_face)
        options = PrepOptions(preset=preset, jobs=jobs, progress=False, console=Console(file=open(os.devnull, "w")))
        start, start_cpu = time.perf_counter(), time.process_time()
        report = prepare_grid(root, out, speakers=["s1"], unit=unit, options=options)
        wall = time.perf_counter() - start
        # The per-clip work runs in the runner's worker processes (also with 1 job): their CPU time is in the report.
        cpu = time.process_time() - start_cpu + report.worker_cpu_seconds
        # Start-up (spawn, imports, detector graphs) and each worker's first clip (first decoder and encoder set-up,
        # first touch of the frame buffers) are paid once per worker and run: nothing per clip on a corpus of 10^5
        # clips, ~10% on 20, so they are counted apart and the per-clip figures leave them out.
        first = report.worker_first_clip_cpu_seconds
        run = Counter({"wall": wall, "cpu": cpu - report.worker_startup_cpu_seconds - first, "first_cpu": first,
                       "first_clips": report.worker_first_clips, "timed_clips": len(clips) - report.worker_first_clips,
                       "startup_cpu": report.worker_startup_cpu_seconds, "steady_wall": report.steady_wall_seconds,
                       "steady_clips": report.steady_clips, "clips": report.clips_written,
                       "samples": report.samples_written, "bytes": report.index["bytes"]})
        run.update({f"stage {k}": v for k, v in report.stage_cpu_seconds.items()})
        run.update({f"rejected {k}": v for k, v in report.rejected.items()})
        per_sample = report.index["field_bytes_per_sample"]
        run.update({f"field {k}": v * report.samples_written for k, v in per_sample.items()})
        return run
    finally:
        shutil.rmtree(scratch)


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
    parser.add_argument("--clips", type=int, default=100)
    parser.add_argument("--preset", default="bridging-grid", help="the main configuration's preset")
    parser.add_argument("--unit", default="sentence", help="the main configuration's unit")
    parser.add_argument("--codecs", default="mp4,jpg", help="crop codecs the main configuration runs with (the "
                        "first is the preset default mp4; jpg: what the GPU loader recommendation uses)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (see main)")
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
    codecs = args.codecs.split(",")
    frames = sum(len(decode_clip(c.video, None, 25, 16000).frames) for c in clips[:1]) * len(clips)  # 75 per clip
    console.print(f"{len(clips)} s1 clips (~{frames} frames), main: preset {preset.name}, unit {args.unit}, crops "
                  f"{' and '.join(codecs)}; {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    mean_face = estimate_mean_face(clips, preset) if preset.registration.mode == "mean-face" else None

    # The machine's speed drifts by up to ~30% over minutes (a shared VM), and not equally for every kind of work,
    # so everything is measured in rounds on interleaved subsets of the clips (floors, then each configuration) and
    # summed: floor and pipeline see the same machine.
    floors: Counter = Counter()
    runs: dict[tuple, Counter] = defaultdict(Counter)  # (preset, unit, crop codec, jobs) -> summed runs
    extras = [] if args.no_extras else [(preset, "word" if args.unit != "word" else "sentence"),
                                        (get_preset("two-tower"), "sentence")]
    extra_faces = {}
    for extra, _ in extras:
        face = estimate_mean_face(clips, extra) if extra.registration.mode == "mean-face" else None
        extra_faces[extra.name] = mean_face if extra.name == preset.name else face
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("rounds", total=args.rounds)
        for r in range(args.rounds):
            group = clips[r :: args.rounds]
            for name, static, direct, calling_thread in (("floor", False, False, False), ("graph", False, True, False),
                                                 ("strict", False, True, True)) + (
                    () if args.no_alternatives else (("per-frame", True, False, False),)):
                wall, cpu = mesh_seconds(group, static=static, direct=direct, calling_thread=calling_thread)
                floors.update({f"{name} wall": wall, f"{name} cpu": cpu})
            if not args.no_alternatives:
                plain_out = Path(tempfile.mkdtemp(prefix="bench-plain-"))
                plain = straightforward_seconds(group, plain_out)
                shutil.rmtree(plain_out)
                if plain is not None:
                    floors["plain wall"] += plain
            for codec in codecs:
                main_preset = with_overrides(preset, crop_codec=codec)
                for jobs in (1, 2):
                    runs[(preset.name, args.unit, codec, jobs)] += run_prepare(args.grid, group, main_preset,
                                                                               args.unit, jobs, mean_face)
            for extra, unit in extras:
                runs[(extra.name, unit, extra.crop_codec, 1)] += run_prepare(args.grid, group, extra, unit, 1,
                                                                             extra_faces[extra.name])
            bar.advance(task)
    floor, floor_cpu, direct, direct_cpu = (floors[k] for k in ("floor wall", "floor cpu", "strict wall", "strict cpu"))
    graph, graph_cpu = floors["graph wall"], floors["graph cpu"]
    per_frame, plain = floors.get("per-frame wall"), floors.get("plain wall")
    label = lambda key: f"{key[0]}, {key[1]}, {key[2]} crops, {key[3]} job{'s' * (key[3] > 1)}"  # noqa: E731

    n = len(clips)
    ms = lambda secs: f"{secs / n * 1000:.0f}"  # noqa: E731
    table = Table(title=f"avprep bench: {n} GRID s1 clips")
    for col in ("what", "seconds", "ms / clip", "vs floor", "vs strict floor"):
        table.add_column(col, justify="right" if col != "what" else "left")
    def row(what: str, secs: float, base: float, strict: float, clips: int = n) -> None:
        """A row of ``secs`` over ``clips`` clips, against floors measured over all n."""
        per = secs / clips * n
        table.add_row(what, f"{secs:.2f}", ms(per), f"{per / base:.2f}", f"{per / strict:.2f}" if strict else "")

    table.add_row("[bold]CPU time (process time, all threads)[/]", "", "", "", "")
    row("floor: face mesh alone (FaceMesh.process, tracking)", floor_cpu, floor_cpu, direct_cpu)
    row("  the mesh graph fed directly (no wrapper)", graph_cpu, floor_cpu, direct_cpu)
    row("strict floor: the graph fed directly, on the calling thread", direct_cpu, floor_cpu, direct_cpu)
    for codec in codecs:
        # Per stage, as the 1-job runs' worker measured it (the detector's graphs, caches and threads as in a run).
        one = runs[(preset.name, args.unit, codec, 1)]
        stages = {k[6:]: v for k, v in one.items() if k.startswith("stage ") and v}
        table.add_row(f"stages of {label((preset.name, args.unit, codec, 1))}, all clips:", "", "", "", "")
        for stage, secs in sorted(stages.items(), key=lambda kv: -kv[1]):
            row(f"  {stage}", secs, floor_cpu, direct_cpu)
        row("  rest: shard writing, samples passed between processes", one["cpu"] + one["first_cpu"] -
            sum(stages.values()), floor_cpu, direct_cpu)
    for key, run in runs.items():
        if run["timed_clips"]:  # else every clip was some worker's first (a run of very few clips)
            row(f"full pipeline: {label(key)}, after each worker's first clip", run["cpu"], floor_cpu, direct_cpu,
                run["timed_clips"])
    for key, run in runs.items():
        if key[:3] == (preset.name, args.unit, codecs[0]):
            workers = f"{key[3]} worker{'s' * (key[3] > 1)}"
            table.add_row(f"  not included above: start-up of {workers}, {args.rounds} runs",
                          f"{run['startup_cpu']:.2f}", "", "", "")
            extra = (f", {(run['first_cpu'] / run['first_clips'] - run['cpu'] / run['timed_clips']) * 1000:+.0f} ms "
                     "each over a later clip" if run["timed_clips"] and run["first_clips"] else "")
            table.add_row(f"  not included above: first clip of {workers}, {args.rounds} runs "
                          f"({run['first_clips']:.0f} clips{extra})", f"{run['first_cpu']:.2f}", "", "", "")
    table.add_row("[bold]wall time (needs a quiet machine)[/]", "", "", "", "")
    row("floor: face mesh alone (FaceMesh.process, tracking)", floor, floor, direct)
    row("  the mesh graph fed directly (no wrapper)", graph, floor, direct)
    row("strict floor: the graph fed directly, on the calling thread", direct, floor, direct)
    if per_frame:
        row("alternative: face mesh per frame (no tracking)", per_frame, floor, direct)
    if plain:
        row("alternative: ffmpeg pipe + per-frame mesh + crop (1 job)", plain, floor, direct)
    for key, run in runs.items():
        half = 1 if key[3] == 1 else 2
        row(f"full pipeline: {label(key)}" + (" vs floor / 2" if half > 1 else "") + ", start-up included",
            run["wall"], floor / half, direct / half)
    steady = lambda run: run["steady_wall"] / run["steady_clips"] * n  # noqa: E731 - while every worker is busy
    for key, run in runs.items():
        if key[:2] == (preset.name, args.unit) and run["steady_clips"]:
            half = 1 if key[3] == 1 else 2
            row(f"full pipeline: {label(key)}" + (" vs floor / 2" if half > 1 else "") + ", steady state",
                steady(run), floor / half, direct / half)
    console.print(table)
    console.print(f"load average after the run: {os.getloadavg()[0]:.2f}")
    for codec in codecs:
        one, two = runs[(preset.name, args.unit, codec, 1)], runs[(preset.name, args.unit, codec, 2)]
        for name, base_cpu, base_wall in (("floor (FaceMesh.process)", floor_cpu, floor),
                                          ("strict floor (graph on the calling thread)", direct_cpu, direct)):
            wall_ratio = two["wall"] / (base_wall / 2)
            with_first = (one["cpu"] + one["first_cpu"]) / base_cpu
            if one["timed_clips"]:
                cpu_ratio = one["cpu"] / one["timed_clips"] * n / base_cpu
                cpu_verdict = f"{cpu_ratio:.2f}x (target <= 1.3) {'met' if cpu_ratio <= 1.3 else 'NOT met'}"
            else:
                cpu_verdict = "not measured (every clip was a worker's first)"
            if two["steady_clips"]:
                steady_ratio = steady(two) / (base_wall / 2)
                steady_verdict = f"{steady_ratio:.2f}x {'met' if steady_ratio <= 1.4 else 'NOT met'}"
            else:  # a run so short that the last clip went out before every worker had finished one
                steady_verdict = "not measured (too few clips per round)"
            console.print(f"TARGET {codec} crops vs {name}: CPU per clip {cpu_verdict} ({with_first:.2f}x with "
                          f"first clips); 2-job wall {wall_ratio:.2f}x floor / 2 "
                          f"(target <= 1.4) {'met' if wall_ratio <= 1.4 else 'NOT met'}, steady state "
                          f"{steady_verdict}")
        rates = f"clips/s, {codec} crops: 1 job {n / one['wall']:.2f}, 2 jobs {n / two['wall']:.2f}"
        if plain:
            rates += f"; straightforward pipeline {n / plain:.2f} (avprep 1 job {plain / one['wall']:.2f}x faster)"
        console.print(rates)
    console.print("wall time is valid on a quiet machine only")
    for key, run in runs.items():
        rejected = {k[9:]: v for k, v in run.items() if k.startswith("rejected ") and v}
        if rejected:
            console.print(f"[yellow]{label(key)}: rejected {rejected}[/]")
    for key, run in runs.items():
        if key[3] == 1:
            fields = {k[6:]: v / max(run["samples"], 1) for k, v in run.items() if k.startswith("field ")}
            console.print(f"shard bytes per clip ({label(key)}) {run['bytes'] / max(run['clips'], 1) / 1024:.1f} KiB; "
                          "per sample: " + ", ".join(f"{k} {v / 1024:.1f} KiB" for k, v in sorted(fields.items())))


if __name__ == "__main__":
    main()
