"""Run the per-clip pipeline over many clips: isolated worker processes, a progress bar, shards, a summary.

Clips go out in a seeded shuffled order (a hash of seed and key, so the same for any listing order, subset or
partition of the corpus): sorted corpora (LRW: ~1000 clips of one word in a row) would otherwise fill each shard
with one word or one speaker. Results are written in that order, whatever order the workers finish them in (a
bounded reorder window, avprep.workers), so the same corpus and settings give the same shard files byte for byte
with any ``--jobs``, on any backend, and after a kill and a resume. The terminal shows the bar and the summary;
each rejection goes to the failure log (and to the terminal as it happens with ``verbose``), the workers' own output
to ``avprep-workers.log``.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from avprep.options import PrepOptions
from avprep.pipeline import Options, process_clip, start_worker
from avprep.shards import INDEX, Partition, PartitionLock, ResumeRules, ShardSink
from avprep.types import ClipResult, ClipSpec, Rejection, is_transient
from avprep.workers import WorkerPool, default_max_rss, reorder_window


def worker_log(out_dir: Path, partition: Partition = Partition()) -> Path:
    return Path(out_dir) / f"avprep-workers{partition.tag}.log"


def write_order(clips: list[ClipSpec], seed: int) -> list[ClipSpec]:
    """The clips in a seeded shuffled order that depends on (seed, key) only."""
    return sorted(clips, key=lambda c: hashlib.sha1(f"{seed}:{c.key}".encode()).digest())


def _rejected(spec: ClipSpec, reason: str, detail: str) -> ClipResult:
    return ClipResult(key=spec.key, rejection=Rejection(key=spec.key, split=spec.split, reason=reason, detail=detail))


def _local_results(todo: list[ClipSpec], pool: WorkerPool, report: RunReport) -> Iterator[ClipResult]:
    for outcome in pool.map(todo, ordered=True):
        report.worker_peak_rss = max(report.worker_peak_rss, outcome.peak_rss)
        if outcome.failure is None:
            yield outcome.value
        else:
            yield _rejected(outcome.item, outcome.failure.reason, outcome.failure.detail)


class _RateColumn(ProgressColumn):
    def render(self, task) -> Text:
        return Text(f"{task.speed:.2f} clips/s" if task.speed else "- clips/s", style="cyan")


@dataclass
class RunReport:
    """What a run did: clips found, skipped (resumed), written and rejected (per reason), samples, seconds of audio,
    timings; ``index`` is the folder's index.json after the run."""

    out_dir: Path
    clips_total: int
    clips_skipped: int  # already done by an earlier run (resume)
    clips_retried: int = 0  # rejected by an earlier run for a transient reason, tried again (counted in the todo)
    clips_healed: int = 0  # of those, written this time
    clips_written: int = 0
    samples_written: int = 0
    rejected: Counter = field(default_factory=Counter)
    seconds_audio: float = 0.0
    wall_seconds: float = 0.0
    stage_seconds: Counter = field(default_factory=Counter)  # wall seconds per stage, summed over clips
    stage_cpu_seconds: Counter = field(default_factory=Counter)  # the same in CPU seconds of the worker
    index: dict = field(default_factory=dict)
    worker_peak_rss: int = 0  # bytes, largest over the local workers (0: not measured)
    worker_cpu_seconds: float = 0.0  # CPU time of the local workers (the per-clip work runs there, not here)
    worker_startup_cpu_seconds: float = 0.0  # the part of it spent starting them (imports, detector graphs)
    worker_first_clip_cpu_seconds: float = 0.0  # the CPU of each worker's first clip (it pays one-off costs)
    worker_first_clips: int = 0
    # Wall seconds and clips finished while every worker was busy past its first clip, with clips left to hand
    # out: the rate a long run settles at.
    steady_wall_seconds: float = 0.0
    steady_clips: int = 0
    failures_log: Path | None = None
    worker_log: Path | None = None

    @property
    def index_path(self) -> Path:
        """The folder's index.json (``index`` holds what it says)."""
        return self.out_dir / INDEX

    def table(self) -> Table:
        t = Table(title=f"avprep → {self.out_dir}", show_header=False)
        t.add_row("clips found", str(self.clips_total))
        t.add_row("already done (resumed)", str(self.clips_skipped))
        if self.clips_retried:
            t.add_row("retried (transient failures)", f"{self.clips_retried}, {self.clips_healed} healed")
        t.add_row("clips written", str(self.clips_written))
        t.add_row("samples written", str(self.samples_written))
        for reason, n in sorted(self.rejected.items()):
            t.add_row(f"rejected: {reason}" + (" (transient: a resume retries it)" if is_transient(reason) else ""),
                      str(n))
        t.add_row("audio written", f"{self.seconds_audio / 3600:.3f} h")
        t.add_row("shards (all runs)", str(sum(len(s["shards"]) for s in self.index.get("splits", {}).values())))
        t.add_row("bytes (all runs)", f"{self.index.get('bytes', 0) / 2**20:.1f} MiB")
        for name, per in sorted(self.index.get("field_bytes_per_sample", {}).items()):
            t.add_row(f"  {name} per sample", f"{per / 1024:.1f} KiB")
        done = self.clips_written + sum(self.rejected.values())
        rate = done / self.wall_seconds if self.wall_seconds else 0.0
        t.add_row("throughput", f"{rate:.2f} clips/s ({self.wall_seconds:.1f} s wall)")
        if self.worker_peak_rss:
            t.add_row("peak memory per worker", f"{self.worker_peak_rss / 2**20:.0f} MiB")
            t.add_row("CPU time of the workers", f"{self.worker_cpu_seconds:.1f} s "
                      f"({self.worker_startup_cpu_seconds:.1f} s of it starting them)")
        if self.rejected and self.failures_log:
            t.add_row("rejections, one per line", str(self.failures_log))
        if self.worker_log and self.worker_log.exists():
            t.add_row("worker output (detector logs)", str(self.worker_log))
        return t


