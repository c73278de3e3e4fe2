"""MTLAM reachable from recipes: config keys and their errors, the shipped recipes, training and evaluation through
the engine and the CLI, and the Table-1 level sweep."""

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from avtrain.api import train
from avtrain.cli import app
from avtrain.config import RecipeError, load_recipe
from avtrain.engine.checkpoint import load
from avtrain.models.mtlam import MTLAMLipReading
from avtrain.models.tcn import receptive_fields, temporal_spec
from avtrain.synthetic import write_shards
from avtrain.tasks import task_for
from avtrain.tasks.lipreading.mtlam_sweep import SweepRow, parse_levels, run_dir_for

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
GRID = RECIPES / "grid-words-mtlam.yaml"


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_shards(tmp_path_factory.mktemp("syn"), splits={"train": (1, 8), "val": (1, 4), "test": (1, 6)})


def tiny(shards, out, levels="[1, 2]") -> list[str]:
    """--set overrides that shrink the shipped GRID recipe to the synthetic shards (32x32, 4 classes)."""
    return [f"data.shards={shards}", f"output_dir={out}", "data.video_size=null", "data.batch_size=4",
            "data.eval_batch_size=8", "data.num_workers=0", "data.shuffle_buffer=8", "augment_conf.crop=28",
            "visual_frontend_conf={stem_channels: 4, widths: [4, 4, 8, 8], blocks: [1, 1, 1, 1]}",
            "audio_frontend_conf.channels=[4, 8]", "model_conf.embed_dim=8", "model_conf.num_classes=4",
            "temporal_conf={num_levels: 2, layers_per_level: 1, growth_rate: 6, width: 8, dilations: [1]}",
            f"memory_conf={{levels: {levels}, num_heads: 2, num_slots: 4, key_dim: 4}}",
            "trainer.epochs=1", "trainer.progress=false", "trainer.save_every_steps=null", "eval.plot_clips=2"]


# ---------------------------------------------------------------- config
def test_shipped_mtlam_recipes_validate_and_the_grid_one_is_a_fair_comparison():
    grid = load_recipe(GRID)
    assert (grid.model, grid.memory, grid.temporal) == ("mtlam", "mtlam", "dctcn")
    assert grid.conf("memory").levels == [1, 2, 3]
    # the same data, augmentation, front-ends, optimiser, schedule, budget and seed as the bridging/baseline runs
    bridge = load_recipe(RECIPES / "grid-words-bridging.yaml")
    same = ("seed", "data", "augment", "augment_conf", "visual_frontend", "visual_frontend_conf", "audio_frontend",
            "audio_frontend_conf", "optim", "optim_conf", "scheduler", "scheduler_conf", "trainer", "eval")
    a, b = grid.model_dump(), bridge.model_dump()
    assert {k: a[k] for k in same} == {k: b[k] for k in same}
    assert grid.conf("model").embed_dim == bridge.conf("model").embed_dim == 128
    assert grid.conf("model").num_classes == bridge.conf("model").num_classes == 51

    lrw = load_recipe(RECIPES / "lrw-mtlam.yaml")
    assert lrw.conf("memory").levels == [1, 2, 3] and lrw.trainer.epochs == 80 and lrw.scheduler == "cosine"
    assert lrw.data.video_size == 96 and lrw.conf("model").num_classes == 500
    t = lrw.conf("temporal")
    # the public DC-TCN LRW configuration (docs/mtlam.md)
    assert receptive_fields(temporal_spec("dctcn", t.model_dump())) == [97, 193, 289, 385]


def test_grid_recipe_builds_the_documented_model():
    model = task_for(load_recipe(GRID)).build_model()
    assert isinstance(model, MTLAMLipReading) and model.levels == (1, 2, 3)
    assert [m.num_slots for m in model.memories.values()] == [32, 32, 32]
    # docs/mtlam.md: 4.1 M parameters with MTLAM#1-#3
    assert 3.9e6 < sum(p.numel() for p in model.parameters()) < 4.3e6
    base = task_for(load_recipe(GRID, ["memory_conf.levels=[]"])).build_model()
    assert base.audio is None and not base.memories


