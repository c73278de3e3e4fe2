"""Where the per-clip work runs: local worker processes (avprep.workers) or an existing Dask or Ray cluster.

The per-clip function and the shard writing are the same in every case: ``process_clip`` calls go to the workers
and results come back to this process, which alone writes shards, in hand-out order (a bounded reorder window, as
the local pool does), so every backend writes the same shards. On a cluster each clip still runs isolated: a
cluster task hands its clip to a child process of the cluster worker (:func:`run_isolated`, one
:class:`avprep.workers.WorkerPool` of one process per cluster worker thread, kept from task to task), so a clip that
segfaults, hangs past ``--clip-timeout`` or passes ``--max-worker-mem`` costs that clip alone, as locally, and the
cluster worker lives on. Behind that, each task has a retry budget (Dask ``retries``, Ray ``max_retries``: a cluster
worker that dies is retried once elsewhere) and a deadline here (a task that never answers is cancelled and its
clip rejected as ``timeout``). For a cluster too big for one writer, run one partition per machine instead
(``--num-partitions``), each with its own local or cluster backend.
"""

from __future__ import annotations

import os
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

BACKENDS = ("local", "dask", "ray")
ALIASES = {"loky": "local"}  # the local backend's name when it was joblib's loky
CRASHED, TIMEOUT = "worker crashed", "timeout"


def check_backend(name: str) -> str:
    """The backend's canonical name, or a ValueError naming the choices."""
    name = ALIASES.get(name, name)
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return name


# --- on a cluster worker ---------------------------------------------------------------------------------------------

_LOCAL = threading.local()  # this cluster worker thread's pool: (run token, WorkerPool)


@dataclass(frozen=True)
class IsolatedTask:
    """What each cluster task runs: ``fn(item, *args)`` in a child process of the cluster worker, under ``timeout``
    seconds and ``max_rss`` bytes (None: the default share of what that machine or its cgroup allows, 0: none),
    after ``init`` once per child."""

    fn: Callable
    args: tuple = ()
    timeout: float | None = None
    max_rss: int | None = None
    init: Callable[[], None] | None = None


@dataclass(frozen=True)
class Isolated:
    """What a cluster task sends back: the function's value, or why its child process died on the item."""

    value: Any = None
    reason: str | None = None  # "worker crashed" | "timeout" | "out of memory"
    detail: str = ""
    peak_rss: int = 0


def run_isolated(item: Any, task: IsolatedTask, token: str) -> Isolated:
    """``task`` on ``item`` in a child process of this cluster worker (started on the first call of run ``token``
    in this thread, reused after)."""
    from avprep.workers import WorkerPool, default_max_rss

    held = getattr(_LOCAL, "pool", None)
    if held is None or held[0] != token:
        if held is not None:
            held[1].close()
        cap = default_max_rss(max(1, os.cpu_count() or 1)) if task.max_rss is None else task.max_rss
        held = _LOCAL.pool = (token, WorkerPool(task.fn, task.args, jobs=1, timeout=task.timeout, max_rss=cap,
                                                init=task.init))
    pool = held[1]
    try:
        [outcome] = list(pool.map([item], keep_workers=True))
    except RuntimeError as e:  # the child could not start (an import, the detector): this clip, not the cluster
        return Isolated(reason=CRASHED, detail=f"its worker process did not start: {e}"[:300])
    if outcome.failure is not None:
        return Isolated(reason=outcome.failure.reason, detail=outcome.failure.detail, peak_rss=outcome.peak_rss)
    return Isolated(value=outcome.value, peak_rss=outcome.peak_rss)


def close_isolated() -> None:
    """Stop this thread's child process (a cluster worker once a run is done)."""
    held = getattr(_LOCAL, "pool", None)
    if held is not None:
        held[1].close()
        _LOCAL.pool = None


# --- here: submitting to a cluster -----------------------------------------------------------------------------------

