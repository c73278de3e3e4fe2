"""Data module over synthetic avprep-layout shards: batches, masks, epoch determinism, node and worker splits."""

import pytest
import torch

from avtrain.config import validate_recipe
from avtrain.data import MEL_PER_FRAME, build_dataset, build_loader, split_shards
from avtrain.synthetic import write_shards


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_shards(tmp_path_factory.mktemp("syn"), splits={"train": (4, 6), "val": (1, 5)}, num_classes=3)


def recipe(shards, **data):
    return validate_recipe({"output_dir": "unused", "seed": 5,
                            "data": {"shards": str(shards), "batch_size": 4, "shuffle_buffer": 8, **data},
                            "augment_conf": {"crop": 28}})


def keys_of(batches):
    return [k for b in batches for k in b["keys"]]


def test_batches_are_padded_with_masks(shards):
    batches = list(build_loader(recipe(shards), "train", train=True))
    assert sum(len(b["keys"]) for b in batches) == 24
    for b in batches:
        bsz, tmax = b["video"].shape[:2]
        assert b["video"].shape[2:] == (1, 28, 28) and b["mel"].shape == (bsz, 80, MEL_PER_FRAME * tmax)
        assert torch.equal(b["mask"].sum(1), b["lengths"]) and int(b["lengths"].max()) == tmax
        for i, t in enumerate(b["lengths"].tolist()):
            assert (b["video"][i, t:] == 0).all() and (b["mel"][i, :, MEL_PER_FRAME * t :] == 0).all()
            assert (b["video"][i, :t] != 0).any()
        assert b["labels"].dtype == torch.long and all(text == f"w{y}" for text, y in zip(b["texts"], b["labels"]))


def test_epochs_replay_exactly_and_differ_from_each_other(shards):
    r = recipe(shards)
    a = list(build_loader(r, "train", train=True, epoch=3))
    b = list(build_loader(r, "train", train=True, epoch=3))
    c = list(build_loader(r, "train", train=True, epoch=4))
    assert keys_of(a) == keys_of(b) and all(torch.equal(x["video"], y["video"]) for x, y in zip(a, b))
    assert keys_of(a) != keys_of(c) and sorted(keys_of(a)) == sorted(keys_of(c))


def test_eval_reads_in_order_without_augmentation(shards):
    r = recipe(shards)
    a = list(build_loader(r, "val", train=False))
    b = list(build_loader(r, "val", train=False))
    assert keys_of(a) == sorted(keys_of(a)) and all(torch.equal(x["video"], y["video"]) for x, y in zip(a, b))


def test_node_split_gives_each_rank_disjoint_shards(shards, monkeypatch):
    r = recipe(shards)
    seen = []
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        seen.append(keys_of(build_dataset(r, "train", train=True, epoch=0, distributed=True)))
    assert len(seen[0]) == len(seen[1]) == 12 and not set(seen[0]) & set(seen[1])
    assert len(set(seen[0]) | set(seen[1])) == 24


def test_workers_split_shards_without_duplicates(shards):
    r = recipe(shards, num_workers=2)
    keys = keys_of(build_loader(r, "train", train=True))
    assert len(keys) == 24 and len(set(keys)) == 24


def test_index_lists_shards(shards):
    assert [p.rsplit("/", 1)[-1] for p in split_shards(shards, "train")] == [f"train-00000{i}.tar" for i in range(4)]


def test_loader_workers_never_exceed_the_shards_a_rank_reads():
    from avtrain.data import loader_workers

    assert loader_workers(8, 1) == 1  # GRID's val split: one shard, one worker (7 would idle)
    assert loader_workers(8, 20) == 8
    # 5 shards over 2 ranks: rank 0 reads shards 0, 2, 4 and rank 1 shards 1, 3
    assert [loader_workers(4, 5, 2, r) for r in (0, 1)] == [3, 2]
    assert loader_workers(0, 5, 2, 1) == 0
