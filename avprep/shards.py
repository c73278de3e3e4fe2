"""Write samples to WebDataset shards that survive a killed run, and read them back.

    with ShardSink(out_dir, run_config) as sink:  # closes on success (ledger, index.json), aborts on an exception
        for result in results:                    # ClipResults: a clip's samples, or its rejection
            sink.add(result)

Guarantees, for an output folder:
- a shard is written as ``NAME.tar.tmp`` and renamed to ``NAME.tar`` only when complete; then one line naming
  its clips and samples, its sample count and the SHA-256 of its bytes (hashed as they are written) is appended to
  ``ledger.jsonl``. The ledger is the truth: a shard not in it does not exist (a ``.tar`` no ledger names is
  reported by ``avprep inspect --verify``, never read).
- all samples of one source clip go to the same shard, so a clip is either wholly in a finished shard or not at all;
- a rejected clip gets one line (key, reason, detail, whether the reason is transient, the attempt) in
  ``failures.jsonl`` as soon as it is rejected;
- a re-run skips clips in the ledger or the failure log (but retries a clip whose reason was transient, up to
  ``retry_transient`` times), deletes leftover ``.tmp`` files and numbers new shards after the existing ones;
  results are added in the runner's hand-out order, so a killed and resumed run ends with exactly the uninterrupted
  run's shard files, byte for byte;
- ``index.json`` (counts, durations, bytes per field, the preset, each shard's SHA-256 and sample count, the library
  versions each shard was made with) is rebuilt from the ledger at the end of each run; it holds no time stamp, so
  the same shards give the same index bytes.

Several partitions may write into one folder at the same time (one process each): every file a partition writes
carries its tag, ``run.json`` is created once (atomically; the others check theirs against it), ``index.json`` is
written under a temporary name of its own and renamed, and a lock file per partition refuses a second process on
the same partition. A line cut short by a kill is skipped by readers, and the next line starts on a fresh line.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import json
import os
import tarfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from avbridge.shardlist import ledger_rows, read_jsonl, shard_names

# (re-exported: callers import them from here)
from avprep.index import INDEX, RUN, transient_row, versions_id, write_atomic, write_index  # noqa: F401
from avprep.runcheck import RUN_KEYS, check_same_run  # noqa: F401
from avprep.types import ClipResult, Rejection, Sample, is_transient


@dataclass(frozen=True)
class Partition:
    """Which slice of a corpus this run writes: clips are assigned by a hash of their key, so the assignment is the
    same on every machine, whatever order or subset of clips each one lists. Partition files carry its index, so
    all partitions can write into one shared folder."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"partition {self.index} does not exist among {self.count} (0 .. {self.count - 1})")

    def owns(self, key: str) -> bool:
        return self.count == 1 or int(hashlib.sha1(key.encode()).hexdigest(), 16) % self.count == self.index

    @property
    def tag(self) -> str:
        return "" if self.count == 1 else f"-p{self.index:03d}of{self.count:03d}"

    @property
    def ledger(self) -> str:
        return f"ledger{self.tag}.jsonl"

    @property
    def failures(self) -> str:
        return f"failures{self.tag}.jsonl"


def _all_rows(out: Path, stem: str) -> list[dict]:
    """Rows of every partition's ledger (stem 'ledger') or failure log (stem 'failures') in a folder."""
    return ledger_rows(out, stem)[0]


def _read_jsonl(path: Path) -> list[dict]:
    return read_jsonl(path)[0]  # a line cut short by a kill is skipped: the clip it named is simply redone