def run_clips(
    clips: list[ClipSpec],
    work: Options,
    out_dir: Path,
    run_config: dict,
    options: PrepOptions = PrepOptions(),
    *,
    mean_face: np.ndarray | None = None,
    process: Callable[..., ClipResult] = process_clip,
    lock: PartitionLock | None = None,
) -> RunReport:
    """Process every clip of ``options.partition`` not already done in ``out_dir`` and write its samples to shards.

    ``options.backend``: local (worker processes of this machine, each clip isolated: a crash, a hang past
    ``clip_timeout`` seconds or a worker past ``max_worker_mem`` GiB (None: 80% of memory over the jobs, 0: no cap)
    costs that clip alone), dask or ray (an existing cluster at ``address``, else a local one).
    ``process(spec, work, mean_face)`` is the per-clip function (tests put a faulty one in).
    """
    console = options.terminal()
    start = time.perf_counter()
    partition = options.part
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), _RateColumn(),
               TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn()]
    resume = ResumeRules(options.retry_failed, options.retry_transient, options.allow_version_change)
    with ShardSink(out_dir, run_config, max_bytes=options.shard_bytes, max_clips=options.shard_clips,
                   partition=partition, lock=lock, resume=resume) as sink:
        clips = [c for c in clips if partition.owns(c.key)]
        todo = write_order([c for c in clips if not sink.is_done(c.key)], options.seed)
        retrying = sink.retrying & {c.key for c in todo}
        report = RunReport(out_dir=Path(out_dir), clips_total=len(clips), clips_skipped=len(clips) - len(todo),
                           clips_retried=len(retrying), failures_log=sink.failures_path)
        with Progress(*columns, console=console, disable=not options.progress) as bar:
            task = bar.add_task("clips", total=len(todo))
            for result in _in_order(todo, process, (work, mean_face), options, worker_log(out_dir, partition),
                                    report):
                sink.add(result)
                report.stage_seconds.update(result.timings)
                report.stage_cpu_seconds.update(result.cpu_timings)
                if result.rejection:
                    report.rejected[result.rejection.reason] += 1
                    if options.verbose:
                        style = "red" if result.rejection.trace else "yellow"
                        console.log(f"[{style}]skip[/] {result.key}: {result.rejection.reason} "
                                    f"({result.rejection.detail})")
                else:
                    report.clips_written += 1
                    report.clips_healed += result.key in retrying
                    report.samples_written += len(result.samples)
                    report.seconds_audio += sum(s.seconds for s in result.samples)
                bar.advance(task)
    report.index = sink.index
    report.worker_log = worker_log(out_dir, partition)
    report.wall_seconds = time.perf_counter() - start
    return report


def _in_order(todo: list[ClipSpec], process: Callable, args: tuple, options: PrepOptions, log_path: Path,
              report: RunReport) -> Iterator[ClipResult]:
    """A result per clip of ``todo``, in its order: clips the listing already rejected (``ClipSpec.problem``) here,
    the others from the workers."""
    runnable = [c for c in todo if c.problem is None]
    results = _results(runnable, process, args, options, log_path, report)
    try:
        for spec in todo:
            if spec.problem is not None:
                yield _rejected(spec, *spec.problem)
                continue
            result = next(results)
            if result.key != spec.key:  # a per-clip function that renamed its clip: a bug, not a bad clip
                raise RuntimeError(f"the per-clip function returned {result.key!r} for clip {spec.key!r}")
            yield result
    finally:
        results.close()


def _results(todo: list[ClipSpec], process: Callable, args: tuple, options: PrepOptions, log_path: Path,
             report: RunReport) -> Iterator[ClipResult]:
    """A result per clip of ``todo``, in its order (every backend)."""
    if not todo:
        return
    jobs = options.jobs
    # The detectors are built as a worker starts; a caller's own per-clip function sets up what it needs.
    init = partial(start_worker, args[0]) if process is process_clip else None
    if options.backend == "local":
        cap = default_max_rss(jobs) if options.max_worker_rss is None else options.max_worker_rss
        pool = WorkerPool(process, args, jobs=jobs, timeout=options.timeout, max_rss=cap, log_path=log_path,
                          init=init)
        try:
            yield from _local_results(todo, pool, report)
        finally:
            pool.close()
            report.worker_cpu_seconds += pool.cpu_seconds
            report.worker_startup_cpu_seconds += pool.startup_cpu_seconds
            report.worker_first_clip_cpu_seconds += pool.first_item_cpu_seconds
            report.worker_first_clips += pool.first_items
            if pool.all_warm_at is not None and pool.drained_at is not None and pool.drained_at > pool.all_warm_at:
                # Every worker busy: the rate of a long run, without start-up, first clips and the last clips' tail.
                report.steady_wall_seconds += pool.drained_at - pool.all_warm_at
                report.steady_clips += pool.done_when_drained - pool.done_when_warm
        return
    from avprep.cluster import IsolatedTask, cluster_results, connect

    # Each clip runs in a child process of the cluster worker, under the same timeout and memory cap (None: the
    # cluster machine's own share) as locally.
    task = IsolatedTask(process, args, timeout=options.timeout, max_rss=options.max_worker_rss, init=init)
    with connect(options.backend, options.address, jobs) as submitter:
        for spec, outcome in cluster_results(submitter, todo, task, jobs=jobs, window=reorder_window(jobs)):
            report.worker_peak_rss = max(report.worker_peak_rss, outcome.peak_rss)
            yield _rejected(spec, outcome.reason, outcome.detail) if outcome.reason else outcome.value
