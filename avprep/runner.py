"""Run the per-clip pipeline over many clips: joblib processes, a progress bar, shards, a summary."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed, parallel_config
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from avprep.cluster import joblib_backend
from avprep.pipeline import Options, process_clip
from avprep.shards import Partition, ShardSink
from avprep.types import ClipSpec


def _results(todo: list[ClipSpec], options: Options, mean_face, return_as: str, chunk: int):
    """Clip results as they come. Unordered where the backend allows (results are written as they finish, so one
    slow clip never holds the others in memory); in chunks where it returns only whole lists."""
    if return_as != "list":
        yield from Parallel(return_as=return_as, batch_size=1)(delayed(process_clip)(c, options, mean_face) for c in todo)
        return
    for start in range(0, len(todo), chunk):
        yield from Parallel(batch_size=1)(delayed(process_clip)(c, options, mean_face) for c in todo[start : start + chunk])


class _RateColumn(ProgressColumn):
    def render(self, task) -> Text:
        return Text(f"{task.speed:.2f} clips/s" if task.speed else "- clips/s", style="cyan")


@dataclass
class RunReport:
    out_dir: Path
    clips_total: int
    clips_skipped: int  # already done by an earlier run (resume)
    clips_written: int = 0
    samples_written: int = 0
    rejected: Counter = field(default_factory=Counter)
    seconds_audio: float = 0.0
    wall_seconds: float = 0.0
    stage_seconds: Counter = field(default_factory=Counter)
    index: dict = field(default_factory=dict)

    def table(self) -> Table:
        t = Table(title=f"avprep → {self.out_dir}", show_header=False)
        t.add_row("clips found", str(self.clips_total))
        t.add_row("already done (resumed)", str(self.clips_skipped))
        t.add_row("clips written", str(self.clips_written))
        t.add_row("samples written", str(self.samples_written))
        for reason, n in sorted(self.rejected.items()):
            t.add_row(f"rejected: {reason}", str(n))
        t.add_row("audio written", f"{self.seconds_audio / 3600:.3f} h")
        t.add_row("shards (all runs)", str(sum(len(s["shards"]) for s in self.index.get("splits", {}).values())))
        t.add_row("bytes (all runs)", f"{self.index.get('bytes', 0) / 2**20:.1f} MiB")
        for name, per in sorted(self.index.get("field_bytes_per_sample", {}).items()):
            t.add_row(f"  {name} per sample", f"{per / 1024:.1f} KiB")
        done = self.clips_written + sum(self.rejected.values())
        rate = done / self.wall_seconds if self.wall_seconds else 0.0
        t.add_row("throughput", f"{rate:.2f} clips/s ({self.wall_seconds:.1f} s wall)")
        return t


def run_clips(
    clips: list[ClipSpec],
    options: Options,
    out_dir: Path,
    run_config: dict,
    mean_face: np.ndarray | None = None,
    jobs: int = 1,
    shard_bytes: int = 100 * 2**20,
    shard_clips: int = 250,
    console: Console | None = None,
    progress: bool = True,
    retry_failed: bool = False,
    partition: Partition = Partition(),
    backend: str = "loky",
    address: str | None = None,
) -> RunReport:
    """Process every clip of ``partition`` not already done in ``out_dir`` and write its samples to shards.

    ``backend``: loky (local processes), dask or ray (an existing cluster at ``address``, else a local one).
    """
    console = console or Console(stderr=True)
    start = time.perf_counter()
    sink = ShardSink(out_dir, run_config, max_bytes=shard_bytes, max_clips=shard_clips, retry_failed=retry_failed,
                     partition=partition)
    clips = [c for c in clips if partition.owns(c.key)]
    todo = [c for c in clips if not sink.is_done(c.key)]
    report = RunReport(out_dir=Path(out_dir), clips_total=len(clips), clips_skipped=len(clips) - len(todo))
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), _RateColumn(),
               TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn()]
    try:
        with joblib_backend(backend, address, jobs) as (backend_name, return_as), \
                parallel_config(backend=backend_name, n_jobs=jobs), \
                Progress(*columns, console=console, disable=not progress) as bar:
            task = bar.add_task("clips", total=len(todo))
            for result in _results(todo, options, mean_face, return_as, chunk=4 * jobs):
                sink.add(result)
                report.stage_seconds.update(result.timings)
                if result.rejection:
                    report.rejected[result.rejection.reason] += 1
                    style = "red" if result.rejection.trace else "yellow"
                    console.log(f"[{style}]skip[/] {result.key}: {result.rejection.reason} ({result.rejection.detail})")
                else:
                    report.clips_written += 1
                    report.samples_written += len(result.samples)
                    report.seconds_audio += sum(s.seconds for s in result.samples)
                bar.advance(task)
    except BaseException:
        sink.abort()
        raise
    report.index = sink.close()
    report.wall_seconds = time.perf_counter() - start
    return report
