"""Issue 22: the same corpus and settings give the same shard files and index, byte for byte, whatever --jobs or
worker timing and after a kill and a resume; every shard carries a checksum that avprep and avtrain check; a
resume records and compares the library versions. Fast tests use a fake per-clip function in real worker processes;
the one marked slow runs real GRID clips (mp4 crops) through the real pipeline."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from avbridge.shardlist import read_jsonl
from avprep.cli import app
from avprep.options import PrepOptions
from avprep.prepare import prepare
from avprep.presets import get_preset
from avprep.shards import iter_raw_samples, shard_paths
from avprep.types import ClipSpec
from avprep.workers import WorkerPool
from fakeclips import ordered_item, steady_result
from killing import kill_mid_shard

QUIET = Console(file=open(os.devnull, "w"))
LRW = get_preset("bridging-lrw")
GRID = get_preset("bridging-grid")
REPO = Path(__file__).resolve().parents[1]


def _clips(n: int) -> list[ClipSpec]:
    video = Path("/nonexistent.mp4")
    return [ClipSpec(key=f"w{i % 7:03d}_{['train', 'val'][i % 5 == 0]}_{i:05d}", corpus="lrw", speaker="unknown",
                     utterance=str(i), split=["train", "val"][i % 5 == 0], video=video, label=i % 7)
            for i in range(n)]


def _options(**settings) -> PrepOptions:
    return PrepOptions(preset=LRW, console=QUIET, progress=False, **settings)


def tar_hashes(out: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(out).glob("*.tar"))}


def _folder_bytes(out: Path) -> dict[str, str]:
    """sha256 of every shard and of index.json (what must be byte-identical)."""
    return {**tar_hashes(out), "index.json": hashlib.sha256((Path(out) / "index.json").read_bytes()).hexdigest()}


# --- 1. in hand-out order ------------------------------------------------------------------------------------------

def test_ordered_map_yields_in_hand_out_order_through_a_bounded_window():
    pool = WorkerPool(ordered_item, jobs=2, timeout=30)
    outcomes = list(pool.map(range(24), ordered=True, window=4))
    assert [o.index for o in outcomes] == list(range(24))
    runs = {o.value[0]: o.value[1:] for o in outcomes}
    # Item i is handed out only once every item before i - window has finished: the parent never holds more than
    # `window` results back.
    for i in range(4, 24):
        assert runs[i][0] >= max(end for _, end in (runs[j] for j in range(i - 4 + 1))) - 0.005, i
    # Unordered (as before), the same items come back as they finish: out of order with these naps.
    loose = [o.index for o in WorkerPool(ordered_item, jobs=2, timeout=30).map(range(24))]
    assert sorted(loose) == list(range(24)) and loose != list(range(24))


def test_jobs_1_and_2_write_byte_identical_shards_and_index(tmp_path):
    clips = _clips(60)
    one = prepare(clips, "lrw", tmp_path / "one", _options(jobs=1, shard_clips=7), process=steady_result)
    two = prepare(clips, "lrw", tmp_path / "two", _options(jobs=2, shard_clips=7), process=steady_result)
    assert one.clips_written == two.clips_written == 60
    a, b = _folder_bytes(tmp_path / "one"), _folder_bytes(tmp_path / "two")
    assert len(a) == 10 and a == b  # 7 train and 2 val shards and the index, every byte
    assert (tmp_path / "one" / "ledger.jsonl").read_bytes() == (tmp_path / "two" / "ledger.jsonl").read_bytes()


_KILLED_RUN = """
import os, sys
sys.path.insert(0, {tests!r})
from rich.console import Console
from avprep.options import PrepOptions
from avprep.prepare import prepare
from avprep.presets import get_preset
from fakeclips import steady_result
from test_prep_reproducible import _clips
if __name__ == "__main__":
    prepare(_clips(240), "lrw", {out!r}, PrepOptions(preset=get_preset("bridging-lrw"), jobs=2, shard_clips=4,
            progress=False, console=Console(file=open(os.devnull, "w"))), process=steady_result)
