"""Issue 22 on a real cluster: transient failures heal on a resume, the memory cap follows the scheduler's cgroup,
a crashing or hanging clip costs that clip on Dask and Ray too, partitions started together agree on one mean
face, one bad transcript never ends a corpus run, and hostile archives are refused before they inflate."""

from __future__ import annotations

import errno
import io
import json
import multiprocessing as mp
import os
import tracemalloc
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from avbridge.shardlist import read_jsonl
from avprep.options import PrepOptions
from avprep.prepare import face_hash, prepare
from avprep.presets import get_preset
from avprep.shards import shard_paths
from avprep.types import ClipSpec
from fakeclips import CrashOnce, Faulty, face_of_this_process, steady_result
from test_prep_reproducible import _clips, tar_hashes

QUIET = Console(file=open(os.devnull, "w"))
LRW = get_preset("bridging-lrw")
GRID = get_preset("bridging-grid")


def _options(preset=LRW, **settings) -> PrepOptions:
    return PrepOptions(preset=preset, console=QUIET, progress=False, **settings)


# --- 3. transient failures heal -------------------------------------------------------------------------------------

def test_a_resume_retries_transient_failures_once_and_counts_the_healed(tmp_path):
    clips = _clips(12)
    flaky, refused, doomed = clips[3].key, clips[5].key, clips[8].key
    process = CrashOnce(str(tmp_path), crash=(flaky,), refuse=(refused,), always=(doomed,))
    out = tmp_path / "out"
    first = prepare(clips, "lrw", out, _options(jobs=2, shard_clips=4), process=process)
    assert first.rejected == Counter({"worker crashed": 2, "no face": 1})
    rows = read_jsonl(out / "failures.jsonl")[0]
    assert {r["key"]: (r["transient"], r["attempt"]) for r in rows} == {flaky: (True, 1), refused: (False, 1),
                                                                        doomed: (True, 1)}
    second = prepare(clips, "lrw", out, _options(jobs=2, shard_clips=4), process=process)
    assert (second.clips_retried, second.clips_healed, second.clips_written) == (2, 1, 1)  # flaky healed
    assert second.rejected == Counter({"worker crashed": 1})  # doomed crashed again; "no face" not retried
    table = Console(width=100, record=True, file=io.StringIO())
    table.print(second.table())
    text = table.export_text()
    assert "retried (transient failures)" in text and "2, 1 healed" in text
    index = json.loads((out / "index.json").read_text())
    assert (index["healed"], index["rejected"], index["rejected_by_reason"]) == (1, 2, {"no face": 1,
                                                                                       "worker crashed": 1})
    third = prepare(clips, "lrw", out, _options(jobs=2, shard_clips=4), process=process)
    assert third.clips_skipped == 12 and third.clips_retried == 0  # doomed has had its retry
    # --retry-failed still means all of them, the permanent ones too.
    again = prepare(clips, "lrw", out, _options(jobs=2, retry_failed=True), process=process)
    assert again.clips_retried == 0 and sum(again.rejected.values()) == 2 and again.clips_skipped == 10


