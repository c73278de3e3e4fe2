"""avprep at corpus scale: shards that mix, one clip never stops a run, partitions at the same time, resumes that
refuse to corrupt the set, and a quiet terminal. Fast tests use a fake per-clip function in real worker processes;
the ones marked slow run real GRID clips through the real detector."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys
import time
from collections import Counter, namedtuple
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from avbridge.sample import decode_field
from avbridge.shardlist import read_jsonl, shard_names
from avprep.options import PrepOptions
from avprep.pipeline import Options, process_clip
from avprep.prepare import face_hash, prepare
from avprep.presets import get_preset, with_overrides
from avprep.runner import run_clips, write_order
from avprep.shards import Partition, PartitionLock, ShardSink, iter_raw_samples, shard_paths, write_index
from avprep.types import ClipResult, ClipSpec, Rejection
from clipmaker import read_clip, write_clip
from fakeclips import Faulty

QUIET = Console(file=open(os.devnull, "w"))
LRW = get_preset("bridging-lrw")
GRID = get_preset("bridging-grid")
REPO = Path(__file__).resolve().parents[1]


def _lrw_clips(words: int, per_word: int) -> list[ClipSpec]:
    """An LRW-shaped listing: word folders in sorted order, ``per_word`` clips each, as corpora/lrw.py lists them."""
    video = Path("/nonexistent.mp4")
    return [ClipSpec(key=f"w{w:03d}_train_{i:05d}", corpus="lrw", speaker="unknown", utterance=f"{w}_{i}",
                     split="train", video=video, label=w)
            for w in range(words) for i in range(per_word)]


_Listed = namedtuple("_Listed", "key label")  # what write_order reads of a ClipSpec (500 000 of them, made fast)


def _samples(out: Path) -> list[dict]:
    return [raw for p in shard_paths(out) for raw in iter_raw_samples(p)]


def quiet(preset, **settings) -> PrepOptions:
    return PrepOptions(preset=preset, console=QUIET, progress=False, **settings)


def _run(clips, out, config=None, process=None, **settings) -> object:
    config = config or {"corpus": "lrw", "unit": "sentence", "preset_hash": LRW.hash, "partitions": 1}
    return run_clips(clips, Options(LRW), out, config, quiet(LRW, **settings), process=process or Faulty())


# --- 1. shards that mix -------------------------------------------------------------------------------------------

def test_write_order_gives_lrw_shaped_shards_many_words():
    # LRW's train split: 500 words, ~977 clips each, 250 clips per shard.
    clips = [_Listed(f"w{w:03d}_train_{i:05d}", w) for w in range(500) for i in range(977)]
    chunks = lambda order: [order[i : i + 250] for i in range(0, len(order) - 249, 250)]  # noqa: E731
    distinct_sorted = [len({c.label for c in chunk}) for chunk in chunks(clips)]
    shuffled = write_order(clips, seed=0)
    distinct = [len({c.label for c in chunk}) for chunk in chunks(shuffled)]
    # Measured: sorted order 1-2 words per shard; shuffled, 197 on average (250 draws from 500 words: expected
    # 500 * (1 - (1 - 1/500)^250) = 196.8), at least ~180 in every shard.
    assert max(distinct_sorted) <= 2
    assert np.mean(distinct) > 190 and min(distinct) > 170, (np.mean(distinct), min(distinct))
    # The order depends on (seed, key) only: the same for any listing order; another seed, another order.
    assert [c.key for c in write_order(clips[::-1], seed=0)] == [c.key for c in shuffled]
    assert [c.key for c in write_order(clips, seed=1)][:50] != [c.key for c in shuffled][:50]


def test_written_shards_mix_words_and_record_the_seed(tmp_path):
    clips = _lrw_clips(40, 50)  # 2000 clips, 50 per shard: sorted order would put 1-2 words in each
    report = _run(clips, tmp_path, shard_clips=50, seed=7, jobs=2)
    assert report.clips_written == 2000
    per_shard = [len({json.loads(raw["json"])["label"] for raw in iter_raw_samples(p)}) for p in shard_paths(tmp_path)]
    assert len(per_shard) == 40
    # 50 draws from 40 words: 29 distinct expected.
    assert min(per_shard) >= 20 and np.mean(per_shard) > 26, per_shard
    prepare(clips[:10], "lrw", tmp_path / "b", quiet(LRW, seed=7), process=Faulty())
    assert json.loads((tmp_path / "b" / "run.json").read_text())["seed"] == 7


# --- 2. one clip never stops a run --------------------------------------------------------------------------------

def test_crash_hang_and_memory_blowup_cost_one_clip_each(tmp_path):
    clips = _lrw_clips(3, 6)
    crash, hang, hog = clips[2].key, clips[7].key, clips[13].key
    faulty = Faulty(crash=(crash,), hang=(hang,), hog=(hog,))
    report = _run(clips, tmp_path, process=faulty, jobs=2, shard_clips=4, clip_timeout=6, max_worker_mem=600 / 1024)
    rows, torn = read_jsonl(tmp_path / "failures.jsonl")
    failures = {r["key"]: r for r in rows}
    assert {k: r["reason"] for k, r in failures.items()} == {crash: "worker crashed", hang: "timeout",
                                                             hog: "out of memory"}
    assert "SIGSEGV" in failures[crash]["detail"] and torn == 0
    keys = [raw["__key__"] for raw in _samples(tmp_path)]
    healthy = sorted(c.key for c in clips if c.key not in failures)
    assert sorted(keys) == healthy  # every other clip, each exactly once
    assert report.clips_written == 15 and report.rejected == Counter({"worker crashed": 1, "timeout": 1,
                                                                      "out of memory": 1})
    # Three workers died with two jobs: the third faulty clip and the clips after it ran in rebuilt workers.
    assert report.worker_cpu_seconds > 0
    assert write_index(tmp_path)["clips"] == 15
    # All three reasons are transient: a resume retries each once (they fail again here), then no more.
    again = _run(clips, tmp_path, process=faulty, jobs=2, clip_timeout=6, max_worker_mem=600 / 1024)
    assert (again.clips_skipped, again.clips_retried, again.clips_healed, again.clips_written) == (15, 3, 0, 0)
    assert [r["attempt"] for r in read_jsonl(tmp_path / "failures.jsonl")[0]] == [1, 1, 1, 2, 2, 2]
    third = _run(clips, tmp_path, process=faulty, jobs=2)
    assert third.clips_skipped == 18 and third.clips_written == 0  # tried twice: recorded, not retried again


def test_worker_start_up_and_first_items_are_counted_apart():
    from functools import partial

    from avprep.workers import WorkerPool
    from fakeclips import fail_to_start, pid_after_a_slow_first_item, pid_of, spin

    # A start-up (imports, detector graphs) longer than the per-item timeout: it is not the first item's time.
    pool = WorkerPool(pid_after_a_slow_first_item, jobs=2, timeout=1.0, init=partial(spin, 1.2))
    outcomes = list(pool.map(range(16)))
    assert all(o.failure is None for o in outcomes) and len({o.value for o in outcomes}) == 2
    assert 2.4 <= pool.startup_cpu_seconds <= pool.cpu_seconds  # both workers' start-up, counted apart
    # Each worker's first item (0.3 s of CPU in it; the later ones only sleep), counted apart as well.
    assert pool.first_items == 2 and 0.6 <= pool.first_item_cpu_seconds < 0.6 + 0.2
    assert pool.cpu_seconds - pool.startup_cpu_seconds - pool.first_item_cpu_seconds < 0.2
    # The steady state: both past their first item, until the last item went out (each holds one at a time).
    assert pool.all_warm_at is not None and 2 <= pool.done_when_warm < 16
    assert pool.all_warm_at < pool.drained_at <= time.monotonic()
    assert pool.done_when_warm <= pool.done_when_drained <= 15
    with pytest.raises(RuntimeError, match="failed to start"):
        list(WorkerPool(pid_of, jobs=1, init=fail_to_start).map(range(2)))


@pytest.mark.slow
def test_a_crashing_clip_among_real_grid_clips(grid_root, tmp_path):
    from avprep.corpora import grid

    clips = grid.find_clips(grid_root, ["s1"])[:3]
    faulty = Faulty(crash=(clips[1].key,), then=process_clip)
    report = prepare(clips, "grid", tmp_path, quiet(GRID, jobs=2), process=faulty)
    samples = {raw["__key__"]: raw for raw in _samples(tmp_path)}
    assert sorted(samples) == sorted([clips[0].key, clips[2].key])
    assert report.rejected == Counter({"worker crashed": 1})
    assert report.worker_cpu_seconds > 1.0  # the work ran in the workers, and their CPU time is counted
    # The detectors are built as each worker starts (mediapipe's import and graphs), before its first clip.
    assert 0.2 < report.worker_startup_cpu_seconds < report.worker_cpu_seconds
    assert report.stage_cpu_seconds["landmarks"] > 0 and report.steady_clips <= 3
    assert report.worker_first_clips >= 2 and 0 < report.worker_first_clip_cpu_seconds < report.worker_cpu_seconds
    meta = decode_field("json", samples[clips[0].key]["json"])
    assert meta["num_frames"] in (74, 75) and decode_field("mouth.mp4", samples[clips[0].key]["mouth.mp4"]).ndim == 3


# --- 3. partitions at the same time -------------------------------------------------------------------------------

def _partition_job(out: str, index: int, count: int, barrier, times) -> None:
    clips = _lrw_clips(10, 30)
    barrier.wait()  # both partitions start together
    start = time.monotonic()
    prepare(clips, "lrw", Path(out), quiet(LRW, partition=index, num_partitions=count, shard_clips=5),
            process=Faulty(delay=0.01), selection={"x": 1})
    times[index] = (start, time.monotonic())


def test_two_partitions_run_at_the_same_time_into_one_folder(tmp_path):
    ctx = mp.get_context("spawn")
    barrier, times = ctx.Barrier(2), ctx.Manager().dict()
    procs = [ctx.Process(target=_partition_job, args=(str(tmp_path), i, 2, barrier, times)) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
    assert [p.exitcode for p in procs] == [0, 0]
    (a0, a1), (b0, b1) = times[0], times[1]
    assert a0 < b1 and b0 < a1  # they overlapped in time
    keys = [raw["__key__"] for raw in _samples(tmp_path)]
    assert len(keys) == len(set(keys)) == 300  # nothing lost, nothing twice
    index = json.loads((tmp_path / "index.json").read_text())
    assert index["clips"] == 300 and index["run"]["partitions"] == 2  # the last to finish saw both ledgers
    assert all(v == 0 for v in index["torn_lines"].values())
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))
    listed = set(index["splits"]["train"]["shards"])
    assert {p.name for p in shard_paths(tmp_path)} == set(shard_names(tmp_path)) == listed


def _hold_lock(out: str, ready) -> None:
    lock = PartitionLock(Path(out), Partition(0, 2))
    ready.set()
    time.sleep(60)
    lock.release()


def test_a_second_process_on_the_same_partition_is_refused(tmp_path):
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(tmp_path), ready))
    holder.start()
    try:
        assert ready.wait(60)
        clips = _lrw_clips(2, 5)
        with pytest.raises(ValueError, match=rf"another avprep process \(pid {holder.pid}\) is writing partition 0 "
                                             r"of 2 of .*: wait for it"):
            prepare(clips, "lrw", tmp_path, quiet(LRW, partition=0, num_partitions=2), process=Faulty())
        assert not (tmp_path / "run.json").exists()  # refused before writing anything
        # The other partition is free to run meanwhile.
        report = prepare(clips, "lrw", tmp_path, quiet(LRW, partition=1, num_partitions=2), process=Faulty())
        assert report.clips_written == sum(Partition(1, 2).owns(c.key) for c in clips)
    finally:
        holder.kill()
        holder.join()
    # A killed holder leaves no stale lock.
    prepare(_lrw_clips(2, 5), "lrw", tmp_path, quiet(LRW, partition=0, num_partitions=2), process=Faulty())


def test_a_torn_last_line_never_loses_the_next(tmp_path):
    config = {"corpus": "t", "unit": "sentence", "preset_hash": "x"}
    sink = ShardSink(tmp_path, config, max_clips=1)
    sink.add(Faulty()(_lrw_clips(1, 1)[0], None, None))
    sink.close()
    text = (tmp_path / "ledger.jsonl").read_text()
    (tmp_path / "ledger.jsonl").write_text(text + text[: len(text) // 2])  # a kill in the middle of the second row
    (tmp_path / "failures.jsonl").write_text('{"key": "x1", "reason": "no face", "split": "train", "det')
    sink = ShardSink(tmp_path, config, max_clips=1)
    clip = _lrw_clips(2, 1)[1]
    sink.add(Faulty()(clip, None, None))
    sink.add(ClipResult(key="x2", rejection=Rejection(key="x2", split="train", reason="no face", detail="d")))
    index = sink.close()
    ledger, torn = read_jsonl(tmp_path / "ledger.jsonl")
    assert [r["clips"] for r in ledger] == [["w000_train_00000"], [clip.key]] and torn == 1
    failures, torn_f = read_jsonl(tmp_path / "failures.jsonl")
    assert [r["key"] for r in failures] == ["x2"] and torn_f == 1
    assert index["torn_lines"] == {"ledger": 1, "failures": 1} and index["clips"] == 2
    assert (tmp_path / "ledger.jsonl").read_text().count("\n") == 3  # the torn line, then ours on its own line


def test_avtrain_lists_shards_the_index_does_not_yet_name(tmp_path):
    from avtrain.data import split_shards

    config = {"corpus": "t", "unit": "sentence", "preset_hash": "x", "partitions": 2}
    clips = _lrw_clips(4, 10)
    for p in (Partition(0, 2), Partition(1, 2)):
        sink = ShardSink(tmp_path, config, max_clips=3, partition=p)
        for c in clips:
            if p.owns(c.key):
                sink.add(Faulty()(c, None, None))
        if p.index == 0:
            sink.close()  # partition 0 is done and wrote index.json; partition 1 has finished shards, still running
        else:
            for shard in list(sink._open.values()):
                sink._finish(shard)
            sink.abort()  # (releases its lock; the finished shards stay)
    listed = json.loads((tmp_path / "index.json").read_text())["splits"]["train"]["shards"]
    found = [Path(s).name for s in split_shards(tmp_path, "train")]
    assert set(listed) < set(found) and any("p001of002" in n for n in found)
    assert sorted(found) == sorted(r["shard"] for pth in tmp_path.glob("ledger*.jsonl") for r in read_jsonl(pth)[0])
    # avbridge.shardlist stays light: importing it loads neither numpy nor torch.
    code = "import sys, avbridge.shardlist; assert not {'numpy', 'torch', 'mediapipe'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})


# --- 4. a resume that refuses what would corrupt the set ----------------------------------------------------------

@pytest.fixture()
def grid_like(tmp_path):
    clips = [ClipSpec(key=f"s1_utt{i}", corpus="grid", speaker="s1", utterance=f"utt{i}", split="train",
                      video=Path("/nonexistent.mpg")) for i in range(6)]
    face = np.random.default_rng(0).normal(size=(468, 2)).astype(np.float32)
    np.save(tmp_path / "face_a.npy", face)
    np.save(tmp_path / "face_b.npy", face + 1)
    kw = dict(options=quiet(GRID, mean_face=tmp_path / "face_a.npy"), unit="word", vocabulary=("bin", "lay"),
              process=Faulty(), selection={"split_scheme": "speaker-dependent", "speakers": ["s1"]})
    out = tmp_path / "out"
    prepare(clips[:3], "grid", out, **kw)
    return clips, out, kw, tmp_path


def _with(kw: dict, **change) -> dict:
    """prepare()'s keywords ``kw`` changed: PrepOptions fields in its options, the others as they are."""
    settings = {k: change.pop(k) for k in [f.name for f in fields(PrepOptions)] if k in change}
    return {**kw, **change, "options": replace(kw["options"], **settings)}


