"""Where the per-clip work runs: local worker processes (avprep.workers) or an existing Dask or Ray cluster
(through joblib).

The per-clip function and the shard writing are the same in every case: ``process_clip`` calls go to the workers
and results come back to this process, which alone writes shards. A cluster only changes how many clips are in
flight at once. The local workers isolate each clip (a crash, hang or memory blow-up costs that clip alone); on a
cluster, the cluster's own worker supervision applies. For a cluster too big for one writer, run one partition per
machine instead (``--num-partitions``), each with its own local or cluster backend.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

BACKENDS = ("local", "dask", "ray")
ALIASES = {"loky": "local"}  # the local backend's name when it was joblib's loky


def check_backend(name: str) -> str:
    """The backend's canonical name, or a ValueError naming the choices."""
    name = ALIASES.get(name, name)
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return name


@contextmanager
def joblib_backend(name: str, address: str | None = None, local_workers: int = 2) -> Iterator[tuple[str, str]]:
    """Yield (joblib backend name, joblib return_as) for the named backend, connected for the block's duration.

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
        try:
            yield "dask", "generator_unordered"
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    elif name == "ray":
        try:
            import ray
            from ray.util.joblib import register_ray
        except ImportError:
            raise ValueError("--backend ray needs ray: pip install 'avbridge[cluster]'") from None
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=local_workers, include_dashboard=False, log_to_driver=False)
        register_ray()
        try:
            yield "ray", "list"  # ray's joblib backend returns whole lists only: the runner feeds it in chunks
        finally:
            ray.shutdown()
    else:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
