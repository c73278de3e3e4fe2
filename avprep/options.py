"""PrepOptions: how a preparation runs, one typed object built once (by the CLI or a script) and passed down.

    from avprep import PrepOptions, prepare_grid
    options = PrepOptions(jobs=8, crop_codec="jpg")
    report = prepare_grid("/data/grid", "shards/grid-s1", speakers=["s1"], options=options)

What a run writes is chosen by the corpus function's own arguments (GRID's speakers and unit, LRS3's subsets, ...);
everything else is here: the preset and its storage overrides, the processes and where they run, partitions, the
write order's seed, the limits that reject one clip, shard sizes, resuming, and what the terminal shows. Each field's
help text, default and bounds are the CLI's too: avprep/cli.py declares every shared option from these fields.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from avprep.cluster import check_backend
from avprep.presets import Preset, get_preset, with_overrides
from avprep.shards import Partition

DEFAULT_CLIP_TIMEOUT = 600.0  # seconds; a 3 s GRID clip takes ~1 s of CPU, a 10-minute video a few minutes


def _option(default: Any, help: str, *flags: str, min: float | None = None, max: float | None = None) -> Any:
    """A field that is also a CLI option: ``help`` is its help text; ``flags`` its names when not ``--field-name``;
    ``min`` / ``max`` its bounds (checked here and by the CLI)."""
    return field(default=default, metadata={"help": help, "flags": flags, "min": min, "max": max})


@dataclass(frozen=True)
class PrepOptions:
    """How a preparation runs (see the module docstring). Frozen: change one with ``dataclasses.replace``."""

    # The corpus function's default preset when None (GRID: bridging-grid, LRW: bridging-lrw, ...); a Preset object
    # is taken as it is (the storage overrides below still apply).
    preset: str | Preset | None = _option(None, "named preset (`avprep presets` lists them)")
    jobs: int = _option(1, "parallel processes", min=1)
    limit: int | None = _option(None, "only the first N clips (sorted by key), for a quick look", min=1)
    mean_face: Path | None = _option(None, "reuse a mean_face.npy from another run (mean-face presets)")
    # Storage: None keeps the preset's choice; any other value makes a new preset hash.
    crf: int | None = _option(None, "x264 CRF of the crops (preset: 18)", min=0, max=51)
    feature_dtype: str | None = _option(None, "float16 | uint8: spectrogram storage (preset: float16)")
    wave: bool | None = _option(None, "store the waveform (preset: yes)", "--wave/--no-wave")
    landmarks: str | None = _option(None, "subset | full | none: landmarks stored (preset's choice)")
    # docs/benchmarks.md "Crop codecs" measures them.
    crop_codec: str | None = _option(None, "mp4 | jpg | npy: crop storage (preset: mp4); jpg decodes ~2.5x faster "
                                     "than mp4 for ~4.5x the bytes, npy is raw")
    shard_mb: int = _option(100, "close a shard after this many MiB", min=1)
    shard_clips: int = _option(250, "close a shard after this many source clips", min=1)
    retry_failed: bool = _option(False, "process every clip an earlier run rejected again (all reasons)")
    retry_transient: int = _option(1, "times a resume retries a clip rejected for a transient reason (worker "
                                   "crashed, timeout, out of memory, I/O error)", min=0)
    allow_version_change: bool = _option(False, "resume a folder written with other library versions (avbridge, "
                                         "mediapipe, FFmpeg/PyAV, x264, OpenCV); index.json records which shards "
                                         "each made")
    num_partitions: int = _option(1, "the corpus is split into this many partitions (machines)", min=1)
    partition: int = _option(0, "the partition this run writes, 0 .. num-partitions - 1", min=0)
    backend: str = _option("local", "local (worker processes) | dask | ray (--jobs clips in flight on the cluster)")
    address: str | None = _option(None, "scheduler of a running dask/ray cluster (default: start a local one)")
    seed: int = _option(0, "seed of the shuffled order clips are written in (shards mix clips)")
    clip_timeout: float | None = _option(DEFAULT_CLIP_TIMEOUT, "seconds one clip may take before its worker is "
                                         "killed and the clip rejected as 'timeout' (0: no limit)", min=0)
    max_worker_mem: float | None = _option(None, "GiB a worker may use before its clip is rejected as 'out of "
                                           "memory' (default: 80% of the memory the run may use, its cgroup's "
                                           "limit under Slurm or Kubernetes, else RAM, / jobs)", min=0)
    progress: bool = _option(True, "show the progress bar")
    verbose: bool = _option(False, "print each rejection as it happens", "--verbose", "-v")
    # Where the bar, the log lines and the summary go (None: stderr). Not an option of the CLI.
    console: Console | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        for f in cli_fields():
            value, low, high = getattr(self, f.name), f.metadata["min"], f.metadata["max"]
            if value is not None and ((low is not None and value < low) or (high is not None and value > high)):
                bounds = f"{low} .. {high}" if high is not None else f">= {low}"
                raise ValueError(f"{f.name} must be {bounds}, got {value!r}")
        object.__setattr__(self, "backend", check_backend(self.backend))
        Partition(self.partition, self.num_partitions)  # one that does not exist is refused here, before any work

    @property
    def part(self) -> Partition:
        """The partition this run writes."""
        return Partition(self.partition, self.num_partitions)

    @property
    def timeout(self) -> float | None:
        """Seconds per clip, None for no limit."""
        return self.clip_timeout or None

    @property
    def max_worker_rss(self) -> int | None:
        """Bytes per worker; None: 80% of the memory the run may use (cgroup limit or RAM) over the jobs; 0: no
        cap."""
        return None if self.max_worker_mem is None else int(self.max_worker_mem * 2**30)

    @property
    def shard_bytes(self) -> int:
        return self.shard_mb * 2**20

    def terminal(self) -> Console:
        """Where the run's messages go."""
        return self.console or Console(stderr=True)

    def resolved_preset(self, default: str | None = None) -> Preset:
        """The preset (named, given, or ``default``) with the storage overrides applied. KeyError: an unknown
        name; pydantic's ValidationError (a ValueError): an override the preset refuses."""
        chosen = self.preset if self.preset is not None else default
        if chosen is None:
            raise ValueError("no preset: pass PrepOptions(preset=...) (`avprep presets` lists them)")
        preset = get_preset(chosen) if isinstance(chosen, str) else chosen
        return with_overrides(preset, video_crf=self.crf, feature_dtype=self.feature_dtype, store_wave=self.wave,
                              landmarks=self.landmarks, crop_codec=self.crop_codec)

    def with_preset(self, default: str) -> PrepOptions:
        """These options with the preset resolved (``default`` when none is chosen): a bad preset name or override
        is refused before a corpus is scanned."""
        return dataclasses.replace(self, preset=self.resolved_preset(default))


def cli_fields() -> list[dataclasses.Field]:
    """The fields that are CLI options, in their order."""
    return [f for f in dataclasses.fields(PrepOptions) if "help" in f.metadata]