def write(tmp_path, text):
    p = tmp_path / "r.yaml"
    p.write_text(text)
    return p


MTLAM = "output_dir: x\ndata: {shards: s}\nmodel: mtlam\nmemory: mtlam\n"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("output_dir: x\ndata: {shards: s}\nmodel: mtlam\n",
         "model 'mtlam' needs memory 'mtlam' (got memory 'bridge')"),
        ("output_dir: x\ndata: {shards: s}\nmemory: mtlam\n",
         "model 'lipreading' needs memory 'bridge' (got memory 'mtlam')"),
        (MTLAM + "temporal: tcn\n", "temporal: unknown choice 'tcn'; known: dctcn, mstcn"),
        (MTLAM + "temporal_conf: {growth: 3}\n",
         "temporal_conf.growth: unknown key for temporal 'dctcn' (did you mean 'growth_rate'?)"),
        (MTLAM + "temporal: mstcn\ntemporal_conf: {growth_rate: 3}\n",
         "temporal_conf.growth_rate: unknown key for temporal 'mstcn'"),
        (MTLAM + "memory_conf: {level: [1]}\n",
         "memory_conf.level: unknown key for memory 'mtlam' (did you mean 'levels'?)"),
        (MTLAM + "memory_conf: {num_slots: 88, variant: official}\n",
         "memory_conf.variant: unknown key for memory 'mtlam'"),
        (MTLAM + "temporal_conf: {activation: gelu}\n", "temporal_conf.activation: Input should be 'relu', 'prelu'"),
        (MTLAM + "temporal_conf: {growth_rate: 100}\n",
         "temporal_conf: growth_rate 100 does not split over 3 kernel branches [3, 5, 7]"),
        (MTLAM + "temporal: mstcn\ntemporal_conf: {dilations: [1, 2]}\n",
         "temporal_conf: dilations: one per level (4), got [1, 2]"),
    ],
)
def test_mtlam_errors_are_one_line_naming_file_and_key(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(RecipeError) as e:
        load_recipe(path)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(str(path)) and expected in msg


def test_pairing_is_also_checked_after_set(tmp_path):
    with pytest.raises(RecipeError, match=r"\(with --set\): model 'mtlam' needs memory 'mtlam'"):
        load_recipe(RECIPES / "grid-words-bridging.yaml", ["model=mtlam"])


# ---------------------------------------------------------------- engine and evaluation
def test_engine_trains_mtlam_with_eq_6_and_the_checkpoint_reloads(tmp_path, shards):
    r = load_recipe(GRID, tiny(shards, tmp_path / "run") + ["trainer.max_steps=2", "trainer.log_every=1"])
    res = train(r)
    assert res.step == 2 and all(torch.isfinite(torch.tensor(x)) for x in res.losses)
    logged = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    first = logged[0]
    assert {"cls_va", "cls_v", "cls_a", "recon", "contrast", "recon@1", "recon@2", "grad_norm"} <= set(first)
    # Eq. 6 with the recipe's unit weights: the total is the sum of the five terms
    terms = first["cls_va"] + first["cls_v"] + first["cls_a"] + first["recon"] + first["contrast"]
    assert first["total"] == pytest.approx(terms, rel=1e-5)
    state = load(tmp_path / "run" / "checkpoints" / "last.pt")["model"]
    assert any(k.startswith("memories.2.") for k in state)
    # the loss weights come from the recipe: doubling the contrastive weight changes the logged total accordingly
    r2 = load_recipe(GRID, tiny(shards, tmp_path / "run2") + ["trainer.max_steps=1", "trainer.log_every=1",
                                                             "memory_conf.contrast_weight=2.0"])
    train(r2)
    again = json.loads((tmp_path / "run2" / "train_log.jsonl").read_text().splitlines()[0])
    assert again["total"] == pytest.approx(terms + first["contrast"], rel=1e-5)


def test_cli_run_and_eval_write_per_level_memory_statistics_and_figure(tmp_path, shards):
    sets = sum((["--set", s] for s in tiny(shards, tmp_path / "cli")), [])
    runner = CliRunner()
    res = runner.invoke(app, ["run", str(GRID), *sets])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["eval", str(tmp_path / "cli")])  # the run folder's config.yaml
    assert res.exit_code == 0, res.output
    out = tmp_path / "cli" / "eval" / "test"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["samples"] == 6 and 0 <= metrics["top1"] <= 1 and "top1_flip_tta" in metrics
    mem = metrics["memory"]
    assert set(mem["levels"]) == {"1", "2"}
    for d in mem["levels"].values():
        assert d["num_slots"] == 4 and 1 / 4 - 1e-6 <= d["max_prob"] <= 1 and 1 <= d["slots_used_as_argmax"] <= 4
        assert 0 <= d["entropy"] <= d["uniform_entropy"] + 1e-6 and -1 <= d["recall_cosine"] <= 1
    assert 0 <= mem["audio_path_top1"] <= 1 and 0 <= mem["visual_without_memory_top1"] <= 1
    assert mem["frames"] >= 6 * 3  # synthetic clips have at least 3 frames
    png = (out / "addressing.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    conf = json.loads((out / "confusions.json").read_text())
    assert sum(c["count"] for c in conf) == round(6 * (1 - metrics["top1"]))


def test_eval_of_the_mtlam_baseline_has_no_memory_section(tmp_path, shards):
    sets = sum((["--set", s] for s in tiny(shards, tmp_path / "base", levels="[]")), [])
    runner = CliRunner()
    assert runner.invoke(app, ["run", str(GRID), *sets, "--set", "trainer.max_steps=1"]).exit_code == 0
    res = runner.invoke(app, ["eval", str(tmp_path / "base"), "--checkpoint", "last"])
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "base" / "eval" / "test-last" / "metrics.json").read_text())
    assert "memory" not in metrics and not (tmp_path / "base" / "eval" / "test-last" / "addressing.png").exists()


