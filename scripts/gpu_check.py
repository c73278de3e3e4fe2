"""GPU check: train the LRW bridging recipe (paper size) and the GRID bridging speech recipe on synthetic shards of
their shapes in bf16, resume one of them, measure the loader per crop codec, and print samples/s, peak memory and
the step time split (data wait vs compute).

    scripts/gpu_check.sh                              # on a CUDA machine (3-5 minutes expected on an H100/H200)
    scripts/gpu_check.sh --device cpu --steps 2       # the dry run the test suite does (seconds)

Training goes through the command line (``avtrain run RECIPE --set ...``), the interface that stays put while the
engine's insides change. The split is measured from outside: every request for the next training batch is timed
(data wait = time blocked in the loader; compute = time from receiving a batch to asking for the next one), with
the device synchronised at each request so that queued GPU work is counted as compute, not as waiting.
Results: printed, and written to OUT/gpu_check.json and OUT/gpu_check.md (rows for docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_loader beside this file

RECIPES = {"lrw": ROOT / "recipes" / "lrw-bridging.yaml", "grid": ROOT / "recipes" / "grid-s1-speech-bridging.yaml"}


class BatchClock:
    """Times every ``next()`` on a torch DataLoader iterator while installed (the engine's loaders are DataLoaders)."""

    def __init__(self, sync: bool, warmup: int = 0):
        self.sync = sync
        self.warmup = warmup
        self.calls: list[tuple[float, float]] = []  # (asked, received) per batch
        self.warmup_peak_gib: float | None = None
        self._orig = None

    def __enter__(self) -> BatchClock:
        cls = torch.utils.data.dataloader._BaseDataLoaderIter
        self._orig = orig = cls.__next__
        clock = self

        def timed_next(it):
            if clock.sync:
                torch.cuda.synchronize()
                if len(clock.calls) == clock.warmup:
                    # cuDNN's autotuner (benchmark mode) tries algorithms with workspaces of up to the whole card
                    # in the first steps: the steady peak is what the model needs, the warm-up's what it may grab
                    clock.warmup_peak_gib = torch.cuda.max_memory_allocated() / 2**30
                    torch.cuda.reset_peak_memory_stats()
            asked = time.perf_counter()
            try:
                return orig(it)
            finally:
                clock.calls.append((asked, time.perf_counter()))

        cls.__next__ = timed_next
        return self

    def __exit__(self, *exc) -> None:
        torch.utils.data.dataloader._BaseDataLoaderIter.__next__ = self._orig

    def split(self, warmup: int) -> dict:
        """Per step: data wait and compute (the gap to the next request); the last call has no step after it."""
        waits = [r - a for a, r in self.calls[:-1]]
        computes = [self.calls[i + 1][0] - self.calls[i][1] for i in range(len(self.calls) - 1)]
        steady = slice(min(warmup, max(len(waits) - 1, 0)), None)
        w, c = waits[steady], computes[steady]
        if not w:
            return {"steps_timed": 0, "batches": len(waits)}
        return {"steps_timed": len(w), "batches": len(waits), "wait_ms_median": 1e3 * statistics.median(w),
                "compute_ms_median": 1e3 * statistics.median(c), "wait_s_total": sum(w), "compute_s_total": sum(c),
                "wait_fraction": sum(w) / max(sum(w) + sum(c), 1e-12),
                "step_ms_median": 1e3 * statistics.median([a + b for a, b in zip(w, c)])}


def avtrain_run(recipe: Path, overrides: list[str]) -> None:
    from avtrain.cli import app

    args = ["run", str(recipe)]
    for o in overrides:
        args += ["--set", o]
    code = app(args, standalone_mode=False)  # errors raise or come back as the exit code, instead of exiting
    if code not in (None, 0):
        raise RuntimeError(f"avtrain run exited with code {code}")


def checkpoint_step(run_dir: Path) -> int | None:
    path = run_dir / "checkpoints" / "last.pt"
    return int(torch.load(path, map_location="cpu", weights_only=True)["step"]) if path.exists() else None


def child(spec_path: Path) -> int:
    """``--child SPEC``: one ``avtrain run`` under the batch clock, in a process of its own (a clean peak-memory
    count, and a run past its time can be stopped); writes its result, also when stopped or failed."""
    spec = json.loads(spec_path.read_text())
    cuda = spec["cuda"]
    result: dict = {"completed": False}
    stopped: list[int] = []  # the command line may swallow the interrupt: the flag says it came

    def stop(signum, frame):
        stopped.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    clock = BatchClock(sync=cuda, warmup=spec["warmup"])
    start = time.perf_counter()
    try:
        with clock:
            avtrain_run(Path(spec["recipe"]), spec["overrides"])
        result["completed"] = not stopped
    except BaseException as e:  # noqa: BLE001 - the parent reports it with the rest
        if not stopped:
            traceback.print_exc()
            result["error"] = f"{type(e).__name__}: {e}"
    if stopped:
        result["stopped"] = True
        result["error"] = f"stopped at the time budget after {time.perf_counter() - start:.0f} s"
    result["wall_s"] = time.perf_counter() - start
    result.update(clock.split(warmup=spec["warmup"]))
    if cuda:
        steady = torch.cuda.max_memory_allocated() / 2**30
        # peak_allocated_gib: the whole run's (warm-up included); steady: after the warm-up steps
        result["peak_allocated_gib"] = max(steady, clock.warmup_peak_gib or 0.0)
        if clock.warmup_peak_gib is not None:
            result["peak_allocated_steady_gib"] = steady
        result["peak_reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30
    Path(spec["result"]).write_text(json.dumps(result))
    return 0 if result["completed"] else 1


def invoke(recipe: Path, overrides: list[str], *, cuda: bool, warmup: int, timeout: float, work: Path) -> dict:
    """Run :func:`child` in a subprocess; past ``timeout`` it is stopped (SIGTERM, then SIGKILL)."""
    tag = f"{recipe.stem}-{time.monotonic_ns()}"
    spec, out = work / f"spec-{tag}.json", work / f"result-{tag}.json"
    spec.write_text(json.dumps({"recipe": str(recipe), "overrides": overrides, "cuda": cuda, "warmup": warmup,
                                "result": str(out)}))
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--child", str(spec)])
    try:
        proc.wait(timeout=max(timeout, 1.0))
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if out.exists():
        return json.loads(out.read_text())
    return {"completed": False, "error": f"the run exited with {proc.returncode} and wrote no result"}


class Budget:
    """The check's wall-clock limit: each stage gets what is left minus what the later stages are promised."""

    def __init__(self, seconds: float):
        self.deadline = time.monotonic() + seconds

    def left(self, reserve: float = 0.0) -> float:
        return self.deadline - time.monotonic() - reserve


def train(name: str, shards: Path, work: Path, steps: int, args, budget: Budget, reserve: float, *,
          resume_at: int | None) -> dict:
    """One recipe: train to ``steps`` (in two invocations when ``resume_at``: the second resumes), timed."""
    cuda = args.device == "cuda"
    run_dir = work / f"run-{name}"
    common = [f"data.shards={shards}", f"output_dir={run_dir}", f"data.batch_size={args.batch}",
              f"data.num_workers={args.workers}", "data.shuffle_buffer=256", "trainer.epochs=100000",
              "trainer.val_each_epoch=false", "trainer.progress=false", f"trainer.device={args.device}",
              f"trainer.precision={args.precision}", f"trainer.log_every={max(1, min(50, steps))}",
              "trainer.save_every_steps=null", *args.set]
    result: dict = {"recipe": str(RECIPES[name].relative_to(ROOT)), "batch": args.batch, "steps": steps,
                    "workers": args.workers, "precision": args.precision}
    first = resume_at if resume_at else steps
    resume_share = 0.3 * budget.left(reserve) if resume_at else 0.0
    r = invoke(RECIPES[name], [*common, f"trainer.max_steps={first}"], cuda=cuda, warmup=min(10, first // 5),
               timeout=budget.left(reserve + resume_share), work=work)
    result.update(r)
    if r.get("steps_timed"):
        result["samples_per_s"] = args.batch / (r["step_ms_median"] / 1e3)
        result["model_samples_per_s"] = args.batch / (r["compute_ms_median"] / 1e3)
    if not r["completed"]:
        if resume_at:
            result["resume"] = "not run: the first run did not finish"
        return result
    result["step_after_first_run"] = checkpoint_step(run_dir)
    if result["step_after_first_run"] != first:
        result["completed"] = False
        result["error"] = f"the run ended without a checkpoint at step {first} ({result['step_after_first_run']})"
        return result
    if resume_at:
        again = invoke(RECIPES[name], [*common, f"trainer.max_steps={steps}"], cuda=cuda, warmup=0,
                       timeout=budget.left(reserve), work=work)
        result["resume_wall_s"] = again["wall_s"]
        got = checkpoint_step(run_dir)
        if not again["completed"]:
            result["resume"] = f"FAILED: {again.get('error')}"
        else:
            result["resume"] = "ok" if got == steps else f"FAILED: checkpoint at step {got}, expected {steps}"
    return result


def loader_rates(tmp: Path, args, budget: Budget) -> dict:
    """What ``--workers`` loader workers deliver per crop codec (LRW-shaped, lrw-bridging's augmentation)."""
    import importlib.util

    from avtrain.synthetic import CODECS, lrw_shards
    from bench_loader import field_stats, run_loader

    out = {}
    for codec in CODECS:
        if codec == "mp4" and importlib.util.find_spec("av") is None:
            out[codec] = {"skipped": "PyAV not installed (make gpu-wheels WITH_AV=1 carries it)"}
            continue
        if budget.left() < 10:
            out[codec] = {"skipped": "out of the time budget"}
            continue
        root = tmp / f"loader-{codec}"
        lrw_shards(root, (args.loader_batches + 2) * args.batch * 2, shards=max(16, 2 * args.workers), codec=codec)
        kib, decode_ms = field_stats(root, codec)
        r = run_loader(root, args.workers, args.loader_batches, args.batch)
        out[codec] = {"kib_per_clip": kib, "decode_cpu_ms": decode_ms, "samples_per_s": r["samples_per_s"],
                      "workers": args.workers}
        print(f"loader {codec}: {r['samples_per_s']:.0f} samples/s with {args.workers} workers "
              f"({kib:.1f} KiB/clip, decode {decode_ms:.2f} ms CPU)", flush=True)
    return out


def _formatter(r: dict):
    return lambda key, fmt=".1f": format(r[key], fmt) if key in r else "-"


def markdown(report: dict) -> str:
    env = report["environment"]
    lines = [f"GPU check {report['date']}: {env['device_name']}, torch {env['torch']}, Python {env['python']}, "
             f"{env['cpus']} CPUs; crops {report['codec']}, batch {report['batch']}, {report['workers']} workers, "
             f"{report['precision']}.", "",
             "| run | steps | samples/s | model alone, samples/s | step ms (median) | data wait ms | compute ms "
             "| wait share | peak alloc GiB, steady (whole run) | resume |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for name, r in report["train"].items():
        if not r.get("completed") and not r.get("stopped"):
            lines.append(f"| {name} ({r['recipe']}) | FAILED: {r.get('error')} |")
            continue
        num = _formatter(r)
        steps = f"{r['batches']} of {r['steps']} (time budget)" if r.get("stopped") else str(r["steps"])
        lines.append(f"| {name} ({r['recipe']}) | {steps} | {num('samples_per_s', '.0f')} | "
                     f"{num('model_samples_per_s', '.0f')} | {num('step_ms_median')} | {num('wait_ms_median')} | "
                     f"{num('compute_ms_median')} | {num('wait_fraction', '.0%')} | "
                     f"{num('peak_allocated_steady_gib')} ({num('peak_allocated_gib')}) | "
                     f"{r.get('resume', '-')} |")
    if report.get("loader"):
        lines += ["", "| crop codec | KiB/clip | decode ms CPU | loader samples/s | x LRW model consumption |",
                  "|---|---:|---:|---:|---:|"]
        need = report["train"].get("lrw", {}).get("model_samples_per_s")
        for codec, r in report["loader"].items():
            if "skipped" in r:
                lines.append(f"| {codec} | skipped: {r['skipped']} | | | |")
                continue
            ratio = f"{r['samples_per_s'] / need:.2f}" if need else "-"
            lines.append(f"| {codec} | {r['kib_per_clip']:.1f} | {r['decode_cpu_ms']:.2f} | "
                         f"{r['samples_per_s']:.0f} | {ratio} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--steps", type=int, default=300, help="LRW steps in all (the last third after a resume)")
    parser.add_argument("--grid-steps", type=int, help="GRID speech steps (default: --steps)")
    parser.add_argument("--batch", type=int, help="default: 64 on cuda (the issue's figure), 2 on cpu")
    parser.add_argument("--workers", type=int, help="loader workers (default: 8 on cuda, 1 on cpu)")
    parser.add_argument("--precision", choices=["bf16", "fp32", "fp16"],
                        help="default: bf16 on cuda, fp32 on cpu (bf16 autocast on the dev CPU was far slower)")
    parser.add_argument("--codec", default="jpg", choices=["mp4", "jpg", "npy"], help="crop codec of the shards")
    parser.add_argument("--loader-batches", type=int, default=30, help="timed batches per codec (0: skip)")
    parser.add_argument("--only", nargs="+", choices=["lrw", "grid", "loader"], default=["lrw", "grid", "loader"])
    parser.add_argument("--set", action="append", default=[], help="extra --set for both recipes (repeatable)")
    parser.add_argument("--out", type=Path, help="results folder (default: $OUT when set, else a temporary one)")
    parser.add_argument("--budget-s", type=float, default=450.0,
                        help="wall-clock limit of the whole check; a run still going at its share is stopped")
    args = parser.parse_args()
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        print("error: --device cuda but torch sees no CUDA device (torch "
              f"{torch.__version__}, built for CUDA {torch.version.cuda}); --device cpu for the dry run")
        return 2
    args.batch = args.batch or (64 if cuda else 2)
    args.precision = args.precision or ("bf16" if cuda else "fp32")
    args.workers = args.workers if args.workers is not None else (8 if cuda else 1)
    grid_steps = args.grid_steps or args.steps
    out = args.out or Path(os.environ.get("OUT") or tempfile.mkdtemp(prefix="gpu-check-"))
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gpu-check-work-"))
    env = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "device_name": torch.cuda.get_device_name() if cuda else platform.processor() or "cpu",
           "cpus": os.cpu_count()}
    print(f"gpu check: {env}; results in {out}", flush=True)
    report = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "environment": env, "codec": args.codec,
              "batch": args.batch, "workers": args.workers, "precision": args.precision, "train": {}, "loader": {}}
    from avtrain.synthetic import grid_speech_shards, lrw_shards

    t0 = time.perf_counter()
    budget = Budget(args.budget_s - 20.0)  # 20 s for start-up and the report
    # enough clips that an epoch (and its loader start-up) is rare: at most 8192, repeating 64 distinct clips
    per_epoch = min(args.steps * args.batch, 8192)
    shards = max(2, min(32, 4 * args.workers))
    failed = False
    stages = [(n, st, mk) for n, st, mk in (("lrw", args.steps, lrw_shards), ("grid", grid_steps, grid_speech_shards))
              if n in args.only]
    loader_reserve = 45.0 if "loader" in args.only and args.loader_batches > 0 else 0.0
    for i, (name, steps, make) in enumerate(stages):
        # promised to what comes later: the GRID run a quarter of what is left, the loader 45 s
        later = loader_reserve + (0.25 * budget.left(loader_reserve) if i + 1 < len(stages) else 0.0)
        t1 = time.perf_counter()
        data = make(work / name, max(per_epoch, shards), shards=shards, codec=args.codec)
        print(f"{name}: shards written in {time.perf_counter() - t1:.0f} s, training {steps} steps", flush=True)
        # resume with steps left to train: a run resumed at its max_steps trains one step more (the engine checks
        # the cap only after a step)
        resume_at = steps - max(1, steps // 3) if name == "lrw" and steps > 1 else None
        report["train"][name] = r = train(name, data, work, steps, args, budget, later, resume_at=resume_at)
        # a run stopped by the time budget is reported with what it measured; a failed one fails the check
        failed |= not (r["completed"] or r.get("stopped")) or r.get("resume", "ok").startswith("FAILED")
        print(f"{name}: {json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()})}",
              flush=True)
    if loader_reserve:
        report["loader"] = loader_rates(work, args, budget)
    report["wall_s"] = time.perf_counter() - t0
    shutil.rmtree(work, ignore_errors=True)  # GBs of shards on a GPU run
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1))
    (out / "gpu_check.md").write_text(markdown(report))
    print(markdown(report))
    print(f"gpu check {'FAILED' if failed else 'done'} in {report['wall_s']:.0f} s; {out / 'gpu_check.json'}")
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        sys.exit(child(Path(sys.argv[2])))
    sys.exit(main())
