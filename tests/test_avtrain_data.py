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


def test_word_clips_with_context_carry_their_boundary_indicator(tmp_path):
    """A word clip stored with context (avprep grid --word-context) gives 1.0 on the word's frames (its JSON's
    word_span) and 0.0 on context and padding; a clip without word_span is all word; a centre window cuts it too."""
    import json

    import numpy as np
    import webdataset as wds

    from avbridge.sample import encode_field
    from avtrain.data.fields import Fields

    def sample(key, frames, span):
        meta = {"key": key, "label": 0, "text": "bin", "num_frames": frames, **({"word_span": span} if span else {})}
        return {"__key__": key, "mouth.npy": encode_field("mouth.npy", np.full((frames, 8, 8), 90, np.uint8)),
                "mel.npy": encode_field("mel.npy", np.zeros((80, 4 * frames), np.float32)),
                "json": encode_field("json", meta)}

    with wds.TarWriter(str(tmp_path / "test-000000.tar")) as sink:
        sink.write(sample("a", 8, [2, 5]))
        sink.write(sample("b", 3, None))
    (tmp_path / "index.json").write_text(json.dumps({"splits": {"test": {"shards": ["test-000000.tar"],
                                                                         "samples": 2}}}))
    r = validate_recipe({"output_dir": "unused", "data": {"shards": str(tmp_path), "verify_checksums": False,
                                                          "eval_batch_size": 2}})
    batch = next(iter(build_loader(r, "test", train=False, fields=Fields(boundary=True))))
    assert batch["boundary"].tolist() == [[0, 0, 1, 1, 1, 0, 0, 0], [1, 1, 1, 0, 0, 0, 0, 0]]
    assert "boundary" not in next(iter(build_loader(r, "test", train=False)))  # only when a task asks
    cut = validate_recipe({**r.model_dump(), "data": {**r.data.model_dump(), "max_frames": 4}})
    batch = next(iter(build_loader(cut, "test", train=False, fields=Fields(boundary=True))))
    assert batch["boundary"][0].tolist() == [1, 1, 1, 0]  # the centre window: frames 2..5


def test_a_boundary_indicator_on_word_shards_without_context_is_refused(tmp_path):
    """Word clips cut without context (``avprep grid --unit word``, word_context 0) are all word: the indicator
    would be 1.0 on every frame, a constant input, so a task asking for it is told how to make shards that carry it."""
    import json

    from avtrain.data.fields import Fields

    shards = write_shards(tmp_path / "syn", splits={"train": (1, 2)})
    index = json.loads((shards / "index.json").read_text())
    r = validate_recipe({"output_dir": "unused", "data": {"shards": str(shards), "verify_checksums": False}})
    for run, refused in (({"unit": "word", "word_context": 0}, True), ({"unit": "word", "word_context": 3}, False),
                         ({"unit": "sentence", "word_context": 0}, False), ({"corpus": "lrw"}, False)):
        (shards / "index.json").write_text(json.dumps({**index, "run": run}))
        if refused:
            with pytest.raises(ValueError, match="--word-context"):
                build_loader(r, "train", train=True, fields=Fields(boundary=True))
        else:
            build_loader(r, "train", train=True, fields=Fields(boundary=True))
        build_loader(r, "train", train=True)  # without the indicator the shards are fine