class _Dask:
    def __init__(self, client):
        self.client = client

    def submit(self, fn: Callable, *args):
        return self.client.submit(fn, *args, pure=False, retries=1)

    def result(self, handle, timeout: float | None):
        from distributed import TimeoutError as DaskTimeout

        try:
            return handle.result(timeout=timeout)
        except (DaskTimeout, TimeoutError):
            raise TimeoutError from None

    def cancel(self, handle) -> None:
        handle.cancel()

    def finish(self) -> None:
        try:
            self.client.run(close_isolated)
        except Exception:  # noqa: BLE001 - a worker gone meanwhile: its children went with it
            pass


class _Ray:
    def __init__(self, ray):
        self.ray = ray
        self.remote = ray.remote(num_cpus=1, max_retries=1)(run_isolated)

    def submit(self, fn: Callable, *args):
        return self.remote.remote(*args)

    def result(self, handle, timeout: float | None):
        from ray.exceptions import GetTimeoutError

        try:
            return self.ray.get(handle, timeout=timeout)
        except GetTimeoutError:
            raise TimeoutError from None

    def cancel(self, handle) -> None:
        self.ray.cancel(handle, force=True)

    def finish(self) -> None:
        pass


@contextmanager
def connect(name: str, address: str | None = None, local_workers: int = 2) -> Iterator[Any]:
    """A submitter for the named cluster backend, connected for the block's duration.

    ``address``: the scheduler of a running cluster (dask ``tcp://host:8786``, ray ``host:6379`` or ``auto``);
    without one, a local cluster of ``local_workers`` processes is started and stopped around the block.
    """
    if name == "dask":
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ValueError("--backend dask needs dask.distributed: pip install 'avbridge[cluster]'") from None
        cluster = None if address else LocalCluster(n_workers=local_workers, threads_per_worker=1, processes=True,
                                                    dashboard_address=None)
        client = Client(address or cluster)
        submitter = _Dask(client)
        try:
            yield submitter
        finally:
            submitter.finish()
            client.close()
            if cluster is not None:
                cluster.close()
    elif name == "ray":
        try:
            import ray
        except ImportError:
            raise ValueError("--backend ray needs ray: pip install 'avbridge[cluster]'") from None
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=local_workers, include_dashboard=False, log_to_driver=False)
        try:
            yield _Ray(ray)
        finally:
            ray.shutdown()
    else:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")


def cluster_results(submitter, items: list, task: IsolatedTask, *, jobs: int, window: int,
                    start_timeout: float = 300.0) -> Iterator[tuple[Any, Isolated]]:
    """(item, Isolated) for each item, in hand-out order: at most ``window`` tasks in flight, the oldest waited for
    first. A task that gives no answer within its deadline (its clip's ``timeout`` for every clip ahead of it in the
    window, plus a worker's start-up) is cancelled and reported as ``timeout``; one the cluster gave up on (a
    cluster worker that died twice) as ``worker crashed``."""
    token = uuid.uuid4().hex
    queue: deque = deque()
    todo = iter(items)
    budget = None if not task.timeout else start_timeout + task.timeout * (1 + window / max(1, jobs))

    def submit_next() -> bool:
        for item in todo:
            queue.append((item, submitter.submit(run_isolated, item, task, token), time.monotonic()))
            return True
        return False

    for _ in range(window):
        if not submit_next():
            break
    while queue:
        item, handle, submitted = queue.popleft()
        left = None if budget is None else max(0.0, submitted + budget - time.monotonic())
        try:
            outcome = submitter.result(handle, left)
        except TimeoutError:
            submitter.cancel(handle)
            outcome = Isolated(reason=TIMEOUT, detail=f"the cluster gave no answer within {budget:g} s; cancelled")
        except Exception as e:  # noqa: BLE001 - KilledWorker, WorkerCrashedError, ...: the cluster gave up on it
            detail = re.sub(r"\x1b\[[0-9;]*m", "", f"{type(e).__name__}: {e}")  # Ray colours its messages
            outcome = Isolated(reason=CRASHED, detail=detail.splitlines()[0][:300])
        submit_next()
        yield item, outcome