@pytest.mark.parametrize("change, message", [
    ({"selection": {"split_scheme": "speaker-independent", "speakers": ["s1"]}},
     "selection.split_scheme: 'speaker-dependent' (this folder) vs 'speaker-independent' (this run)"),
    ({"selection": {"split_scheme": "speaker-dependent", "speakers": ["s1", "s2"]}},
     "selection.speakers: ['s1'] (this folder) vs ['s1', 's2'] (this run)"),
    ({"vocabulary": ("bin", "blue")}, "vocabulary[1]: 'lay' (this folder) vs 'blue' (this run)"),
    ({"preset": with_overrides(GRID, video_crf=23)}, "preset.video_crf: 18 (this folder) vs 23 (this run)"),
    ({"seed": 3}, "seed: 0 (this folder) vs 3 (this run)"),
    ({"word_context": 3}, "word context: 0 (this folder) vs 3 (this run)"),
])
def test_resume_refuses_other_settings_naming_the_difference(grid_like, change, message):
    clips, out, kw, _ = grid_like
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    with pytest.raises(ValueError) as e:
        prepare(clips, "grid", out, **_with(kw, **change))
    assert message in str(e.value) and "\n" not in str(e.value), str(e.value)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir() if not p.name.startswith(".")} == \
           {k: v for k, v in before.items() if not k.startswith(".")}  # nothing in the folder changed
    report = prepare(clips, "grid", out, **kw)  # the same settings resume
    assert report.clips_skipped == 3 and report.clips_written == 3


