"""Local worker processes in which one clip can crash, hang or run out of memory without stopping the run.

Each worker is a process of its own that takes one item at a time, so the parent always knows which item a worker
was on when it died: a segfault or a kill (exit by a signal) costs that item alone (``worker crashed``), an item
running past ``timeout`` seconds gets its worker killed (``timeout``), a worker whose resident memory passes
``max_rss`` bytes is killed (``out of memory``); a new worker takes the dead one's place and the run goes on.

``map(items, ordered=True)`` yields the outcomes in hand-out order through a bounded reorder window: item ``i`` is
handed out only while fewer than ``window`` items before it are still unfinished, so a slow item holds back at most
``window`` finished ones and the parent's memory stays bounded (``ordered=False``: as they finish).

Workers write their stdout and stderr (file descriptors 1 and 2, where mediapipe's and TensorFlow's C++ logging
goes) to a log file instead of the terminal. The redirection is done on the file descriptors in the worker itself:
no environment variable is set anywhere.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import resource
import signal
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

CRASHED, TIMEOUT, OUT_OF_MEMORY = "worker crashed", "timeout", "out of memory"
START_TIMEOUT = 300.0  # seconds for a new worker to import what it needs (slow only on a very busy machine)


@dataclass(frozen=True)
class Failure:
    """An item whose worker died on it: the reason (one of the three above) and a line saying how."""

    reason: str
    detail: str


@dataclass
class Outcome:
    """What became of one item: ``value`` (the function's return) or ``failure``; its worker's peak RSS so far."""

    index: int
    item: Any
    value: Any = None
    failure: Failure | None = None
    peak_rss: int = 0  # bytes


def _redirect_output(log_path: Path | None) -> None:
    target = os.open(os.fspath(log_path) if log_path else os.devnull, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    for fd in (1, 2):
        os.dup2(target, fd)
    os.close(target)


def _usage() -> tuple[int, float]:
    """This process's peak RSS (bytes) and CPU seconds so far."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_maxrss * 1024, r.ru_utime + r.ru_stime  # ru_maxrss: kilobytes on Linux


def _worker_main(conn: Connection, fn: Callable, args: tuple, log_path: Path | None, quiet: bool,
                 init: Callable[[], None] | None = None) -> None:
    # Ctrl-C reaches the whole process group: the parent stops the workers itself, and a worker dying of it must
    # not be recorded as a clip that crashed.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if quiet:
        _redirect_output(log_path)
    if init is not None:
        init()  # an exception here ends the worker before "ready": the pool reports a failed start
    conn.send(("ready", None, None, _usage()))
    while True:
        try:
            message = conn.recv()
        except EOFError:  # the parent is gone
            return
        if message is None:
            return
        index, item = message
        conn.send(("done", index, fn(item, *args), _usage()))


def _rss(pid: int) -> int | None:
    """Resident memory of a process in bytes (Linux /proc), None where unknown."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _how_it_died(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = " (the system may have run out of memory)" if -exitcode == signal.SIGKILL else ""
        return f"the worker was killed by {name}{hint}"
    return f"the worker exited with code {exitcode}"


_NO_LIMIT = 2**60  # cgroup v1 writes "no limit" as a huge number (9223372036854771712 here)


def _read_limit(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if not text.isdigit():  # cgroup v2: "max"
        return None
    value = int(text)
    return value if 0 < value < _NO_LIMIT else None


def cgroup_memory_limit(root: Path = Path("/sys/fs/cgroup"), proc: Path = Path("/proc/self/cgroup")) -> int | None:
    """The memory limit (bytes) of this process's cgroup, the lowest on its path up to the hierarchy's root, as the
    scheduler set it (Slurm's ``--mem``, a Kubernetes pod's ``limits.memory``, ``docker --memory``); None without one.

    cgroup v2: ``memory.max`` ("max" = none); v1: ``memory/memory.limit_in_bytes``. A container usually sees its own
    cgroup at the mount's root, so the root's file is read too."""
    try:
        lines = proc.read_text().splitlines()
    except OSError:
        lines = []
    candidates: list[Path] = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        rel = path.strip().lstrip("/")
        if controllers == "":  # v2 unified hierarchy
            base, name = root, "memory.max"
        elif "memory" in controllers.split(","):
            base, name = root / "memory", "memory.limit_in_bytes"
        else:
            continue
        folder = base / rel if rel else base
        while True:
            candidates.append(folder / name)
            if folder == base or base not in folder.parents:
                break
            folder = folder.parent
        candidates.append(base / name)
    limits = [v for v in (_read_limit(c) for c in dict.fromkeys(candidates)) if v is not None]
    return min(limits) if limits else None


def memory_available_to_run() -> int | None:
    """Bytes of memory this run may use: the machine's RAM, or its cgroup's limit where that is lower."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        total = None
    limit = cgroup_memory_limit()
    if limit is not None and (total is None or limit < total):
        return limit
    return total


def default_max_rss(jobs: int, available: int | None = None) -> int:
    """Per-worker memory cap: 80% of the memory this run may use (the cgroup's limit under Slurm, Kubernetes or
    Docker, else the machine's RAM) shared by the workers, at least 1 GiB each. 0 (no cap) if unknown."""
    total = memory_available_to_run() if available is None else available
    if not total:
        return 0
    return max(2**30, int(0.8 * total / max(1, jobs)))


def reorder_window(jobs: int) -> int:
    """Items an ordered map may hand out past the oldest unfinished one: 4 per worker (at least 8), so a clip that
    takes a few times the usual holds the others up only when it takes longer than ~4 clips' time."""
    return max(8, 4 * jobs)


@dataclass
class _Worker:
    process: Any
    conn: Connection
    ready: bool = False
    task: tuple[int, Any] | None = None
    started: float = 0.0
    peak_rss: int = 0
    cpu: float = 0.0  # CPU seconds it reported last
    ready_cpu: float = 0.0  # CPU seconds it had spent when it was ready
    items: int = 0  # items it has finished
    created: float = field(default_factory=time.monotonic)


@dataclass
class WorkerPool:
    """``jobs`` processes running ``fn(item, *args)``; ``map`` yields an Outcome per item as each finishes.

    ``init`` (picklable, no arguments) runs once in each worker before it takes an item: what every item needs
    (imports, detector graphs) is then paid at start-up, under ``START_TIMEOUT``, not inside the first item's
    ``timeout``, and counted apart in ``startup_cpu_seconds``."""

    fn: Callable
    args: tuple = ()
    jobs: int = 1
    timeout: float | None = 600.0  # seconds per item
    max_rss: int = 0  # bytes per worker; 0 = no cap
    log_path: Path | None = None  # where workers' stdout/stderr go (None: /dev/null)
    quiet: bool = True  # False: workers keep the terminal (for debugging)
    poll: float = 0.2  # seconds between memory checks
    init: Callable[[], None] | None = None
    cpu_seconds: float = 0.0  # CPU time the workers reported (startup included), summed over all of them
    startup_cpu_seconds: float = 0.0  # the part of it spent before the workers were ready (imports, ``init``)
    # Each worker's first item, apart: it pays what a process pays once (first decoder and encoder set-up, the
    # first touch of its frame buffers), 35-166 ms of CPU on a GRID clip on the VMs measured (docs/benchmarks.md).
    first_item_cpu_seconds: float = 0.0
    first_items: int = 0
    # The steady state, every worker busy and past its first item: from the moment all workers of the first set
    # had finished one to the moment the last item was handed out (then they fall idle one by one); items
    # finished at each end.
    all_warm_at: float | None = None  # time.monotonic()
    done_when_warm: int = 0
    drained_at: float | None = None  # time.monotonic()
    done_when_drained: int = 0
    _workers: list[_Worker] = field(default_factory=list)
    _window: int | None = None
    _next_out: int = 0

    def _start(self) -> _Worker:
        ctx = mp.get_context("spawn")  # no fork: the parent may hold threads (progress bar) and native libraries
        parent, child = ctx.Pipe()
        process = ctx.Process(target=_worker_main,
                              args=(child, self.fn, self.args, self.log_path, self.quiet, self.init), daemon=True)
        # A Dask worker is itself a daemonic process, which multiprocessing forbids to start children (a daemon
        # is not waited for at exit, so its children could outlive it). Ours cannot: each ends when its pipe to
        # this process closes (EOFError in _worker_main), however this process ends.
        config = mp.current_process()._config
        daemonic = config.pop("daemon", None)
        try:
            process.start()
        finally:
            if daemonic is not None:
                config["daemon"] = daemonic
        child.close()
        return _Worker(process=process, conn=parent)

    def _retire(self, worker: _Worker, kill: bool) -> None:
        if kill and worker.process.is_alive():
            worker.process.kill()
        worker.process.join(timeout=10)
        worker.conn.close()
        self._workers.remove(worker)

    def map(self, items: Iterable[Any], ordered: bool = False, window: int | None = None,
            keep_workers: bool = False) -> Iterator[Outcome]:
        """An Outcome per item: as each finishes, or with ``ordered`` in hand-out order through a reorder window of
        ``window`` items (default :func:`reorder_window`). ``keep_workers``: the workers stay up for the next call
        once every item is done (a pool that serves one item at a time, as on a cluster worker)."""
        pending = deque(enumerate(items))
        total = len(pending)
        done = 0
        self._window = (window or reorder_window(self.jobs)) if ordered else None
        self._next_out = 0  # ordered: the index the caller gets next
        held: dict[int, Outcome] = {}  # ordered: finished, waiting for the items before them
        while len(self._workers) < min(self.jobs, total):
            self._workers.append(self._start())
        last_poll = time.monotonic()
        finished = False
        try:
            while done < total:
                for w in self._workers:
                    if w.ready and w.task is None:
                        self._assign(w, pending, done)
                by_handle = {}
                for w in self._workers:
                    by_handle[w.conn] = w
                    by_handle[w.process.sentinel] = w
                fired = wait(list(by_handle), timeout=self.poll)
                dead: dict[int, tuple[_Worker, Failure | None]] = {}
                for handle in fired:
                    w = by_handle[handle]
                    if id(w) in dead:
                        continue
                    if handle is w.conn:
                        try:
                            kind, index, value, (peak, cpu) = w.conn.recv()
                        except (EOFError, OSError, pickle.UnpicklingError):  # died mid-message
                            dead[id(w)] = (w, Failure(CRASHED, _how_it_died(self._exitcode(w))))
                            continue
                        self.cpu_seconds += cpu - w.cpu
                        w.cpu = cpu
                        if kind == "ready":
                            w.ready, w.ready_cpu = True, cpu
                            self.startup_cpu_seconds += cpu
                        else:
                            w.peak_rss = max(w.peak_rss, peak)
                            _, item = w.task
                            w.task = None
                            done += 1
                            if not w.items:
                                self.first_item_cpu_seconds += cpu - w.ready_cpu
                                self.first_items += 1
                            w.items += 1
                            if self.all_warm_at is None and all(x.items for x in self._workers):
                                self.all_warm_at, self.done_when_warm = time.monotonic(), done
                            outcome = Outcome(index=index, item=item, value=value, peak_rss=w.peak_rss)
                            if self._window is None:
                                self._assign(w, pending, done)  # the next item before the caller handles this one
                                yield outcome
                            else:
                                held[index] = outcome
                                yield from self._release(held)
                                self._assign(w, pending, done)
                    elif not w.conn.poll():  # exited, and no last message left to read
                        dead[id(w)] = (w, Failure(CRASHED, _how_it_died(self._exitcode(w))))
                now = time.monotonic()
                if self.max_rss and now - last_poll >= self.poll:
                    last_poll = now
                    for w in self._workers:
                        rss = _rss(w.process.pid) if id(w) not in dead and w.task is not None else None
                        if rss is not None:
                            w.peak_rss = max(w.peak_rss, rss)
                            if rss > self.max_rss:
                                dead[id(w)] = (w, Failure(OUT_OF_MEMORY, f"the worker used {rss / 2**30:.2f} GiB "
                                                          f"(cap {self.max_rss / 2**30:.2f} GiB); it was killed"))
                for w in self._workers:
                    if not w.ready and now - w.created > START_TIMEOUT:
                        raise RuntimeError(f"a worker process did not start within {START_TIMEOUT:g} s")
                    if id(w) in dead or w.task is None:
                        continue
                    if self.timeout and now - w.started > self.timeout:
                        failure = Failure(TIMEOUT, f"no result after {self.timeout:g} s; the worker was killed")
                        dead[id(w)] = (w, failure)
                for w, failure in dead.values():
                    task, peak = w.task, w.peak_rss
                    self._retire(w, kill=True)
                    if task is not None:
                        done += 1
                        outcome = Outcome(index=task[0], item=task[1], failure=failure, peak_rss=peak)
                        if self._window is None:
                            yield outcome
                        else:
                            held[task[0]] = outcome
                            yield from self._release(held)
                    elif not w.ready:
                        raise RuntimeError(f"a worker process failed to start ({failure.detail}); "
                                           f"its output is in {self.log_path or 'the terminal'}")
                    if len(self._workers) < min(self.jobs, total - done):
                        self._workers.append(self._start())  # the pool rebuilt: the run goes on
            finished = True
        finally:
            if not (keep_workers and finished):
                self.close()

    def _release(self, held: dict[int, Outcome]) -> Iterator[Outcome]:
        """Ordered: the held outcomes that are next in hand-out order."""
        while self._next_out in held:
            outcome = held.pop(self._next_out)
            self._next_out += 1
            yield outcome

    def _assign(self, w: _Worker, pending: deque, done: int) -> None:
        """Send the next pending item to an idle worker (``done`` items finished so far). A worker that died since
        its last message keeps no task (the item goes back to the front of the queue): its exit is noticed through
        its sentinel. Handing out the last item ends the steady state."""
        if not pending:
            return
        if self._window is not None and pending[0][0] >= self._next_out + self._window:
            return  # the reorder window is full: wait for the item at its head
        task = pending.popleft()
        try:
            w.conn.send(task)
        except (BrokenPipeError, ConnectionResetError, OSError):
            pending.appendleft(task)
            return
        w.task, w.started = task, time.monotonic()
        if not pending:
            self.drained_at, self.done_when_drained = w.started, done

    @staticmethod
    def _exitcode(w: _Worker) -> int | None:
        w.process.join(timeout=5)
        return w.process.exitcode

    def close(self) -> None:
        for w in list(self._workers):
            try:
                w.conn.send(None)
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + 5
        for w in list(self._workers):
            w.process.join(timeout=max(0.0, deadline - time.monotonic()))
            self._retire(w, kill=True)
