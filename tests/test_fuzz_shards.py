"""Shards cannot hurt the loader: seeded mutations of real GRID shard samples (made by the real pipeline) through
decode_sample, the training data module and `avprep inspect`. Each bad sample ends in one error naming its key and
field, or is skipped and counted (data.on_bad_sample: skip); nothing hangs or crashes; decoding stays within the
bounds of avbridge/bounds.py. The long form with the figures: scripts/fuzz.py shards (docs/reliability.md)."""

from __future__ import annotations

import json
import tarfile

import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

import fuzzing
from avbridge.sample import SampleError, decode_sample
from avprep.inspect import check_shards
from avtrain.config import validate_recipe
from avtrain.data import ClipLoader, build_loader

SEED, PER_CLASS = 0, 6  # 17 classes x 6 = 102 inputs
READ_BY_LOADER = {"mouth.mp4", "mel.npy", "json"}  # what the lip-reading recipe below decodes
STRUCTURAL = {"unknown member name", "dotted key", "missing json"}  # bad whichever fields are read


@pytest.fixture(scope="module")
def pools(grid_root, tmp_path_factory):
    folders = fuzzing.make_grid_shards(tmp_path_factory.mktemp("grid-shards"), grid_root)
    return {name: fuzzing.read_samples(folder) for name, folder in folders.items()}


def test_decode_sample_names_key_and_field_of_every_bad_sample_within_bounds(pools):
    pool = pools["words"] + pools["tower"]
    assert {n for raw in pool for n in raw if not n.startswith("__")} >= {
        "mouth.mp4", "face.mp4", "face.npy", "flow.npz", "wav.flac", "mel.npy", "mel.q8.npz", "linear.q8.npz",
        "landmarks.npy", "transforms.npy", "json"}
    for raw in pool:  # the originals are fine
        decode_sample(raw)
    n = PER_CLASS * len(fuzzing.SHARD_MUTATIONS)
    outcomes = []
    for cls, member, raw in fuzzing.fuzz_samples(pool, n, SEED):
        outcome, detail, peak = fuzzing.decode_outcome(raw)
        outcomes.append((cls, outcome))
        assert outcome in ("decoded", "error"), (cls, member, detail)
        if outcome == "error":
            key, field = detail.split(": ")[0], detail.split(": ")[1]
            assert key == f"sample {raw['__key__']}" and (field in raw or field == "json"), detail
            assert "\n" not in detail
        else:
            assert cls not in fuzzing.ALWAYS_DETECTABLE, (cls, member)
        # the largest real sample decodes to ~17 MiB traced (two-tower face crops and float32 flow)
        assert peak < 48 * 2**20, (cls, member, peak)
    table = fuzzing.shard_table([(c, o, "") for c, o in outcomes])
    assert set(table) == set(fuzzing.SHARD_MUTATIONS) and sum(sum(c.values()) for c in table.values()) == n
    assert table["truncated member"]["error"] == PER_CLASS


def _recipe(shards, policy: str, workers: int = 0):
    return validate_recipe({
        "output_dir": "unused", "seed": 1,
        "data": {"shards": str(shards), "batch_size": 4, "eval_batch_size": 4, "shuffle_buffer": 1,
                 "on_bad_sample": policy, "num_workers": workers},
        "model_conf": {"num_classes": 51}, "augment_conf": {"crop": 88},
    })


def test_the_data_module_skips_and_counts_bad_samples_or_raises_naming_them(pools, tmp_path):
    good = pools["words"]
    fuzzed = list(fuzzing.fuzz_samples(good, 3 * len(fuzzing.SHARD_MUTATIONS), SEED + 1))
    samples = good + [raw for _, _, raw in fuzzed]
    # two shards, two workers: skips must cross worker processes with the batches
    fuzzing.write_tar(tmp_path / "train-000000.tar", samples[::2])
    fuzzing.write_tar(tmp_path / "train-000001.tar", samples[1::2])
    must_skip = {raw["__key__"] for cls, member, raw in fuzzed
                 if cls in STRUCTURAL or (cls in fuzzing.ALWAYS_DETECTABLE and member in READ_BY_LOADER)}
    must_keep = {raw["__key__"] for raw in good} | {
        raw["__key__"] for cls, member, raw in fuzzed
        if cls in fuzzing.ALWAYS_DETECTABLE - STRUCTURAL and member not in READ_BY_LOADER}
    loader = ClipLoader(_recipe(tmp_path, "raise"), train=False)
    expected_skips = set()
    for raw in samples:
        try:
            loader(raw)
        except SampleError:
            expected_skips.add(raw["__key__"])
    kept, skipped = [], []
    for batch in build_loader(_recipe(tmp_path, "skip", workers=2), "train", train=True):
        kept += batch["keys"]
        skipped += batch["skipped"]
        assert torch.isfinite(batch["video"]).all() and torch.isfinite(batch["mel"]).all()
    skipped_keys = [k for k, _, _ in skipped]
    assert sorted(kept + skipped_keys) == sorted(raw["__key__"] for raw in samples)  # none lost, none twice
    assert set(skipped_keys) == expected_skips and must_skip <= expected_skips and not must_keep & expected_skips
    assert all(field and reason and "train-00000" in reason for _, field, reason in skipped)
    # raise: the first bad sample of the stream stops the epoch, named with its shard, also from a worker process
    for workers in (0, 2):
        with pytest.raises(SampleError, match=r"^sample fz1n\d+: .+: .+ \[train-00000[01]\.tar\]$"):
            for _ in build_loader(_recipe(tmp_path, "raise", workers), "train", train=True):
                pass