def test_resume_refuses_another_mean_face(grid_like):
    clips, out, kw, tmp = grid_like
    saved = np.load(out / "mean_face.npy")
    with pytest.raises(ValueError, match=r"mean face sha256 \w+ \(this folder\) vs \w+ \(this run\); pass "
                                         rf"--mean-face {out / 'mean_face.npy'}"):
        prepare(clips, "grid", out, **_with(kw, mean_face=tmp / "face_b.npy"))
    np.testing.assert_array_equal(np.load(out / "mean_face.npy"), saved)  # not replaced
    np.save(out / "mean_face.npy", np.load(tmp / "face_b.npy"))  # swapped behind avprep's back
    with pytest.raises(ValueError, match="mean face sha256"):
        prepare(clips, "grid", out, **_with(kw, mean_face=None))
    np.save(out / "mean_face.npy", saved)
    assert prepare(clips, "grid", out, **_with(kw, mean_face=None)).clips_written == 3  # saved face: resumes
    run = json.loads((out / "run.json").read_text())
    assert run["mean_face_sha256"] == face_hash(saved)


@pytest.mark.slow
def test_a_limit_runs_mean_face_is_not_reused_by_a_full_run(grid_root, tmp_path):
    from avprep.corpora import grid

    clips = grid.find_clips(grid_root, ["s1"])[:5]
    prepare(clips[:2], "grid", tmp_path, quiet(GRID, jobs=2, limit=2), process=Faulty())  # a face from 2 clips
    face = np.load(tmp_path / "mean_face.npy")
    # Its own resume is fine.
    assert prepare(clips[:2], "grid", tmp_path, quiet(GRID, jobs=2, limit=2), process=Faulty()).clips_skipped == 2
    with pytest.raises(ValueError, match=r"was estimated from the clips of an earlier run with --limit 2, not from "
                                         r"this run's 5 clips: pass --mean-face"):
        prepare(clips, "grid", tmp_path, quiet(GRID, jobs=2), process=Faulty())
    np.testing.assert_array_equal(np.load(tmp_path / "mean_face.npy"), face)
    # Chosen explicitly, the same face extends the folder.
    chosen = quiet(GRID, jobs=2, mean_face=tmp_path / "mean_face.npy")
    report = prepare(clips, "grid", tmp_path, chosen, process=Faulty())
    assert report.clips_written == 3