def _append_jsonl(path: Path, row: dict) -> None:
    line = (json.dumps(row, sort_keys=True) + "\n").encode()
    with path.open("ab+") as f:
        f.seek(0, os.SEEK_END)
        if f.tell():
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                line = b"\n" + line  # the last line was torn by a kill: ours must not be glued onto it
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def create_once(path: Path, text: str) -> bool:
    """Create ``path`` with ``text`` unless it exists, atomically (a hard link does not replace): True if created."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(text)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink()


class PartitionLock:
    """Held by the one process writing a partition of a folder; a second one is refused. The kernel drops the lock
    when its process ends, however it ends, so a killed run never leaves a stale lock behind."""

    def __init__(self, out_dir: Path, partition: Partition):
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.path = out / f".avprep{partition.tag}.lock"
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.pread(self._fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(self._fd)
            self._fd = -1
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            which = "this folder" if partition.count == 1 else f"partition {partition.index} of {partition.count}"
            raise ValueError(f"another avprep process (pid {holder}) is writing {which} of {out}: wait for it "
                             "to finish (or stop it) before running this partition again") from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, str(os.getpid()).encode(), 0)

    def release(self) -> None:
        if self._fd >= 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = -1


class _HashingFile:
    """A file written front to back (a tar being written) that hashes its bytes on the way: the shard's SHA-256
    costs no second read."""

    def __init__(self, path: Path):
        self.file = path.open("wb")
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.file.write(data)

    def tell(self) -> int:
        return self.size

    def close(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()


@dataclass
class _OpenShard:
    name: str
    split: str
    index: int
    tar: tarfile.TarFile
    path: Path
    file: _HashingFile
    clips: list[str] = field(default_factory=list)
    samples: list[str] = field(default_factory=list)
    bytes: int = 0
    seconds: float = 0.0
    field_bytes: Counter = field(default_factory=Counter)


@dataclass(frozen=True)
class ResumeRules:
    """What a run into a folder that holds earlier runs may do: ``retry_failed`` every rejected clip again (the old
    failure log kept beside the new one); else ``retry_transient`` times a clip rejected for a transient reason;
    ``allow_version_change``: add samples made with other library versions than the folder's."""

    retry_failed: bool = False
    retry_transient: int = 1
    allow_version_change: bool = False


