"""scripts/gpu_check.sh as the test suite can run it: the CPU dry run (both recipes at paper width, a resume, the
loader per crop codec) through the shell entry point, and the batch clock's split on a known loader."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))


def test_batch_clock_splits_data_wait_from_compute():
    from gpu_check import BatchClock

    class Slow(torch.utils.data.IterableDataset):
        def __iter__(self):
            for i in range(6):
                time.sleep(0.03)  # the loader's share
                yield i

    loader = torch.utils.data.DataLoader(Slow(), batch_size=None)
    with BatchClock(sync=False) as clock:
        for _ in loader:
            time.sleep(0.01)  # the step's share
    assert torch.utils.data.dataloader._BaseDataLoaderIter.__next__ is not None
    split = clock.split(warmup=1)
    assert split["steps_timed"] == 5  # 7 requests (the last one ends the loop), warm-up step dropped
    assert 25 < split["wait_ms_median"] < 60 and 8 < split["compute_ms_median"] < 30
    assert 0.5 < split["wait_fraction"] < 0.85
    # uninstalled: loaders are not timed any more
    list(loader)
    assert len(clock.calls) == 7


@pytest.mark.slow
def test_gpu_check_cpu_dry_run(tmp_path):
    """`scripts/gpu_check.sh --device cpu --steps 2`: trains both recipes (8-frame windows to keep it to seconds),
    resumes LRW, measures the loader per codec, writes the report."""
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "gpu_check.sh"), "--device", "cpu", "--steps", "2", "--loader-batches", "1",
         "--set", "data.max_frames=8", "--out", str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    lrw, grid = report["train"]["lrw"], report["train"]["grid"]
    assert lrw["step_after_first_run"] == 1 and lrw["resume"] == "ok"  # 1 step, then resumed to 2
    assert grid["step_after_first_run"] == 2 and grid["steps_timed"] == 1
    assert grid["wait_ms_median"] > 0 and grid["compute_ms_median"] > grid["wait_ms_median"]
    assert grid["samples_per_s"] > 0 and report["precision"] == "fp32" and report["batch"] == 2
    assert set(report["loader"]) == {"mp4", "jpg", "npy"}
    assert all(r["samples_per_s"] > 0 for r in report["loader"].values())
    md = (tmp_path / "gpu_check.md").read_text()
    assert "| lrw (recipes/lrw-bridging.yaml) | 2 |" in md and "| jpg |" in md and md in proc.stdout


def test_gpu_check_without_packages_or_wheels_says_what_to_do(tmp_path):
    """An interpreter that lacks avtrain's packages and no wheels/ folder: a clear error, not a traceback."""
    fake_repo = tmp_path / "repo"
    (fake_repo / "scripts").mkdir(parents=True)
    for name in ("gpu_check.sh", "gpu_requirements.txt"):
        (fake_repo / "scripts" / name).write_text((REPO / "scripts" / name).read_text())
    base = Path(sys.base_prefix) / "bin" / "python3"  # the interpreter under the test venv: no webdataset etc.
    if not base.exists() or subprocess.run([str(base), "-c", "import webdataset"], capture_output=True,
                                           env={"PATH": os.environ["PATH"]}).returncode == 0:
        pytest.skip("no interpreter without avtrain's packages to run the script with")
    env = {"PATH": os.environ["PATH"], "PYTHON": str(base)}
    out = subprocess.run(["bash", str(fake_repo / "scripts" / "gpu_check.sh"), "--device", "cpu"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "make gpu-wheels" in out.stderr and "No module named" in out.stderr
