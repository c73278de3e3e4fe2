"""DDP through torchrun: 2 CPU processes with gloo train on disjoint data and keep identical parameters."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from avtrain.config import load_recipe
from avtrain.synthetic import write_shards
from avtrain.tasks import task_for
from tiny_recipes import TINY_SPEECH_MODEL

WORKER = textwrap.dedent("""
    import json, sys, torch
    from avtrain.engine import distributed
    from avtrain.config import load_recipe
    from avtrain.api import make_trainer
    t = make_trainer(load_recipe(sys.argv[1]))
    res = t.fit(resume=False, record_keys=True)
    out, rank = sys.argv[2], t.dist.rank
    torch.save(t.model.state_dict(), f"{out}/params{rank}.pt")
    with open(f"{out}/rank{rank}.json", "w") as f:
        json.dump({"keys": res.seen_keys, "losses": res.losses, "step": res.step, "world": t.dist.world_size}, f)
    distributed.teardown(t.dist)
""")

RECIPE = """
seed: 11
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
trainer: {{epochs: 2, progress: false, threads: 1}}
"""


@pytest.mark.slow  # starts two interpreters through torchrun (~10-15 s)
def test_torchrun_two_processes_gloo(tmp_path):
    shards = write_shards(tmp_path / "syn", splits={"train": (2, 8), "val": (1, 6)})
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE.format(out=tmp_path / "run", shards=shards))
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(script), str(recipe), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    # 16 samples, 2 ranks x batch 4 -> 2 steps per epoch on each rank, 2 epochs
    assert [r["step"] for r in ranks] == [4, 4]
    for epoch in (0, 1):
        a, b = (set(r["keys"][8 * epoch : 8 * (epoch + 1)]) for r in ranks)
        assert len(a) == len(b) == 8 and not a & b  # each rank read its own shard
    assert ranks[0]["losses"] != ranks[1]["losses"]  # different data -> different local losses
    # averaged gradients keep the ranks' parameters bit-identical, and training moved them from the init
    p0, p1 = (torch.load(tmp_path / f"params{r}.pt") for r in (0, 1))
    learned = [k for k in p0 if "running" not in k and "num_batches" not in k]
    assert all(torch.equal(p0[k], p1[k]) for k in learned)
    # batch-norm statistics too: rank 0's are broadcast before each validation, so every rank validates (and
    # best.pt holds) the same model
    assert all(torch.equal(p0[k], p1[k]) for k in p0)
    torch.manual_seed(11)
    init = task_for(load_recipe(recipe)).build_model().state_dict()
    assert any(not torch.equal(p0[k], init[k]) for k in learned)
    assert (tmp_path / "run" / "checkpoints" / "last.pt").exists()


SPEECH_WORKER = textwrap.dedent("""
    import json, sys, torch
    from avtrain.engine import distributed
    from avtrain.config import load_recipe
    from avtrain.api import make_trainer
    t = make_trainer(load_recipe(sys.argv[1]))
    res = t.fit(resume=False)
    val = t.validate()  # again, to report it: every rank must get the whole split's values
    out, rank = sys.argv[2], t.dist.rank
    with open(f"{out}/speech{rank}.json", "w") as f:
        json.dump({"val": val, "step": res.step, "best": t.best}, f)
    distributed.teardown(t.dist)
""")

SPEECH_RECIPE = """
seed: 5
output_dir: {out}
data: {{shards: {shards}, batch_size: 2, eval_batch_size: 2, shuffle_buffer: 4}}
""" + TINY_SPEECH_MODEL + """optim: adam
trainer: {{epochs: 1, progress: false, threads: 1}}
"""


def run_speech_job(tmp_path) -> subprocess.CompletedProcess:
    """One epoch of a tiny speech model on 2 gloo ranks; one validation shard of 3 clips, so rank 1 validates
    nothing and rank 0 everything (also run many times by scripts/stress_torchrun_exit.py)."""
    shards = write_shards(tmp_path / "syn", splits={"train": (2, 4), "val": (1, 3)}, size=96, max_frames=5)
    recipe = tmp_path / "speech.yaml"
    recipe.write_text(SPEECH_RECIPE.format(out=tmp_path / "run", shards=shards))
    script = tmp_path / "speech_worker.py"
    script.write_text(SPEECH_WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(script), str(recipe), str(tmp_path)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)


@pytest.mark.slow  # two interpreters through torchrun (~15 s)
def test_torchrun_speech_with_uneven_validation_shards(tmp_path):
    proc = run_speech_job(tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"speech{r}.json").read_text()) for r in (0, 1)]
    assert [r["step"] for r in ranks] == [2, 2]  # 8 clips, 2 ranks x batch 2
    assert ranks[0]["val"] == ranks[1]["val"] and ranks[0]["val"]["samples"] == 3
    val = ranks[0]["val"]
    assert {"loss", "prediction", "free_running", "mel_l1", "post_l1", "save", "bridge"} <= set(val)
    assert all(v == v and abs(v) < 1e6 for v in val.values())  # finite, not NaN
    # the end-of-epoch validation picked best.pt (free-running error) with the same value on both ranks (Tacotron's
    # pre-net keeps its dropout at inference, so a second validation differs slightly)
    assert ranks[0]["best"] == ranks[1]["best"] == pytest.approx(val["free_running"], rel=0.05)
    assert (tmp_path / "run" / "checkpoints" / "best.pt").exists()
