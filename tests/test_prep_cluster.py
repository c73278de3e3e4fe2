"""avprep's per-clip work on a Dask and a Ray cluster (local ones, started by the test) gives the same samples."""

from __future__ import annotations

import os

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from avprep.cli import app
from avprep.corpora import grid
from avprep.options import PrepOptions
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
    options = PrepOptions(preset=PRESET, jobs=2, console=QUIET, progress=False)
    report = prepare(clips, "grid", out, options, unit="word", vocabulary=tuple(grid.vocabulary()))
    return out, report


@pytest.mark.parametrize("backend", ["dask", "ray"])
def test_cluster_backend_writes_the_same_samples(backend, clips, local_run, tmp_path):
    pytest.importorskip({"dask": "distributed", "ray": "ray"}[backend], reason="pip install 'avbridge[cluster]'")
    out, local = local_run
    np.save(tmp_path / "mean_face.npy", np.load(out / "mean_face.npy"))  # same registration as the local run
    options = PrepOptions(preset=PRESET, jobs=2, console=QUIET, progress=False, backend=backend)
    report = prepare(clips, "grid", tmp_path, options, unit="word", vocabulary=tuple(grid.vocabulary()))
    assert report.clips_written == local.clips_written == 3 and not report.rejected
    assert _keys(tmp_path) == _keys(out) and len(_keys(out)) == 18  # 6 aligned words per GRID sentence


def test_unknown_backend_is_a_clear_error(grid_root, tmp_path):
    with pytest.raises(ValueError, match="unknown backend 'spark'"):
        PrepOptions(preset=PRESET, backend="spark")
    assert PrepOptions(backend="loky").backend == "local"  # the local backend's old name
    # The CLI refuses it in one line before it scans the corpus or touches --out.
    result = CliRunner().invoke(app, ["grid", "--root", str(grid_root), "--out", str(tmp_path / "x"), "--backend",
                                      "spark"])
    assert result.exit_code == 2 and "unknown backend 'spark'; choose one of local, dask, ray" in result.output
    assert not (tmp_path / "x").exists()