def test_transient_reasons_and_an_io_error_from_storage(monkeypatch):
    import av

    from avprep.pipeline import Options, process_clip
    from avprep.types import is_transient

    assert all(is_transient(r) for r in ("worker crashed", "timeout", "out of memory", "I/O error"))
    assert not any(is_transient(r) for r in ("no face", "no audio stream", "truncated video", "audio/video length"))

    def eio(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error", "/nfs/lrs3/clip.mp4")

    monkeypatch.setattr(av, "open", eio)
    spec = ClipSpec(key="k", corpus="lrw", speaker="s", utterance="u", split="train", video=Path("/nfs/clip.mp4"))
    result = process_clip(spec, Options(LRW))
    assert result.rejection.reason == "I/O error" and "Input/output error" in result.rejection.detail

    def enoent(*args, **kwargs):
        raise FileNotFoundError(errno.ENOENT, "No such file", "/x.mp4")

    monkeypatch.setattr(av, "open", enoent)
    assert process_clip(spec, Options(LRW)).rejection.reason == "unreadable video"  # not a passing failure


# --- 4. memory as the scheduler sees it -----------------------------------------------------------------------------

def test_the_worker_memory_cap_follows_the_cgroup_limit(tmp_path, monkeypatch):
    from avprep import workers

    v2 = tmp_path / "v2"
    (v2 / "slurm" / "job_7" / "step_0").mkdir(parents=True)
    (v2 / "memory.max").write_text("max\n")
    (v2 / "slurm" / "job_7" / "memory.max").write_text(str(8 * 2**30))
    (v2 / "slurm" / "job_7" / "step_0" / "memory.max").write_text("max\n")
    proc = tmp_path / "cgroup-v2"
    proc.write_text("0::/slurm/job_7/step_0\n")
    assert workers.cgroup_memory_limit(v2, proc) == 8 * 2**30  # the job's limit, above the step
    v1 = tmp_path / "v1"
    (v1 / "memory" / "kubepods" / "pod1").mkdir(parents=True)
    (v1 / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # none
    (v1 / "memory" / "kubepods" / "pod1" / "memory.limit_in_bytes").write_text(str(6 * 2**30))
    (tmp_path / "cgroup-v1").write_text("12:cpu,cpuacct:/kubepods/pod1\n4:memory:/kubepods/pod1\n")
    assert workers.cgroup_memory_limit(v1, tmp_path / "cgroup-v1") == 6 * 2**30
    (tmp_path / "cgroup-none").write_text("0::/\n")
    assert workers.cgroup_memory_limit(v2, tmp_path / "cgroup-none") is None  # "max": no limit
    # In a container the cgroup is often mounted at its root: the root's own file counts.
    (tmp_path / "pod").mkdir()
    (tmp_path / "pod" / "memory.max").write_text(str(4 * 2**30))
    assert workers.cgroup_memory_limit(tmp_path / "pod", tmp_path / "cgroup-v2") == 4 * 2**30
    # The default cap: 80% of the cgroup's limit over the jobs, not of the host's RAM.
    monkeypatch.setattr(workers, "cgroup_memory_limit", lambda: 8 * 2**30)
    assert workers.default_max_rss(4) == int(0.8 * 8 * 2**30 / 4)
    monkeypatch.setattr(workers, "cgroup_memory_limit", lambda: None)
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert workers.default_max_rss(2) == max(2**30, int(0.8 * ram / 2))


# --- 5. crash isolation on Dask and Ray -----------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("backend", ["dask", "ray"])
def test_a_segfaulting_and_a_hanging_clip_cost_one_clip_each_on_a_cluster(backend, tmp_path, monkeypatch):
    pytest.importorskip({"dask": "distributed", "ray": "ray"}[backend], reason="pip install 'avbridge[cluster]'")
    # The cluster's workers import the per-clip function (tests/fakeclips.py) by name, as they would a user's.
    tests = Path(__file__).resolve().parent
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tests), str(tests.parent), os.environ.get("PYTHONPATH", "")]))
    clips = _clips(10)
    crash, hang = clips[2].key, clips[6].key
    faulty = Faulty(crash=(crash,), hang=(hang,), then=steady_result)
    local = prepare(clips, "lrw", tmp_path / "local", _options(jobs=2, clip_timeout=4, shard_clips=3),
                    process=faulty)
    report = prepare(clips, "lrw", tmp_path / backend, _options(jobs=2, clip_timeout=4, shard_clips=3,
                                                                backend=backend), process=faulty)
    failures = {r["key"]: r["reason"] for r in read_jsonl(tmp_path / backend / "failures.jsonl")[0]}
    assert failures == {crash: "worker crashed", hang: "timeout"}
    assert report.clips_written == local.clips_written == 8
    assert tar_hashes(tmp_path / backend) == tar_hashes(tmp_path / "local")  # the same bytes, in the same order


# --- 7. partitions started together agree on one mean face ----------------------------------------------------------

def _partition_with_its_own_face(out: str, index: int, barrier) -> None:
    clips = [ClipSpec(key=f"s1_u{i:03d}", corpus="grid", speaker="s1", utterance=f"u{i}", split="train",
                      video=Path("/nonexistent.mpg")) for i in range(20)]
    import avprep.prepare

    avprep.prepare._estimate = face_of_this_process  # (in this partition's own process)
    barrier.wait()
    prepare(clips, "grid", Path(out), _options(GRID, partition=index, num_partitions=2), process=steady_result)


