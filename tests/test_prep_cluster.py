"""avprep's per-clip work on a Dask and a Ray cluster (local ones, started by the test) gives the same samples."""

from __future__ import annotations

import os

import numpy as np
import pytest
from rich.console import Console

from avprep.corpora import grid
from avprep.prepare import prepare
from avprep.presets import get_preset
from avprep.shards import iter_raw_samples, shard_paths

pytestmark = pytest.mark.slow
PRESET = get_preset("bridging-grid")
QUIET = Console(file=open(os.devnull, "w"))


def _keys(out):
    return sorted(raw["__key__"] for p in shard_paths(out) for raw in iter_raw_samples(p))


@pytest.fixture(scope="module")
def clips(grid_root):
    return grid.find_clips(grid_root, ["s1"])[:3]


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, clips):
    out = tmp_path_factory.mktemp("loky")
    report = prepare(clips, "grid", out, PRESET, unit="word", vocabulary=tuple(grid.vocabulary()), jobs=2,
                     console=QUIET, progress=False)
    return out, report


@pytest.mark.parametrize("backend", ["dask", "ray"])
def test_cluster_backend_writes_the_same_samples(backend, clips, local_run, tmp_path):
    pytest.importorskip({"dask": "distributed", "ray": "ray"}[backend], reason="pip install 'avbridge[cluster]'")
    out, local = local_run
    np.save(tmp_path / "mean_face.npy", np.load(out / "mean_face.npy"))  # same registration as the local run
    report = prepare(clips, "grid", tmp_path, PRESET, unit="word", vocabulary=tuple(grid.vocabulary()), jobs=2,
                     console=QUIET, progress=False, backend=backend)
    assert report.clips_written == local.clips_written == 3 and not report.rejected
    assert _keys(tmp_path) == _keys(out) and len(_keys(out)) == 18  # 6 aligned words per GRID sentence


def test_unknown_backend_is_a_clear_error(clips, tmp_path):
    with pytest.raises(ValueError, match="unknown backend 'spark'"):
        prepare(clips[:1], "grid", tmp_path, PRESET, console=QUIET, progress=False, backend="spark")
