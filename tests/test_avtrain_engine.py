"""Engine: exact resume on CPU, atomic checkpoints with full state, the CLI's run and eval artefacts."""

import json
import math
import pickle
import subprocess
import sys
import time

import pytest
import torch
from typer.testing import CliRunner

from avtrain.api import train
from avtrain.cli import app
from avtrain.config import load_recipe
from avtrain.engine.checkpoint import load, save_atomic
from avtrain.synthetic import write_shards

RECIPE = """
seed: 3
output_dir: {out}
data: {{shards: {shards}, batch_size: 4, eval_batch_size: 8, shuffle_buffer: 8}}
visual_frontend_conf: {{stem_channels: 8, widths: [8, 8, 16, 16], blocks: [1, 1, 1, 1]}}
audio_frontend_conf: {{channels: [8, 16]}}
memory_conf: {{num_slots: 6, variant: {variant}}}
backend_conf: {{hidden: 16}}
model_conf: {{num_classes: 4, embed_dim: 16}}
optim: sgd
optim_conf: {{lr: 0.05}}
scheduler: cosine
augment_conf: {{crop: 28}}
trainer: {{epochs: 2, progress: false, threads: 1, save_every_steps: 4}}
eval: {{plot_clips: 2, checkpoint: last}}
"""


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_shards(tmp_path_factory.mktemp("syn"), splits={"train": (2, 12), "val": (1, 8), "test": (1, 8)})


