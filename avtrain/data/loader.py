"""The webdataset pipeline of one epoch: shard order, node and worker splitting, a seeded shuffle buffer, clips,
batches, and the DataLoader around it.

Order and augmentation are functions of (seed, epoch, rank, worker, sample key) only, never of global RNG state:
the shard order of an epoch is one seeded permutation shared by all ranks (so ``wds.split_by_node`` hands each rank
disjoint shards), the shuffle buffer of each (rank, worker) has its own seeded generator, and each clip's
augmentation draws from a generator seeded by its key. Replaying an epoch therefore replays its batches exactly.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import torch
import webdataset as wds

from avbridge.sample import MEL_PER_FRAME
from avtrain.config import Recipe
from avtrain.data.bad_samples import Guarded, RaisingLoader, WithSkips
from avtrain.data.catalogue import check_fields, split_shards
from avtrain.data.clips import ClipLoader, _seed
from avtrain.data.collate import collate
from avtrain.data.fields import Fields
from avtrain.data.verify import VerifiedShards


class _SeededShuffle:
    """Shuffle buffer whose generator depends on (seed, epoch, rank, worker), looked up when iteration starts."""

    def __init__(self, bufsize: int, seed: int, epoch: int):
        self.bufsize, self.seed, self.epoch = bufsize, seed, epoch

    def __call__(self, src: Iterator[dict]) -> Iterator[dict]:
        rank, _, worker, _ = wds.utils.pytorch_worker_info()
        rng = random.Random(int(_seed(self.seed, self.epoch, rank, worker).generate_state(1)[0]))
        buf: list[dict] = []
        for sample in src:
            buf.append(sample)
            if len(buf) >= self.bufsize:
                i = rng.randrange(len(buf))
                buf[i], buf[-1] = buf[-1], buf[i]
                yield buf.pop()
        rng.shuffle(buf)
        yield from buf


def build_dataset(recipe: Recipe, split: str, *, train: bool, epoch: int = 0, distributed: bool = False,
                  scoring: bool = False, fields: Fields | None = None, whole: bool = False):
    """The webdataset pipeline of one epoch of ``split``.

    ``distributed`` splits shards across ranks (training); evaluation reads every shard on the calling rank.
    ``scoring``: whole clips with their true waveforms and spectrogram parameters (speech evaluation); ``whole``:
    whole clips (no ``data.max_frames`` cut).
    """
    d = recipe.data
    urls = split_shards(d.shards, split)
    check_fields(d.shards, fields or Fields())
    if train:  # one permutation per epoch, identical on every rank, so node splitting stays disjoint
        random.Random(recipe.seed * 100003 + epoch).shuffle(urls)
    ds = wds.WebDataset(
        urls,
        shardshuffle=False,  # shard order is permuted above, deterministically per epoch
        nodesplitter=wds.split_by_node if distributed else None,
        # each shard's SHA-256 checked against its ledger just before a worker reads it (data/verify.py)
        workersplitter=VerifiedShards(d.shards, wds.split_by_worker) if d.verify_checksums else wds.split_by_worker,
        empty_check=False,  # a worker or rank may get no shard when shards are few
        seed=recipe.seed,
    )
    if train and d.shuffle_buffer > 1:
        ds = ds.compose(_SeededShuffle(d.shuffle_buffer, recipe.seed, epoch))
    clips = ClipLoader(recipe, train=train, epoch=epoch, scoring=scoring, task_fields=fields or Fields(), whole=whole)
    ds = ds.compose(Guarded(clips, d.on_bad_sample, MEL_PER_FRAME))  # bad samples: raised or skipped and counted
    batch = d.batch_size if train else d.eval_batch_size
    return ds.batched(batch, collation_fn=WithSkips(collate), partial=True)


def loader_workers(requested: int, num_shards: int, world_size: int = 1, rank: int = 0) -> int:
    """Workers for one rank's loader: at most one per shard the rank reads (``split_by_node`` gives rank r the
    shards r, r + world, ...; ``split_by_worker`` deals those to the workers), so that no worker sits idle."""
    mine = len(range(rank, num_shards, world_size)) if world_size > 1 else num_shards
    return max(0, min(requested, mine))


def build_loader(recipe: Recipe, split: str, *, train: bool, epoch: int = 0, distributed: bool = False,
                 scoring: bool = False, fields: Fields | None = None, pin_memory: bool = False,
                 whole: bool = False):
    """The batches of one epoch of ``split``; ``pin_memory`` (CUDA) lets the engine copy them asynchronously."""
    ds = build_dataset(recipe, split, train=train, epoch=epoch, distributed=distributed, scoring=scoring,
                       fields=fields, whole=whole)
    rank, world = (_rank_world() if distributed else (0, 1))
    workers = loader_workers(recipe.data.num_workers, len(split_shards(recipe.data.shards, split)), world, rank)
    # a private generator: creating the loader must not consume the global torch RNG (exact resume)
    gen = torch.Generator().manual_seed(recipe.seed * 7919 + epoch)
    return RaisingLoader(torch.utils.data.DataLoader(
        ds, batch_size=None, num_workers=workers, generator=gen, persistent_workers=False,
        prefetch_factor=2 if workers > 0 else None, pin_memory=pin_memory,
    ))


def _rank_world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1