# ---------------------------------------------------------------- Table-1 sweep
def test_level_parsing():
    assert parse_levels("") == () and parse_levels("-") == () and parse_levels("none") == ()
    assert parse_levels("2") == (2,) and parse_levels("3,1") == (1, 3)
    assert run_dir_for("runs/x", ()) == "runs/x-Lnone" and run_dir_for("runs/x", (1, 2)) == "runs/x-L1_2"
    with pytest.raises(RecipeError, match="appears twice"):
        parse_levels("1,1")
    with pytest.raises(RecipeError, match="comma-separated"):
        parse_levels("1;2")


def test_sweep_trains_each_level_set_writes_the_table_and_skips_finished_runs(tmp_path, shards):
    base = tmp_path / "sw"
    sets = sum((["--set", s] for s in tiny(shards, base)), [])
    runner = CliRunner()
    res = runner.invoke(app, ["sweep-levels", str(GRID), "", "2", *sets])
    assert res.exit_code == 0, res.output
    rows = [SweepRow(**r) for r in json.loads(Path(f"{base}-levels.json").read_text())]
    assert [(r.levels, r.name) for r in rows] == [([], "baseline"), ([2], "#2")]
    assert [r.paper_lrw_top1 for r in rows] == [89.6, 91.1]
    for r in rows:
        m = json.loads((Path(r.run_dir) / "eval" / "test" / "metrics.json").read_text())
        assert r.top1 == m["top1"] and r.samples == 6 and r.seed == 1
    # each level set got its own model: no memory in the baseline, exactly MTLAM#2 in the other
    baseline = load(Path(f"{base}-Lnone") / "checkpoints" / "last.pt")["model"]
    second = load(Path(f"{base}-L2") / "checkpoints" / "last.pt")["model"]
    assert not any(k.startswith(("memories.", "audio")) for k in baseline)
    assert {k.split(".")[1] for k in second if k.startswith("memories.")} == {"2"}
    md = Path(f"{base}-levels.md").read_text()
    assert "| baseline |" in md and "| #2 |" in md and f"{100 * rows[1].top1:.2f} %" in md
    # a second call finds both finished and trains nothing
    before = {p: p.stat().st_mtime_ns for p in Path(f"{base}-L2").rglob("*.pt")}
    res = runner.invoke(app, ["sweep-levels", str(GRID), "", "2", *sets])
    assert res.exit_code == 0 and res.output.count("skipped") == 2, res.output
    assert {p: p.stat().st_mtime_ns for p in Path(f"{base}-L2").rglob("*.pt")} == before
    # a changed recipe is neither mistaken for a finished run nor resumed from the other recipe's checkpoint
    res = runner.invoke(app, ["sweep-levels", str(GRID), "2", *sets, "--set", "optim_conf.lr=0.1"])
    assert res.exit_code == 2 and "trained with another recipe" in res.output, res.output
    assert "optim_conf.lr" in res.output and len(res.output.strip().splitlines()) <= 4, res.output
    assert {p: p.stat().st_mtime_ns for p in Path(f"{base}-L2").rglob("*.pt")} == before
    # another thread count trains the same model: the finished run is re-evaluated, not retrained or refused
    res = runner.invoke(app, ["sweep-levels", str(GRID), "2", *sets, "--set", "trainer.threads=2"])
    assert res.exit_code == 0 and "skipped" not in res.output, res.output
    assert {p: p.stat().st_mtime_ns for p in Path(f"{base}-L2").rglob("*.pt")} == before
    # rows trained by separate calls at their own budgets are gathered into one table; nothing is trained
    gathered = tmp_path / "gathered"
    res = runner.invoke(app, ["sweep-levels", str(GRID), "", "2", *sets, "--set", "trainer.epochs=99",
                              "--gather", "--out", str(gathered)])
    assert res.exit_code == 0, res.output
    assert json.loads(Path(f"{gathered}.json").read_text()) == [
        json.loads((Path(f"{base}-L{x}") / "sweep.json").read_text()) for x in ("none", "2")]
    assert "| #2 |" in Path(f"{gathered}.md").read_text() and "rows gathered" in Path(f"{gathered}.md").read_text()
    assert {p: p.stat().st_mtime_ns for p in Path(f"{base}-L2").rglob("*.pt")} == before
    # the printed table names each run in full (a user copies it into the next command), however long its path
    assert all(f"{base}-L{x}" in res.output for x in ("none", "2")), res.output
    # an unfinished row is named, and no table is written from the others
    res = runner.invoke(app, ["sweep-levels", str(GRID), "2", "1", *sets, "--gather", "--out", str(tmp_path / "g2")])
    assert res.exit_code == 2 and "1 of 2 level sets not finished" in res.output, res.output
    assert f"{base}-L1" in res.output.replace("\n", "") and not list(tmp_path.glob("g2*")), res.output
    assert not Path(f"{base}-L1").exists()


def test_sweep_refuses_bad_levels_and_non_mtlam_recipes_before_training(tmp_path, shards):
    sets = sum((["--set", s] for s in tiny(shards, tmp_path / "bad")), [])
    runner = CliRunner()
    res = runner.invoke(app, ["sweep-levels", str(GRID), "1", "5", *sets])  # the tiny model has 2 levels
    assert res.exit_code == 2 and "levels must be in 0..2" in res.output
    res = runner.invoke(app, ["sweep-levels", str(RECIPES / "grid-words-bridging.yaml"), "1"])
    assert res.exit_code == 2 and "needs an MTLAM recipe" in res.output
    assert not list(tmp_path.glob("bad*"))