def make(tmp_path, shards, name, variant="paper"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(RECIPE.format(out=tmp_path / name, shards=shards, variant=variant))
    return path


@pytest.mark.parametrize("variant, workers", [("paper", 0), ("official", 2)])
def test_resume_reproduces_the_uninterrupted_losses(tmp_path, shards, variant, workers):
    whole = train(load_recipe(make(tmp_path, shards, "whole", variant), [f"data.num_workers={workers}"]),
                  record_keys=True)
    assert len(whole.losses) == 12  # 2 epochs x 6 batches
    # stop mid-epoch 1 (step 9 of 12), then resume to the end
    part = make(tmp_path, shards, "part", variant)
    first = train(load_recipe(part, ["trainer.max_steps=9", f"data.num_workers={workers}"]), record_keys=True)
    assert first.step == 9 and len(first.losses) == 9
    second = train(load_recipe(part, [f"data.num_workers={workers}"]), record_keys=True)
    assert second.step == 12
    assert first.losses + second.losses == whole.losses  # exact equality, not approximate
    assert first.seen_keys + second.seen_keys == whole.seen_keys
    a = load(tmp_path / "whole" / "checkpoints" / "last.pt")["model"]
    b = load(tmp_path / "part" / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoint_holds_the_full_state(tmp_path, shards):
    train(load_recipe(make(tmp_path, shards, "ck"), ["trainer.max_steps=5"]))
    ck = load(tmp_path / "ck" / "checkpoints" / "last.pt")
    assert {"model", "optimizer", "scheduler", "scaler", "rng", "epoch", "epoch_step", "step", "recipe"} <= set(ck)
    assert (ck["epoch"], ck["epoch_step"], ck["step"]) == (0, 5, 5)
    assert {"python", "numpy", "torch"} <= set(ck["rng"]) and ck["optimizer"]["state"]
    assert not list((tmp_path / "ck" / "checkpoints").glob("*.tmp"))
    # Run again at the same budget: it resumes at step 5 and stops there, the checkpoint as it was.
    before = (tmp_path / "ck" / "checkpoints" / "last.pt").read_bytes()
    again = train(load_recipe(make(tmp_path, shards, "ck"), ["trainer.max_steps=5"]))
    assert again.step == 5 and again.losses == []
    assert (tmp_path / "ck" / "checkpoints" / "last.pt").read_bytes() == before


def test_atomic_save_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "c.pt"
    save_atomic({"a": 1}, path)
    with pytest.raises((AttributeError, TypeError, pickle.PicklingError)):
        save_atomic({"bad": lambda: 0}, path)  # lambdas cannot be pickled: the write fails midway
    assert load(path) == {"a": 1} and [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_cli_run_then_eval_writes_metrics_confusions_and_figure(tmp_path, shards):
    recipe = make(tmp_path, shards, "cli")
    runner = CliRunner()
    res = runner.invoke(app, ["run", str(recipe), "--set", "trainer.epochs=1"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["eval", str(recipe)])
    assert res.exit_code == 0, res.output
    out = tmp_path / "cli" / "eval" / "test"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["samples"] == 8 and 0 <= metrics["top1"] <= 1 and "top1_flip_tta" in metrics
    mem = metrics["memory"]
    assert mem["num_slots"] == 6 and 1 / 6 <= mem["src_max_prob"] <= 1 and 1 <= mem["slots_used_as_argmax_src"] <= 6
    assert 0 <= mem["src_entropy"] <= mem["uniform_entropy"] + 1e-6 and 0 <= mem["audio_path_top1"] <= 1
    conf = json.loads((out / "confusions.json").read_text())
    assert all(c["true"] != c["predicted"] and c["count"] >= 1 for c in conf)
    # class names come from the shards' vocabulary, also for classes absent from the split
    assert all(c["true"].startswith("w") and c["predicted"].startswith("w") for c in conf)
    assert sum(c["count"] for c in conf) == round(8 * (1 - metrics["top1"]))
    clips = [json.loads(line) for line in (out / "per_clip.jsonl").read_text().splitlines()]
    assert len(clips) == len({c["key"] for c in clips}) == 8  # one row a clip, for avtrain compare
    assert sum(c["correct"] for c in clips) == round(8 * metrics["top1"])
    assert all(c["correct"] == (c["label"] == c["predicted"]) for c in clips)
    assert sum(c["correct_flip_tta"] for c in clips) == round(8 * metrics["top1_flip_tta"])
    png = (out / "addressing.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert (tmp_path / "cli" / "tb").is_dir() and list((tmp_path / "cli" / "tb").glob("events.*"))
    # another checkpoint than eval.checkpoint is evaluated beside it, not over it
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    res = runner.invoke(app, ["eval", str(recipe), "--checkpoint", "best"])
    assert res.exit_code == 0, res.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    other = json.loads((tmp_path / "cli" / "eval" / "test-best" / "metrics.json").read_text())
    assert other["checkpoint"].endswith("best.pt") and metrics["checkpoint"].endswith("last.pt")
    # an evaluation without a trained run fails with a clear message
    res = runner.invoke(app, ["eval", str(recipe), "--set", f"output_dir={tmp_path / 'nothing'}"])
    assert res.exit_code == 1 and "no checkpoint" in res.output


def test_training_learns_the_synthetic_task(tmp_path, shards):
    r = load_recipe(make(tmp_path, shards, "learn"), ["trainer.epochs=6", "optim=adam", "optim_conf={lr: 0.01}",
                                                      "memory_conf.num_slots=0"])
    res = train(r)
    assert sum(res.losses[-6:]) / 6 < 0.6 * sum(res.losses[:6]) / 6


def test_plateau_schedule_is_not_stepped_without_validation(tmp_path, shards):
    # patience 0: before, a fake 0.0 "accuracy" each epoch cut the learning rate after the second epoch
    r = load_recipe(make(tmp_path, shards, "plateau"), ["scheduler=plateau", "scheduler_conf={patience: 0}",
                                                        "trainer.val_each_epoch=false", "trainer.epochs=3"])
    train(r)
    ck = load(tmp_path / "plateau" / "checkpoints" / "last.pt")
    assert ck["epoch"] == 3
    assert ck["optimizer"]["param_groups"][0]["lr"] == 0.05 and ck["scheduler"]["best"] in (float("inf"),
                                                                                          float("-inf"))


def test_loss_parts_are_read_back_every_log_every_steps(tmp_path, shards):
    r = load_recipe(make(tmp_path, shards, "log"), ["trainer.log_every=4", "trainer.epochs=1"])
    res = train(r)
    rows = [json.loads(line) for line in (tmp_path / "log" / "train_log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 4]  # 6 steps: step 1, then every 4th
    assert len(res.losses) == 6 and [res.losses[s - 1] for s in (1, 4)] == [row["total"] for row in rows]
    assert all({"total", "ce_recall", "save", "bridge", "grad_norm", "lr", "samples_per_s"} <= set(row)
               for row in rows)


def test_a_rank_without_a_training_shard_is_refused_at_start(tmp_path, shards, monkeypatch):
    from avtrain.api import make_trainer
    from avtrain.engine import distributed

    # 2 train shards, 3 ranks: the third rank would wait forever in the first gradient all-reduce
    monkeypatch.setattr(distributed, "setup", lambda device_type: distributed.DistInfo(rank=0, world_size=3))
    with pytest.raises(RuntimeError, match=r"split 'train' has 2 shard\(s\) for 3 ranks"):
        make_trainer(load_recipe(make(tmp_path, shards, "ranks")))


def test_trainer_compile_trains_through_torch_compile(tmp_path, shards, monkeypatch):
    """trainer.compile wraps the model in torch.compile. Dynamo's graph capture is exercised for real; the code
    generation backend is dynamo's 'eager' one here: inductor works on this CPU too but took 3-5 minutes of wall
    time for one step of a tiny model on the shared 2 cores (docs/training.md)."""
    calls = []
    real = torch.compile

    def compile_eager(model, **kw):
        calls.append(model)
        return real(model, backend="eager", **kw)

    monkeypatch.setattr(torch, "compile", compile_eager)
    torch._dynamo.reset()
    r = load_recipe(make(tmp_path, shards, "compiled"), ["trainer.compile=true", "trainer.max_steps=2"])
    res = train(r)
    assert len(calls) == 1 and res.step == 2 and all(math.isfinite(x) for x in res.losses)
    ck = load(tmp_path / "compiled" / "checkpoints" / "last.pt")
    assert not any(k.startswith("_orig_mod") for k in ck["model"])  # the plain model's weights are saved


def test_compile_is_refused_for_the_autoregressive_speech_decoder(tmp_path):
    from avtrain.config import RecipeError, validate_recipe

    with pytest.raises(RecipeError, match="does not support torch.compile"):
        validate_recipe({"output_dir": "x", "data": {"shards": "s", "color": "rgb"}, "model": "speech",
                         "trainer": {"compile": True}})


def test_bf16_autocast_training_through_the_engine_on_cpu(tmp_path, shards):
    r = load_recipe(make(tmp_path, shards, "bf16"), ["trainer.precision=bf16", "trainer.max_steps=3",
                                                     "trainer.log_every=1"])
    res = train(r)
    assert res.step == 3 and all(math.isfinite(x) for x in res.losses)
    rows = [json.loads(line) for line in (tmp_path / "bf16" / "train_log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 2, 3] and all(math.isfinite(row["bridge"]) for row in rows)


def test_a_run_counts_its_samples_and_keeps_their_keys_only_when_asked(tmp_path, shards):
    # an LRW run reads 500 000 clips an epoch: their keys are not kept unless a test asks for them
    result = train(load_recipe(make(tmp_path, shards, "keys"), ["trainer.max_steps=5"]))
    assert result.samples_seen == 20 and result.seen_keys == []


def test_a_second_run_into_a_folder_being_trained_is_refused_in_one_line(tmp_path, shards):
    """Two processes on one run folder (a re-submitted job, a sweep started twice) would interleave their
    checkpoints and logs; the second is refused while the first lives, and resumes once it is killed."""
    recipe = make(tmp_path, shards, "busy")
    log = tmp_path / "first.log"
    with log.open("w") as sink:
        first = subprocess.Popen([sys.executable, "-m", "avtrain.cli", "run", str(recipe),
                                  "--set", "trainer.epochs=10000"], stdout=sink, stderr=subprocess.STDOUT)
    try:
        last = tmp_path / "busy" / "checkpoints" / "last.pt"
        deadline = time.time() + 120
        while not last.exists() and first.poll() is None and time.time() < deadline:
            time.sleep(0.1)
        assert last.exists(), log.read_text()[-2000:]
        # without the guard this call would resume the same last.pt beside the first process (max_steps=1: it
        # would return at once, exit 0)
        res = CliRunner().invoke(app, ["run", str(recipe), "--set", "trainer.epochs=10000",
                                       "--set", "trainer.max_steps=1"])
        assert res.exit_code == 2, res.output
        assert "is being trained by" in res.output and f"pid {first.pid}" in res.output
        assert len(res.output.strip().splitlines()) <= 2  # one message (rich may wrap it), no traceback
    finally:
        first.kill()
        first.wait()
    # the kernel dropped the killed process's lock: the folder resumes from the checkpoint it left
    again = train(load_recipe(recipe, ["trainer.epochs=10000", "trainer.max_steps=" + str(load(last)["step"] + 1)]))
    assert again.step == load(last)["step"] and len(again.losses) == 1



def test_a_boundary_indicator_on_word_shards_without_context_is_refused_in_one_line(tmp_path):
    words = write_shards(tmp_path / "words", splits={"train": (2, 4), "val": (1, 2), "test": (1, 2)})
    index = json.loads((words / "index.json").read_text())
    (words / "index.json").write_text(json.dumps({**index, "run": {"unit": "word", "word_context": 0}}))
    res = CliRunner().invoke(app, ["run", str(make(tmp_path, words, "bnd")), "--set", "model_conf.boundary=true",
                                   "--set", "trainer.max_steps=1", "--set", "trainer.progress=false"])
    assert res.exit_code == 2, res.output
    assert "--word-context" in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) <= 2, res.output  # one message (rich may wrap it)


def test_each_checkpoint_scores_in_its_own_eval_folder(tmp_path):
    from avtrain.tasks.weights import eval_dir

    r = load_recipe("recipes/grid-words-mtlam.yaml", [f"output_dir={tmp_path / 'A'}", "eval.checkpoint=last"])
    root = tmp_path / "A" / "eval"
    assert eval_dir(r, "test", None) == eval_dir(r, "test", "last") == root / "test"
    assert eval_dir(r, "test", str(tmp_path / "A" / "checkpoints" / "last.pt")) == root / "test"
    assert eval_dir(r, "test", "best") == root / "test-best"
    assert eval_dir(r, "val", str(tmp_path / "A" / "checkpoints" / "epoch3.pt")) == root / "val-epoch3"
    # another run's best.pt must not share a folder with this run's best.pt
    assert eval_dir(r, "test", str(tmp_path / "B" / "checkpoints" / "best.pt")) == root / "test-B-best"
    assert eval_dir(r, "test", str(tmp_path / "exported" / "model.pt")) == root / "test-exported-model"


def test_resuming_with_another_recipe_is_refused_and_budget_or_execution_changes_are_not(tmp_path, shards):
    """A run re-run with a changed recipe (another learning rate, seed, shards) used to continue from its last.pt
    under the new settings and overwrite config.yaml: a model trained half under each, recorded as trained under
    the second. What may change on resume is the budget and how the work is executed, nothing the model learns from."""
    import shutil

    import numpy as np

    recipe = make(tmp_path, shards, "rr")
    train(load_recipe(recipe, ["trainer.max_steps=3"]))
    written = (tmp_path / "rr" / "config.yaml").read_text()
    res = CliRunner().invoke(app, ["run", str(recipe), "--set", "optim_conf.lr=0.01", "--set", "seed=4",
                                   "--set", "trainer.max_steps=4"])
    assert res.exit_code == 2, res.output
    assert "optim_conf.lr: 0.05 in the checkpoint, 0.01 here" in res.output and "seed: 3" in res.output
    assert "--no-resume" in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) <= 3, res.output  # one message (rich may wrap it)
    assert (tmp_path / "rr" / "config.yaml").read_text() == written  # the record still names what was trained
    # other shards, moved or not: refused when they were made differently (here: another mean face)
    other = tmp_path / "other-shards"
    shutil.copytree(shards, other)
    np.save(other / "mean_face.npy", np.zeros((68, 2), np.float32))
    res = CliRunner().invoke(app, ["run", str(recipe), "--set", f"data.shards={other}", "--set", "trainer.max_steps=4"])
    assert res.exit_code == 2 and "shards made differently" in res.output, res.output
    # the budget, the execution and a moved copy of the same shards: resumed
    moved = tmp_path / "moved-shards"
    shutil.copytree(shards, moved)
    again = train(load_recipe(recipe, [f"data.shards={moved}", "trainer.max_steps=4", "trainer.threads=2",
                                       "data.num_workers=1", "trainer.progress=true", "eval.flip_tta=false"]))
    assert again.step == 4 and len(again.losses) == 1
    # and --no-resume starts over under the new recipe
    fresh = train(load_recipe(recipe, ["optim_conf.lr=0.01", "trainer.max_steps=2"]), resume=False)
    assert fresh.step == 2 and "lr: 0.01" in (tmp_path / "rr" / "config.yaml").read_text()