def test_a_stream_of_only_bad_samples_raises_even_when_skipping(pools, tmp_path):
    bad = [raw for cls, _, raw in fuzzing.fuzz_samples(pools["words"], 17, SEED + 2) if cls in STRUCTURAL]
    fuzzing.write_tar(tmp_path / "train-000000.tar", bad)
    with pytest.raises(RuntimeError, match=r"every sample read was bad \(3 skipped"):
        list(build_loader(_recipe(tmp_path, "skip"), "train", train=True))


def test_the_engine_reports_skips_at_the_end_of_the_epoch(tmp_path):
    from avtrain.api import train
    from avtrain.config import load_recipe
    from avtrain.synthetic import write_shards

    shards = write_shards(tmp_path / "syn", splits={"train": (1, 8), "val": (1, 4)})
    with tarfile.open(shards / "train-000000.tar") as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar if m.isfile()]
    samples: dict[str, dict] = {}
    for name, data in members:
        key, _, field = name.partition(".")
        samples.setdefault(key, {"__key__": key})[field] = data
    raws = list(samples.values())
    raws[3]["mel.npy"] = raws[3]["mel.npy"][:40]  # truncated
    raws[5]["json"] = b"[]"
    fuzzing.write_tar(shards / "train-000000.tar", raws)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"""
output_dir: {tmp_path / 'run'}
data: {{shards: {shards}, batch_size: 4, shuffle_buffer: 1, on_bad_sample: skip}}
visual_frontend_conf: {{stem_channels: 8, widths: [8, 8, 16, 16], blocks: [1, 1, 1, 1]}}
audio_frontend_conf: {{channels: [8, 16]}}
memory_conf: {{num_slots: 4}}
backend_conf: {{hidden: 16}}
model_conf: {{num_classes: 4, embed_dim: 16}}
augment_conf: {{crop: 28}}
trainer: {{epochs: 1, progress: false, threads: 1}}
""")
    out = tmp_path / "console.txt"
    with open(out, "w") as f:
        result = train(load_recipe(recipe), console=Console(file=f, width=300))
    assert result.samples_seen == 6
    text = out.read_text()
    assert "epoch 0: skipped 2 bad train samples (data.on_bad_sample: skip; json 1, mel.npy 1)" in text, text
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    skipped = [row["skipped"] for row in log if "skipped" in row]
    assert skipped == [{"train": {"samples": 2, "by_field": {"mel.npy": 1, "json": 1},
                                  "first": skipped[0]["train"]["first"]}}]
    assert raws[3]["__key__"] in skipped[0]["train"]["first"]
    # raise (the default), read by a worker process: `avtrain run` stops with one line naming sample, field and shard
    from avtrain.cli import app as avtrain_app

    res = CliRunner().invoke(avtrain_app, ["run", str(recipe), "--set", f"output_dir={tmp_path / 'raise'}",
                                           "--set", "data.on_bad_sample=raise", "--set", "data.num_workers=2"])
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 2 and len(lines) == 1, res.output
    assert lines[0].startswith(f"error: sample {raws[3]['__key__']}: mel.npy: ") and "[train-000000.tar]" in lines[0]


def test_inspect_names_every_bad_sample_and_reads_each_shard_to_its_end(pools, tmp_path):
    pool = pools["words"] + pools["tower"]
    fuzzed = list(fuzzing.fuzz_samples(pool, 2 * len(fuzzing.SHARD_MUTATIONS), SEED + 3))
    samples = pool + [raw for _, _, raw in fuzzed]
    fuzzing.write_tar(tmp_path / "train-000000.tar", samples[: len(samples) // 2])
    fuzzing.write_tar(tmp_path / "train-000001.tar", samples[len(samples) // 2 :])
    report = check_shards(tmp_path)
    assert sum(report.samples.values()) == len(samples)
    assert not [e for e in report.errors if "cannot be read" in e]
    flagged = {e.split(".")[0] for e in report.errors}
    bad = set()
    for raw in samples:
        try:
            decode_sample(raw)
        except SampleError:
            bad.add(raw["__key__"])
    assert flagged == bad and not flagged & {raw["__key__"] for raw in pool}
    assert {raw["__key__"] for cls, _, raw in fuzzed if cls in fuzzing.ALWAYS_DETECTABLE} <= bad
    from avprep.cli import app

    res = CliRunner().invoke(app, ["inspect", str(tmp_path)])
    assert res.exit_code == 1 and f"{len(report.errors)} errors" in res.output