def test_cli_refusal_is_one_line(grid_root, tmp_path):
    from avprep.corpora import grid

    clips = grid.find_clips(grid_root, ["s1"])[:4]
    np.save(tmp_path / "mf.npy", np.random.default_rng(0).normal(size=(468, 2)).astype(np.float32))
    prepare(clips, "grid", tmp_path / "out", quiet(GRID, mean_face=tmp_path / "mf.npy", limit=4), process=Faulty(),
            selection={"split_scheme": "speaker-dependent", "speakers": ["s1"]})
    cmd = [sys.executable, "-m", "avprep", "grid", "--root", str(grid_root), "--speakers", "s1", "--limit", "4",
           "--out", str(tmp_path / "out"), "--split-scheme", "speaker-independent"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "split_scheme: 'speaker-dependent' (this folder) vs 'speaker-independent'" in lines[0]


# --- 9. a terminal a person can read ------------------------------------------------------------------------------

@pytest.mark.slow
def test_the_terminal_shows_the_bar_the_summary_and_one_line_per_kind_of_rejection(grid_root, tmp_path):
    from avprep.corpora import grid

    root = tmp_path / "grid" / "s1" / "video"
    root.mkdir(parents=True)
    real = {c.utterance: c for c in grid.find_clips(grid_root, ["s1"])}
    for utt in ("bbaf2n", "bbaf3s"):
        (root / f"{utt}.mpg").symlink_to(real[utt].video)
    for utt in ("bbaf4p", "bbaf5a", "bbal6n"):
        (root / f"{utt}.mpg").write_bytes(b"\x00\x00\x01\xba not really a video" * 50)  # three alike
    frames, _, _ = read_clip(real["bbal7s"].video)
    write_clip(root / "bbal7s.mkv", frames, 25, None)  # and one of another kind: no audio stream
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "avprep", "grid", "--root", str(tmp_path / "grid"), "--out", str(out),
           "--jobs", "2"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "100"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = (proc.stdout + proc.stderr).splitlines()
    failures = read_jsonl(out / "failures.jsonl")[0]
    kinds = Counter(r["reason"] for r in failures)
    assert len(failures) == 4 and sorted(kinds.values()) == [1, 3], kinds
    for reason, n in kinds.items():  # one line for each kind, with its count
        assert sum(f"rejected: {reason}" in line for line in lines) == 1
        assert any(f"rejected: {reason}" in line and f" {n} " in line for line in lines)
    assert not any(r["key"] in line for r in failures for line in lines)  # no line per rejected clip
    assert sum(json.loads(p.read_text())["samples"] for p in [out / "index.json"]) == 2
    noise = ("W0000", "I0000", "INFO: Created TensorFlow", "absl::InitializeLog", "inference_feedback_manager")
    assert not any(n in line for line in lines for n in noise)
    assert len(lines) < 40, "\n".join(lines)  # bar, mean-face line, summary table
    log = (out / "avprep-workers.log").read_text()
    assert "TensorFlow Lite" in log  # the detector's C++ logging went to the worker log, not away unseen
    # --verbose shows each rejection as it happens.
    proc = subprocess.run(cmd + ["--retry-failed", "--verbose"], capture_output=True, text=True, timeout=300,
                          cwd=REPO, env=env)
    assert proc.returncode == 0
    shown = [line for line in (proc.stdout + proc.stderr).splitlines() if "skip" in line]
    assert len(shown) == 4 and all(any(r in line for r in kinds) for line in shown), proc.stderr


@pytest.mark.slow
def test_two_real_partitions_at_the_same_time_through_the_cli(grid_root, tmp_path):
    """Two `avprep grid` processes, one per partition, into one folder at once; each estimates the mean face."""
    from avprep.inspect import check_shards

    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "avprep", "grid", "--root", str(grid_root), "--speakers", "s1", "--limit", "6",
           "--out", str(out), "--num-partitions", "2", "--shard-clips", "1", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen(cmd + ["--partition", str(i)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    keys = [raw["__key__"] for raw in _samples(out)]
    from avprep.corpora import grid

    assert sorted(keys) == sorted(c.key for c in grid.find_clips(grid_root, ["s1"])[:6])  # each exactly once
    assert json.loads((out / "index.json").read_text())["clips"] == 6  # the last to finish saw both ledgers
    assert check_shards(out).errors == []
    run = json.loads((out / "run.json").read_text())
    assert run["partitions"] == 2 and run["mean_face_sha256"] == face_hash(np.load(out / "mean_face.npy"))
