"""A task added without editing avtrain: tests/example_plugin holds a model (schema, model, task) in its own module
and the entry point that names it; with that folder on the path, ``avtrain run`` trains it, ``avtrain eval``
evaluates it, and the recipe errors are avtrain's own one-liners. Without it the model is unknown, in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from avtrain.config import RecipeError, validate_recipe
from avtrain.synthetic import write_shards

PLUGIN = Path(__file__).parent / "example_plugin"
RECIPE = """
output_dir: {out}
data: {{shards: {shards}, batch_size: 4, eval_batch_size: 8, shuffle_buffer: 8}}
model: mean_frame
model_conf: {{num_classes: 4, hidden: 16}}
optim: adam
optim_conf: {{lr: 0.01}}
augment: none
trainer: {{epochs: 2, progress: false, threads: 1}}
"""


def _avtrain(*args: str, plugin: bool = True) -> subprocess.CompletedProcess:
    path = os.pathsep.join([str(PLUGIN)] * plugin + [os.environ.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "avtrain.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}, timeout=300)


@pytest.mark.slow  # three interpreters (~10 s)
def test_a_task_from_another_package_trains_and_evaluates_through_the_cli(tmp_path):
    shards = write_shards(tmp_path / "syn", splits={"train": (2, 8), "val": (1, 8), "test": (1, 8)})
    recipe = tmp_path / "mean_frame.yaml"
    recipe.write_text(RECIPE.format(out=tmp_path / "run", shards=shards))
    run = _avtrain("run", str(recipe))
    assert run.returncode == 0, run.stderr[-2000:]
    assert "best val acc" in run.stderr and (tmp_path / "run" / "checkpoints" / "best.pt").exists()
    ev = _avtrain("eval", str(recipe))
    assert ev.returncode == 0, ev.stderr[-2000:]
    metrics = json.loads((tmp_path / "run" / "eval" / "test" / "metrics.json").read_text())
    assert metrics["samples"] == 8 and 0.0 <= metrics["acc"] <= 1.0
    wrong = _avtrain("check", str(recipe), "--set", "model_conf.hiden=3")
    assert wrong.returncode == 2 and "model_conf.hiden: unknown key" in wrong.stderr and "did you mean 'hidden'" \
        in wrong.stderr
    missing = _avtrain("check", str(recipe), plugin=False)  # the package is not installed
    assert missing.returncode == 2 and "model: unknown choice 'mean_frame'; known: lipreading" in missing.stderr


def test_a_name_two_packages_claim_is_refused():
    from avtrain.config.models import SpeechRecipe
    from avtrain.registry import register_model

    with pytest.raises(ValueError, match="model 'lipreading' is registered already"):
        register_model("lipreading", SpeechRecipe, "elsewhere:Task")
    with pytest.raises(RecipeError, match="unknown choice 'nonesuch'"):
        validate_recipe({"output_dir": "x", "data": {"shards": "y"}, "model": "nonesuch"})
