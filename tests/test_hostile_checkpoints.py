"""Checkpoints cannot run code: every loading path (resume, init_checkpoint, eval, synth) refuses a pickle that
would call anything, in one line naming the file; a checkpoint of another recipe is named as such; older checkpoints
of this project still load and convert; resume loads to the CPU before restoring RNG states."""

from __future__ import annotations

import os
import pickle
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from avtrain.api import make_trainer, train
from avtrain.cli import app
from avtrain.config import load_recipe
from avtrain.engine import checkpoint as ckpt
from avtrain.synthetic import write_shards

REPO = Path(__file__).resolve().parents[1]
RECIPE = """
seed: 5
output_dir: {out}
data: {{shards: {shards}, batch_size: 4, eval_batch_size: 8, shuffle_buffer: 8}}
visual_frontend_conf: {{stem_channels: 8, widths: [8, 8, 16, 16], blocks: [1, 1, 1, 1]}}
audio_frontend_conf: {{channels: [8, 16]}}
memory_conf: {{num_slots: 6}}
backend_conf: {{hidden: 16}}
model_conf: {{num_classes: 4, embed_dim: 16}}
optim: sgd
optim_conf: {{lr: 0.05}}
augment_conf: {{crop: 28}}
trainer: {{epochs: 1, progress: false, threads: 1}}
eval: {{plot_clips: 1, checkpoint: last, flip_tta: false}}
"""