"""


def test_a_killed_and_resumed_run_writes_the_uninterrupted_runs_bytes(tmp_path):
    clips = _clips(240)
    prepare(clips, "lrw", tmp_path / "full", _options(jobs=1, shard_clips=4), process=steady_result)
    killed = tmp_path / "killed"
    script = tmp_path / "run.py"
    script.write_text(_KILLED_RUN.format(tests=str(REPO / "tests"), out=str(killed)))
    proc = subprocess.Popen([sys.executable, str(script)], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    kill_mid_shard(proc, killed, shards=3, timeout=240, poll=0.02)
    done = len(read_jsonl(killed / "ledger.jsonl")[0])
    assert 0 < done < 60, done
    report = prepare(clips, "lrw", killed, _options(jobs=2, shard_clips=4), process=steady_result)
    assert report.clips_skipped > 0
    assert _folder_bytes(killed) == _folder_bytes(tmp_path / "full")


# --- 2. checksums ---------------------------------------------------------------------------------------------------

def test_each_shard_has_its_sha256_and_count_in_ledger_and_index_and_verify_names_a_flipped_byte(tmp_path):
    prepare(_clips(30), "lrw", tmp_path, _options(shard_clips=6), process=steady_result)
    rows = read_jsonl(tmp_path / "ledger.jsonl")[0]
    index = json.loads((tmp_path / "index.json").read_text())
    for row in rows:
        digest = hashlib.sha256((tmp_path / row["shard"]).read_bytes()).hexdigest()
        assert row["sha256"] == digest and row["num_samples"] == len(row["samples"])
        assert index["shard_checksums"][row["shard"]]["sha256"] == digest
        assert index["shard_checksums"][row["shard"]]["samples"] == row["num_samples"]
    assert "created" not in index  # no time stamp: the same shards give the same index bytes
    ok = CliRunner().invoke(app, ["verify", str(tmp_path)], env={"COLUMNS": "100"})
    assert ok.exit_code == 0 and f"{len(rows)}" in ok.output, ok.output

    victim = tmp_path / rows[2]["shard"]
    data = bytearray(victim.read_bytes())
    data[len(data) // 3] ^= 0x01  # one bit, in a member's bytes: the tar still reads
    victim.write_bytes(bytes(data))
    (tmp_path / "train-999999.tar").write_bytes(b"\0" * 1024)  # a .tar no ledger names
    bad = CliRunner().invoke(app, ["verify", str(tmp_path)], env={"COLUMNS": "200"})
    assert bad.exit_code == 1
    assert victim.name in bad.output and "differs from" in bad.output and "train-999999.tar" in bad.output
    assert CliRunner().invoke(app, ["inspect", str(tmp_path), "--verify"], env={"COLUMNS": "200"}).exit_code == 1
    assert "train-999999.tar" not in {p.name for p in shard_paths(tmp_path)}  # never read as data


def test_avtrain_refuses_a_shard_whose_checksum_differs(tmp_path):
    import webdataset as wds

    from avbridge.shardlist import ChecksumError
    from avtrain.data.verify import VerifiedShards, check

    prepare(_clips(12), "lrw", tmp_path, _options(shard_clips=4), process=steady_result)
    urls = [str(p) for p in shard_paths(tmp_path)]
    stage = VerifiedShards(tmp_path, wds.split_by_worker)
    assert [s["url"] for s in stage(iter({"url": u} for u in urls))] == urls  # intact: passed through
    victim = Path(urls[1])
    data = bytearray(victim.read_bytes())
    data[700] ^= 0x20
    victim.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match=rf"{victim.name}: SHA-256 \w+\.\.\. differs"):
        list(VerifiedShards(tmp_path, wds.split_by_worker)(iter({"url": u} for u in urls)))
    assert check(victim, {}) is False  # no checksum recorded (avprep < 0.3): read unchecked
    # The loader stage sits in webdataset's pipeline: reading the damaged shard raises before a sample of it.
    ds = wds.WebDataset(urls, shardshuffle=False, workersplitter=VerifiedShards(tmp_path, wds.split_by_worker),
                        empty_check=False)
    with pytest.raises(ChecksumError):
        list(ds)


# --- 9. versions ----------------------------------------------------------------------------------------------------

def test_a_resume_with_other_library_versions_is_refused_unless_allowed(tmp_path, monkeypatch):
    import avprep.prepare as prep

    clips = _clips(20)
    prepare(clips[:10], "lrw", tmp_path, _options(shard_clips=5), process=steady_result)
    run = json.loads((tmp_path / "run.json").read_text())
    assert set(run["versions"]) >= {"avbridge", "mediapipe", "pyav", "ffmpeg", "x264", "opencv"}
    newer = {**run["versions"], "mediapipe": "0.10.99"}
    monkeypatch.setattr(prep, "library_versions", lambda: newer)
    with pytest.raises(ValueError) as e:
        prepare(clips, "lrw", tmp_path, _options(shard_clips=5), process=steady_result)
    message = str(e.value)
    assert "\n" not in message and "--allow-version-change" in message
    assert "versions.mediapipe: '0.10.21' (this folder) vs '0.10.99' (this run)" in message
    report = prepare(clips, "lrw", tmp_path, _options(shard_clips=5, allow_version_change=True),
                     process=steady_result)
    assert report.clips_written == 10
    index = json.loads((tmp_path / "index.json").read_text())
    made = {v["versions"]["mediapipe"]: v["shards"] for v in index["versions"].values()}
    assert made == {"0.10.21": 3, "0.10.99": 3}  # which shards came from which
    ids = {row["shard"]: row["versions"]["mediapipe"] for row in read_jsonl(tmp_path / "ledger.jsonl")[0]}
    assert sorted(ids.values()) == ["0.10.21"] * 3 + ["0.10.99"] * 3


def test_the_folders_written_before_issue_22_still_resume(grid_root, tmp_path):
    """out/grid-s1-words and out/grid-s1-sentence (run.json without versions, ledger rows without checksums, a
    preset hash that included the description): a resume with the same settings goes on (here: nothing left)."""
    from avprep.recipes import prepare_grid

    for name, unit in (("grid-s1-words", "word"), ("grid-s1-sentence", "sentence")):
        source = REPO / "out" / name
        if not (source / "ledger.jsonl").exists():
            pytest.skip(f"{source} not built (make demo builds it)")
        if "versions" in json.loads((source / "run.json").read_text()):
            pytest.skip(f"{source} was written after issue 22 (make demo on a fresh machine writes such folders)")
        copy = tmp_path / name
        copy.mkdir()
        for f in ("run.json", "ledger.jsonl", "mean_face.npy", "index.json"):  # what a resume reads: no tar
            (copy / f).write_bytes((source / f).read_bytes())
        old = json.loads((copy / "run.json").read_text())
        assert old["preset_hash"] != GRID.hash  # the old hash hashed the description
        report = prepare_grid(grid_root, copy, speakers=["s1"], unit=unit, options=PrepOptions(jobs=2, console=QUIET,
                                                                                                  progress=False))
        assert report.clips_skipped == 1000 and report.clips_written == 0
        index = json.loads((copy / "index.json").read_text())
        assert index["clips"] == 1000 and index["versions"]["unrecorded"]["shards"] == len(index["shard_checksums"])


# --- the whole pipeline: jobs 1 vs 2 vs killed and resumed, mp4 crops --------------------------------------------

def _avprep(root: Path, out: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "avprep", "grid", "--root", str(root), "--speakers", "s1", "--out", str(out),
           "--limit", "8", "--unit", "word", "--shard-clips", "2", "--no-progress", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.mark.slow
def test_real_grid_shards_are_byte_identical_across_jobs_and_a_kill(grid_root, tmp_path):
    from avprep.corpora import grid
    from avprep.reference import estimate_mean_face

    np.save(tmp_path / "mf.npy", estimate_mean_face(grid.find_clips(grid_root, ["s1"])[:4], GRID))
    face = ("--mean-face", str(tmp_path / "mf.npy"))
    one, two, killed = tmp_path / "one", tmp_path / "two", tmp_path / "killed"
    assert _avprep(grid_root, one, *face, "--jobs", "1").wait(timeout=600) == 0
    assert _avprep(grid_root, two, *face, "--jobs", "2").wait(timeout=600) == 0
    proc = _avprep(grid_root, killed, *face, "--jobs", "2")
    kill_mid_shard(proc, killed, shards=1, timeout=300)
    assert 0 < len(read_jsonl(killed / "ledger.jsonl")[0]) < len(read_jsonl(one / "ledger.jsonl")[0])
    assert _avprep(grid_root, killed, *face, "--jobs", "2").wait(timeout=600) == 0
    a = _folder_bytes(one)
    assert any(name.endswith(".tar") for name in a)
    # Every tar (mp4 crops, FLAC, mel, landmarks, JSON) and the index: the same bytes.
    assert _folder_bytes(two) == a and _folder_bytes(killed) == a
    keys = [raw["__key__"] for p in shard_paths(one) for raw in iter_raw_samples(p)]
    assert len(keys) == len(set(keys)) and any(k.endswith("_w0") for k in keys)


_ENCODE_AFTER_MESH = """
import hashlib, sys
from pathlib import Path
import av
import numpy as np
from avbridge.codecs import encode_video, encode_video_segments
from avprep.pipeline import worker_detectors
from avprep.stages.landmarks import detect_landmarks
root = Path(sys.argv[1])
detectors = worker_detectors()
for path in sorted(root.glob("*.mkv"))[:6]:
    with av.open(str(path)) as c:
        rgb = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    detect_landmarks(rgb[:5], detectors=detectors)  # the detector's work between encodes, as in an avprep worker
    mouth = np.ascontiguousarray(rgb[:, 100:212, 120:232, 1])
    data = [encode_video(mouth)] + encode_video_segments(mouth, [(0, 20), (20, 40)])
    print(hashlib.sha256(b"".join(data)).hexdigest())
"""


def test_the_crop_encoder_gives_the_same_bytes_in_every_process(grid_root):
    """Real GRID frames, x264 at the presets' settings, mediapipe's face mesh run between encodes: two processes
    give the same bytes. With x264's macroblock-tree rate control (mbtree=1) they did not (avbridge.codecs)."""
    def run() -> list[str]:
        out = subprocess.run([sys.executable, "-c", _ENCODE_AFTER_MESH, str(grid_root / "s1" / "video")],
                             capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                             timeout=300, check=True)
        return out.stdout.split()

    first = run()
    assert len(first) == 6 and run() == first
