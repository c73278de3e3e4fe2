"""Process-group setup for torchrun (DDP): NCCL on CUDA, gloo on CPU; a no-op for a single process."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device_type: str) -> DistInfo:
    """Join the torchrun process group when WORLD_SIZE > 1 (env:// rendezvous set up by torchrun)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend)
    return DistInfo(rank, world, local)


def teardown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def broadcast_buffers(info: DistInfo, model: torch.nn.Module) -> None:
    """Rank 0's buffers (batch-norm statistics) to every rank, in place."""
    if info.enabled:
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def sum_across_ranks(info: DistInfo, sums: dict[str, float]) -> dict[str, float]:
    """Add per-rank sums key by key. Ranks may hold different numbers of validation clips, or none (GRID's val split
    is one shard), so each sends its own dict (gathered as JSON) instead of a tensor whose size could differ."""
    if not info.enabled:
        return dict(sums)
    return add_sums(all_gather_json(dict(sums)))


def all_gather_json(obj: Any) -> list[Any]:
    """Every rank's JSON-serialisable `obj`, in rank order.

    Not `dist.all_gather_object`: gloo's worker thread drops its reference to a finished collective's tensors a
    moment after `wait()` returns, and if Python has let go of them by then that thread must take the GIL to free
    them. When that races interpreter shutdown, the thread is unwound through C++ and the rank aborts ("terminate
    called without an active exception", about one torchrun exit in ten). Here the tensors stay referenced until
    the backend has released them."""
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    payload = torch.tensor(list(json.dumps(obj).encode()), dtype=torch.uint8, device=device)
    size = torch.tensor([payload.numel()], dtype=torch.long, device=device)
    sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, size)
    longest = max(int(s) for s in sizes)
    padded = torch.zeros(longest, dtype=torch.uint8, device=device)
    padded[: payload.numel()] = payload
    gathered = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(gathered, padded)
    _wait_until_released([size, *sizes, padded, *gathered])
    return [json.loads(bytes(g[: int(s)].tolist()).decode()) for g, s in zip(gathered, sizes)]


def _wait_until_released(tensors: list[torch.Tensor], timeout_s: float = 5.0) -> None:
    """Block (releasing the GIL) until no backend thread holds a reference to `tensors`; give up after timeout_s,
    since a late release only matters at interpreter exit."""
    deadline = time.monotonic() + timeout_s
    while any(t._use_count() > 1 for t in tensors) and time.monotonic() < deadline:
        time.sleep(0.0001)


def add_sums(parts: list[dict[str, float] | None]) -> dict[str, float]:
    """Key-by-key sum of several ranks' sums; a rank without clips sends an empty dict."""
    out: dict[str, float] = {}
    for part in parts:
        for k, v in (part or {}).items():
            out[k] = out.get(k, 0.0) + float(v)
    return out


def check_shards_per_rank(num_shards: int, world_size: int, split: str) -> None:
    """Every rank needs a shard of its own: webdataset's node splitter would leave a rank with nothing to train
    on while the others wait for it in the gradient all-reduce (a deadlock)."""
    if world_size > 1 and num_shards < world_size:
        raise RuntimeError(f"split {split!r} has {num_shards} shard(s) for {world_size} ranks: each rank needs at "
                           f"least one training shard; write the split as at least {world_size} shards or run "
                           f"fewer ranks")