class ShardSink:
    """Collects clip results into per-split shards of bounded size. Use it as a context manager (``with ShardSink(...)
    as sink``: closed when the block ends, aborted when it raises), or end it with close() (abort() on an error).
    After close(), ``index`` holds the folder's index (what index.json says)."""

    def __init__(self, out_dir: Path, run_config: dict, max_bytes: int = 100 * 2**20, max_clips: int = 250,
                 partition: Partition = Partition(), lock: PartitionLock | None = None,
                 resume: ResumeRules | None = None):
        resume = resume or ResumeRules()
        self.out = Path(out_dir)
        self.versions = run_config.get("versions")
        self.allow_version_change = resume.allow_version_change
        retry_transient = resume.retry_transient
        self.partition = partition
        self.ledger_path, self.failures_path = self.out / partition.ledger, self.out / partition.failures
        self.out.mkdir(parents=True, exist_ok=True)
        self.max_bytes, self.max_clips = max_bytes, max_clips
        # The lock first: the leftovers deleted below would be a running process's open shards otherwise.
        self._own_lock = lock is None
        self.lock = lock or PartitionLock(self.out, partition)
        try:
            self._check_run_config(run_config)
        except BaseException:
            self._release()
            raise
        for leftover in self.out.glob(f"*{partition.tag}-*.tar.tmp" if partition.tag else "*.tar.tmp"):
            leftover.unlink()  # a killed run's unfinished shard: its clips are not in the ledger, so they are redone
        if resume.retry_failed and self.failures_path.exists():
            # Earlier rejections are kept beside the log (not read again), and clips that fail again are logged again.
            self.failures_path.rename(self.out / f"{self.failures_path.name}.{time.strftime('%Y%m%d-%H%M%S')}.old")
        ledger = _read_jsonl(self.ledger_path)
        self.done_clips = {c for row in ledger for c in row["clips"]}
        # A clip whose last rejection was transient (its worker died, hung or ran out of memory; I/O failed) is tried
        # again, until it has been tried 1 + retry_transient times; any other rejection is final.
        self.attempts: Counter = Counter()
        last: dict[str, dict] = {}
        for row in _read_jsonl(self.failures_path):
            self.attempts[row["key"]] += 1
            last[row["key"]] = row
        self.retrying = {k for k, row in last.items() if k not in self.done_clips and transient_row(row)
                         and self.attempts[k] <= retry_transient}
        self.failed_clips = set(last) - self.retrying
        self._next_index: dict[str, int] = defaultdict(int)
        for row in ledger:
            self._next_index[row["split"]] = max(self._next_index[row["split"]], row["index"] + 1)
        self._open: dict[str, _OpenShard] = {}
        self.index: dict = {}

    def __enter__(self) -> ShardSink:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()  # (the exception goes on)
            return
        try:
            self.close()
        except BaseException:
            self.abort()  # a shard that could not be finished is dropped like an open one
            raise

    def _check_run_config(self, config: dict) -> None:
        path = self.out / RUN
        # Created once, atomically: of partitions starting together, one writes it and the others check against it.
        if not create_once(path, json.dumps(config, indent=2, sort_keys=True)):
            check_same_run(json.loads(path.read_text()), config, self.out,
                           skip=("versions",) if self.allow_version_change else ())

    def _release(self) -> None:
        if self._own_lock:
            self.lock.release()

    def is_done(self, key: str) -> bool:
        return key in self.done_clips or key in self.failed_clips

    def add(self, result: ClipResult) -> None:
        if result.rejection is not None:
            self.reject(result.rejection)
            return
        if not result.samples:
            return
        shard = self._shard_for(result.samples[0].split)
        for sample in result.samples:
            self._write(shard, sample)
        shard.clips.append(result.key)
        if shard.bytes >= self.max_bytes or len(shard.clips) >= self.max_clips:
            self._finish(shard)

    def reject(self, rejection: Rejection) -> None:
        self.attempts[rejection.key] += 1
        row = {"key": rejection.key, "split": rejection.split, "reason": rejection.reason, "detail": rejection.detail,
               "transient": is_transient(rejection.reason), "attempt": self.attempts[rejection.key]}
        if rejection.trace:
            row["trace"] = rejection.trace
        _append_jsonl(self.failures_path, row)
        self.failed_clips.add(rejection.key)
        self.retrying.discard(rejection.key)

    def _shard_for(self, split: str) -> _OpenShard:
        if split not in self._open:
            index = self._next_index[split]
            self._next_index[split] += 1
            name = f"{split}{self.partition.tag}-{index:06d}.tar"
            path = self.out / (name + ".tmp")
            file = _HashingFile(path)
            self._open[split] = _OpenShard(name=name, split=split, index=index, path=path, file=file,
                                           tar=tarfile.open(fileobj=file, mode="w"))
        return self._open[split]

    def _write(self, shard: _OpenShard, sample: Sample) -> None:
        for name, data in sample.fields.items():
            info = tarfile.TarInfo(f"{sample.key}.{name}")
            info.size, info.mtime, info.mode = len(data), 0, 0o444  # fixed metadata: same input, same bytes
            shard.tar.addfile(info, io.BytesIO(data))
            shard.field_bytes[name] += len(data)
            shard.bytes += len(data)
        shard.samples.append(sample.key)
        shard.seconds += sample.seconds

    def _finish(self, shard: _OpenShard) -> None:
        shard.tar.close()
        shard.file.close()  # (flushed and fsynced)
        shard.path.rename(self.out / shard.name)
        row = {
            "shard": shard.name, "split": shard.split, "index": shard.index,
            "clips": shard.clips, "samples": shard.samples, "bytes": shard.file.size,
            "seconds": round(shard.seconds, 3), "field_bytes": dict(shard.field_bytes),
            "num_samples": len(shard.samples), "sha256": shard.file.sha.hexdigest(),
        }
        if self.versions is not None:
            row["versions"] = self.versions
        _append_jsonl(self.ledger_path, row)
        self.done_clips.update(shard.clips)
        del self._open[shard.split]

    def close(self) -> dict:
        for shard in list(self._open.values()):
            if shard.clips:
                self._finish(shard)
            else:
                shard.tar.close()
                shard.file.close()
                shard.path.unlink()
                del self._open[shard.split]
        try:
            self.index = write_index(self.out)
            return self.index
        finally:
            self._release()

    def abort(self) -> None:
        """Interrupted: keep finished shards, drop the open ones (their clips are redone on the next run)."""
        for shard in self._open.values():
            shard.tar.close()
            shard.file.file.close()
            shard.path.unlink(missing_ok=True)
        self._open.clear()
        self._release()


def shard_paths(target: Path) -> list[Path]:
    """The finished shards of an output folder (from its ledger), or the given .tar files."""
    target = Path(target)
    if target.is_dir():
        if _all_rows(target, "ledger"):
            return [target / name for name in shard_names(target)]
        return sorted(target.glob("*.tar"))  # shards without their ledger: every .tar there (inspect finds twins)
    return [target]


def iter_raw_samples(path: Path) -> Iterator[dict]:
    """Raw samples of one shard, ``{"__key__": key, "<field>": bytes, ...}``, grouped by key as webdataset does.

    A field that appears twice in a row of one key's members raises ValueError, as webdataset's grouping does at
    training time: keeping either copy would hide which one a loader sees."""
    current: dict | None = None
    with tarfile.open(path, "r") as tar:
        for member in tar:
            if not member.isfile():
                continue
            key, _, field_name = member.name.partition(".")
            if current is None or current["__key__"] != key:
                if current is not None:
                    yield current
                current = {"__key__": key, "__shard__": path.name}
            if field_name in current:
                raise ValueError(f"{path.name}: sample {key} holds {field_name!r} twice")
            current[field_name] = tar.extractfile(member).read()
    if current is not None:
        yield current
