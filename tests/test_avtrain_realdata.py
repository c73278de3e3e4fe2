"""Smoke test on real GRID clips: avprep builds word shards from 3 s1 clips, avtrain trains and evaluates on them.

Needs the GRID sample at ../shared/data/grid (relative to the repository); skipped only when it is missing.
avtrain never imports avprep: the shards are made through the avprep command line, as a user would.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from avtrain.api import train
from avtrain.config import load_recipe
from avtrain.data import build_loader
from avtrain.tasks.lipreading.evaluate import evaluate

REPO = Path(__file__).resolve().parents[1]
GRID = (REPO / ".." / "shared" / "data" / "grid").resolve()

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (GRID / "s1").is_dir(), reason=f"GRID sample not found at {GRID}")]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("grid-words")
    avprep = shutil.which("avprep", path=str(Path(sys.executable).parent)) or "avprep"
    cmd = [avprep, "grid", "--root", str(GRID), "--out", str(out), "--speakers", "s1", "--unit", "word",
           "--preset", "bridging-grid", "--limit", "3", "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return out


def test_train_and_eval_on_real_grid_words(shards, tmp_path):
    index = json.loads((shards / "index.json").read_text())
    n_train, n_test = index["splits"]["train"]["samples"], index["splits"]["test"]["samples"]
    r = load_recipe(REPO / "recipes" / "grid-words-bridging.yaml", [
        f"data.shards={shards}", f"output_dir={tmp_path / 'run'}", "data.valid_split=null", "data.num_workers=0",
        "data.batch_size=4", "data.video_size=48", "augment_conf.crop=40", "trainer.epochs=1",
        "trainer.progress=false", "visual_frontend_conf.widths=[8, 8, 16, 16]", "visual_frontend_conf.stem_channels=8",
        "model_conf.embed_dim=32", "backend_conf.hidden=16", "audio_frontend_conf.channels=[8, 8]",
        "eval.plot_clips=2", "eval.checkpoint=last"])
    batches = list(build_loader(r, "train", train=True))
    assert sum(len(b["keys"]) for b in batches) == n_train
    b = batches[0]
    assert b["video"].shape[2:] == (1, 40, 40) and b["mel"].shape[1] == 80
    assert b["mel"].shape[2] == 4 * b["video"].shape[1] and (0 <= b["labels"]).all() and (b["labels"] < 51).all()
    res = train(r)
    assert res.step == len(batches) and all(torch.isfinite(torch.tensor(res.losses)))
    metrics = evaluate(r)
    assert metrics["samples"] == n_test and Path(metrics["addressing_png"]).stat().st_size > 10_000