def test_partitions_started_together_agree_on_one_mean_face(tmp_path):
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_partition_with_its_own_face, args=(str(tmp_path), i, barrier)) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
    # Each would estimate another face here; the first estimates under the folder's lock, the other waits and
    # uses it (before: the second renamed its own over it, and its run was refused as another mean face).
    assert [p.exitcode for p in procs] == [0, 0]
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["mean_face_sha256"] == face_hash(np.load(tmp_path / "mean_face.npy"))
    assert json.loads((tmp_path / "index.json").read_text())["clips"] == 20


# --- 8. hostile archives --------------------------------------------------------------------------------------------

def _bzip2_bomb(megabytes: int) -> bytes:
    """An .npz whose member is bzip2 of ``megabytes`` MiB of zeros, declaring 200 bytes unpacked (so that the
    ratio check passes)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_BZIP2) as z:
        z.writestr("a.npy", b"\0" * (megabytes * 2**20))
    data = bytearray(buf.getvalue())
    size = (megabytes * 2**20).to_bytes(4, "little")
    small = (200).to_bytes(4, "little")
    # The uncompressed size in the local header (offset 22) and the central directory entry (offset 24).
    data[22:26] = small
    central = data.rindex(b"PK\x01\x02")
    assert data[central + 24 : central + 28] == size
    data[central + 24 : central + 28] = small
    return bytes(data)


def test_an_npz_member_compressed_with_bzip2_is_refused_before_it_inflates():
    from avbridge import bounds

    bomb = _bzip2_bomb(64)
    assert len(bomb) < 2**20 // 16  # 64 MiB of zeros in under 64 KiB (under 1 KiB here)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="compressed with method 12 .only stored or deflated"):
            bounds.npz(bomb, {"a": np.int8})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20, peak  # refused before inflating (before: the 64 MiB, then the error)
    from avbridge.sample import decode_field

    with pytest.raises(ValueError, match="method 12"):
        decode_field("flow.npz", bomb)


def test_a_download_without_a_checksum_caps_what_it_unpacks(tmp_path):
    from avprep import download as dl

    bomb = tmp_path / "s1.mpg_vcd.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("s1/bbaf2n.mpg", b"\0" * (8 * 2**20))  # 8 MiB from ~8 KiB: 1000x
    with pytest.raises(dl.DownloadError, match=r"declare 8388608 bytes unpacked, over the \d+ \(10x its size\)"):
        dl.unpack(bomb, tmp_path / "out", "s1", max_bytes=dl.MAX_UNPACK_RATIO * bomb.stat().st_size)
    assert not (tmp_path / "out").exists()  # nothing written
    bz = tmp_path / "s2.zip"
    with zipfile.ZipFile(bz, "w", compression=zipfile.ZIP_BZIP2) as z:
        z.writestr("s2/x.mpg", b"x" * 100)
    with pytest.raises(dl.DownloadError, match="other than deflate"):
        dl.unpack(bz, tmp_path / "out", "s2", max_bytes=10**9)
    # With a checksum (no cap) the same archive unpacks.
    assert dl.unpack(bomb, tmp_path / "out", "s1").joinpath("s1", "bbaf2n.mpg").stat().st_size == 8 * 2**20


# --- 10. one bad clip never ends a corpus run -----------------------------------------------------------------------

def test_clips_the_listing_rejects_are_counted_in_their_place(tmp_path):
    from dataclasses import replace

    clips = _clips(10)
    clips[4] = replace(clips[4], problem=("no transcript", "00001.mp4 has no 00001.txt beside it"))
    report = prepare(clips, "lrw", tmp_path, _options(jobs=2), process=steady_result)
    assert report.clips_written == 9 and report.rejected == Counter({"no transcript": 1})
    assert [r["key"] for r in read_jsonl(tmp_path / "failures.jsonl")[0]] == [clips[4].key]
    assert clips[4].key not in {p.name for p in shard_paths(tmp_path)}