class RunsCode:
    """Unpickling this calls os.system: what a hostile checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_shards(tmp_path_factory.mktemp("syn"), splits={"train": (1, 8), "val": (1, 4), "test": (1, 4)})


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shards):
    """A real checkpoint of two steps, and its recipe file."""
    root = tmp_path_factory.mktemp("trained")
    recipe = root / "r.yaml"
    recipe.write_text(RECIPE.format(out=root / "run", shards=shards))
    train(load_recipe(recipe, ["trainer.max_steps=2"]))
    return recipe, root / "run" / "checkpoints" / "last.pt"


def _recipe(tmp_path: Path, shards: Path, name: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(RECIPE.format(out=tmp_path / name, shards=shards))
    return path


def _one_error_line(res) -> str:
    lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), res.output
    return lines[0]


def _hostile(path: Path, marker: Path, trained_ckpt: Path) -> Path:
    """A real checkpoint with one extra entry whose unpickling runs a shell command."""
    state = ckpt.load(trained_ckpt)
    state["extra"] = RunsCode(marker)
    torch.save(state, path)
    return path


def test_a_code_running_checkpoint_is_refused_by_every_loading_path(tmp_path, shards, trained):
    recipe, good = trained
    marker = tmp_path / "code-ran"
    evil = _hostile(tmp_path / "evil.pt", marker, good)
    # control: the payload is live, plain unpickling runs it
    torch.load(evil, weights_only=False)
    assert marker.exists()
    marker.unlink()

    runner = CliRunner()
    # avtrain run, resuming from <output_dir>/checkpoints/last.pt
    run_recipe = _recipe(tmp_path, shards, "resume")
    (tmp_path / "resume" / "checkpoints").mkdir(parents=True)
    shutil.copy(evil, tmp_path / "resume" / "checkpoints" / "last.pt")
    calls = {
        "run resume": (["run", str(run_recipe)], tmp_path / "resume" / "checkpoints" / "last.pt"),
        "init_checkpoint": (["run", str(_recipe(tmp_path, shards, "init")), "--set",
                             f"trainer.init_checkpoint={evil}"], evil),
        "eval": (["eval", str(recipe), "--checkpoint", str(evil)], evil),
        "synth": (["synth", "--checkpoint", str(evil), "--video", str(tmp_path / "any.mpg"), "--out",
                   str(tmp_path / "o.wav")], evil),
    }
    for what, (args, named) in calls.items():
        res = runner.invoke(app, args)
        assert res.exit_code in (1, 2), (what, res.output)
        line = _one_error_line(res)
        assert f"{named}: refused" in line and "posix.system" in line, (what, line)
        assert not marker.exists(), f"{what}: the checkpoint's code ran"
    # the library path too
    r = load_recipe(_recipe(tmp_path, shards, "lib"), [f"trainer.init_checkpoint={evil}"])
    with pytest.raises(ckpt.CheckpointError, match="refused"):
        make_trainer(r)
    assert not marker.exists()


@pytest.mark.parametrize("zip_format", [True, False])
def test_numpy_allowance_for_old_checkpoints_does_not_admit_code(tmp_path, trained, zip_format):
    marker = tmp_path / "code-ran"
    path = tmp_path / "mixed.pt"
    torch.save({"model": {}, "recipe": {"model": "lipreading"}, "np": np.zeros(3, np.uint32),
                "x": RunsCode(marker)}, path, _use_new_zipfile_serialization=zip_format)
    with pytest.raises(ckpt.CheckpointError, match=r"mixed\.pt: refused: .*posix\.system"):
        ckpt.load(path)
    assert not marker.exists()


def test_a_checkpoint_of_another_recipe_or_model_says_so_in_one_line(tmp_path, shards, trained):
    recipe, good = trained
    runner = CliRunner()
    res = runner.invoke(app, ["eval", str(recipe), "--checkpoint", str(good), "--set", "model_conf.num_classes=5"])
    line = _one_error_line(res)
    assert res.exit_code == 1 and str(good) in line and "do not fit" in line, line
    assert "model_conf.num_classes: 4 in the checkpoint, 5 here" in line, line
    # another model entirely
    state = ckpt.load(good)
    state["recipe"]["model"] = "two_tower"
    other = tmp_path / "other.pt"
    torch.save(state, other)
    res = runner.invoke(app, ["eval", str(recipe), "--checkpoint", str(other)])
    assert "a checkpoint of model 'two_tower', but this recipe builds 'lipreading'" in _one_error_line(res)
    # resuming a run whose recipe changed shape
    run = _recipe(tmp_path, shards, "changed")
    (tmp_path / "changed" / "checkpoints").mkdir(parents=True)
    shutil.copy(good, tmp_path / "changed" / "checkpoints" / "last.pt")
    res = runner.invoke(app, ["run", str(run), "--set", "backend_conf.hidden=24"])
    line = _one_error_line(res)
    assert res.exit_code == 2 and "trained with another recipe" in line, line
    assert "backend_conf.hidden: 16 in the checkpoint, 24 here" in line, line
    # not a checkpoint at all, or a truncated one
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"this is not a checkpoint\n" * 10)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    for bad in (junk, cut):
        res = runner.invoke(app, ["eval", str(recipe), "--checkpoint", str(bad)])
        assert res.exit_code == 1 and f"{bad}: not a readable" in _one_error_line(res)


def _legacy(path: Path, good: Path) -> Path:
    """The format written before this one: numpy's RNG state as numpy's own tuple (an ndarray inside)."""
    state = ckpt.load(good)
    state.pop("format")
    np.random.seed(11)
    state["rng"]["numpy"] = np.random.get_state()
    torch.save(state, path)
    return path


def test_an_older_checkpoint_still_loads_resumes_and_converts(tmp_path, shards, trained):
    _, good = trained
    old = _legacy(tmp_path / "old.pt", good)
    assert set(torch.serialization.get_unsafe_globals_in_checkpoint(str(old))) <= ckpt._LEGACY_NUMPY
    with pytest.raises(pickle.UnpicklingError):
        torch.load(old, weights_only=True)  # torch's plain allowlist refuses it
    state = ckpt.load_checkpoint(old)
    ckpt.set_rng_state(state["rng"])
    np.random.seed(11)
    want = np.random.get_state()[1]
    ckpt.set_rng_state(state["rng"])
    assert np.array_equal(np.random.get_state()[1], want)
    # resume from it (one more epoch)
    run = _recipe(tmp_path, shards, "old-run")
    (tmp_path / "old-run" / "checkpoints").mkdir(parents=True)
    shutil.copy(old, tmp_path / "old-run" / "checkpoints" / "last.pt")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = train(load_recipe(run, ["trainer.epochs=1"]))
    assert res.step == 2 and res.epoch == 1  # the 8 training samples: 2 batches, both already done at step 2
    # The resumed epoch has no batch left, so the schedule steps with no optimizer step of this process: no warning.
    assert not [w for w in caught if "lr_scheduler.step()" in str(w.message)]
    # convert: afterwards torch's plain weights-only load reads it, with the same numpy state
    res = CliRunner().invoke(app, ["convert-checkpoint", str(old), "--out", str(tmp_path / "new.pt")])
    assert res.exit_code == 0, res.output
    new = torch.load(tmp_path / "new.pt", weights_only=True)
    assert new["format"] == ckpt.FORMAT
    ckpt.set_rng_state(new["rng"])
    assert np.array_equal(np.random.get_state()[1], want)
    assert all(torch.equal(new["model"][k], state["model"][k]) for k in state["model"])


def test_resume_loads_to_cpu_before_restoring_rng_states(tmp_path, shards, trained):
    """On a GPU, loading with map_location=cuda made torch.set_rng_state raise (it takes CPU tensors only). The
    trainer's device stands in as 'meta' here: anything loaded there cannot restore an RNG state or weights."""
    recipe, good = trained
    trainer = make_trainer(load_recipe(recipe, [f"output_dir={tmp_path / 'meta'}"]))
    trainer.device = torch.device("meta")
    trainer.restore(good)
    state = ckpt.load(good)
    assert torch.equal(torch.get_rng_state(), state["rng"]["torch"]) and trainer.step == 2
    assert all(t.device.type == "cpu" for t in state["model"].values())


def test_only_checkpoint_py_calls_torch_load():
    """Every checkpoint read goes through avtrain/engine/checkpoint.py (weights_only, CPU, one-line errors)."""
    callers = [p.relative_to(REPO).as_posix() for p in (REPO / "avtrain").rglob("*.py")
               if "torch.load(" in p.read_text() and p.name != "checkpoint.py"]
    assert callers == []
    text = next((REPO / "avtrain").rglob("checkpoint.py")).read_text()
    assert "weights_only=False" not in text
