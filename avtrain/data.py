"""Data module: avprep shards (webdataset) -> decoded, augmented, padded batches with masks.

Order and augmentation are functions of (seed, epoch, rank, worker, sample key) only, never of global RNG state:
the shard order of an epoch is one seeded permutation shared by all ranks (so ``wds.split_by_node`` hands each rank
disjoint shards), the shuffle buffer of each (rank, worker) has its own seeded generator, and each clip's
augmentation draws from a generator seeded by its key. Replaying an epoch therefore replays its batches exactly,
which is how a resumed run skips the batches it already trained on.
"""

from __future__ import annotations

import json
import random
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import webdataset as wds

from avbridge.sample import decode_sample
from avbridge.spectra import SpectrogramParams, mel_spectrogram
from avtrain.augment import ClipAugment, resize_frames
from avtrain.config import Recipe

MEL_PER_FRAME = 4  # 100 fps spectrogram frames per 25 fps video frame


def read_index(root: str | Path) -> dict[str, Any]:
    path = Path(root) / "index.json"
    return json.loads(path.read_text()) if path.exists() else {}


def split_shards(root: str | Path, split: str) -> list[str]:
    """Shard paths of a split: from index.json when present, else ``{split}-*.tar`` in the folder."""
    root = Path(root)
    info = read_index(root).get("splits", {}).get(split)
    names = info["shards"] if info else sorted(p.name for p in root.glob(f"{split}-*.tar"))
    if not names:
        raise FileNotFoundError(f"no shards for split {split!r} in {root}")
    return [str(root / n) for n in names]


def vocabulary(root: str | Path) -> list[str]:
    """Class names by label index, as avprep records them in index.json (``run.vocabulary``); [] if absent."""
    return list(read_index(root).get("run", {}).get("vocabulary") or [])


def split_size(root: str | Path, split: str) -> int | None:
    info = read_index(root).get("splits", {}).get(split)
    return int(info["samples"]) if info and "samples" in info else None


def _seed(*parts: int | str) -> np.random.SeedSequence:
    return np.random.SeedSequence([zlib.crc32(p.encode()) if isinstance(p, str) else int(p) for p in parts])


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


@dataclass
class ClipLoader:
    """Turns raw webdataset samples into model inputs (one job: decode + crop/augment + normalise)."""

    recipe: Recipe
    train: bool
    epoch: int = 0

    def __post_init__(self):
        d = self.recipe.data
        self.augment = ClipAugment(self.recipe.augment, self.recipe.augment_conf, d.mean, d.std)
        self.fields = (d.video_field, "mel.npy", "wav.flac", "json")

    def __call__(self, raw: dict[str, Any]) -> dict[str, Any]:
        d = self.recipe.data
        wanted = self.fields if "mel.npy" not in raw else (d.video_field, "mel.npy", "json")
        s = decode_sample(raw, fields=wanted)
        meta = s["json"]
        video = s[d.video_field]
        if video.ndim == 4:  # RGB face crops -> luma, the lip-reading front is single-channel
            video = (video.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))
        t = video.shape[0]
        mel = s.get("mel.npy")
        if mel is None:
            params = SpectrogramParams(**meta.get("spectrogram", {}))
            mel = mel_spectrogram(s["wav.flac"], params, num_frames=MEL_PER_FRAME * t)
        rng = np.random.default_rng(_seed(self.recipe.seed, self.epoch, s["__key__"])) if self.train else None
        if d.max_frames is not None and t > d.max_frames:
            start = int(rng.integers(0, t - d.max_frames + 1)) if rng is not None else (t - d.max_frames) // 2
            video = video[start : start + d.max_frames]
            mel = mel[:, MEL_PER_FRAME * start : MEL_PER_FRAME * (start + d.max_frames)]
            t = d.max_frames
        frames = resize_frames(video, d.video_size) if d.video_size else video.astype(np.float32)
        frames = self.augment(frames, rng)
        mel = (mel[:, : MEL_PER_FRAME * t] - d.mel_mean) / d.mel_std
        return {
            "key": s["__key__"],
            "video": frames,
            "mel": mel.astype(np.float32),
            "label": int(meta["label"]) if meta.get("label") is not None else -1,
            "text": meta.get("text", ""),
        }


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Pad clips to the longest in the batch; ``mask`` is True on real frames."""
    lengths = torch.tensor([s["video"].shape[0] for s in samples], dtype=torch.long)
    tmax = int(lengths.max())
    h, w = samples[0]["video"].shape[1:]
    n_mels = samples[0]["mel"].shape[0]
    video = torch.zeros(len(samples), tmax, 1, h, w)
    mel = torch.zeros(len(samples), n_mels, MEL_PER_FRAME * tmax)
    for i, s in enumerate(samples):
        t = s["video"].shape[0]
        video[i, :t, 0] = torch.from_numpy(s["video"])
        mel[i, :, : MEL_PER_FRAME * t] = torch.from_numpy(s["mel"])
    mask = torch.arange(tmax)[None, :] < lengths[:, None]
    return {
        "video": video,
        "mel": mel,
        "lengths": lengths,
        "mask": mask,
        "labels": torch.tensor([s["label"] for s in samples], dtype=torch.long),
        "keys": [s["key"] for s in samples],
        "texts": [s["text"] for s in samples],
    }


def build_dataset(recipe: Recipe, split: str, *, train: bool, epoch: int = 0, distributed: bool = False):
    """The webdataset pipeline of one epoch of ``split``.

    ``distributed`` splits shards across ranks (training); evaluation reads every shard on the calling rank.
    """
    d = recipe.data
    urls = split_shards(d.shards, split)
    if train:  # one permutation per epoch, identical on every rank, so node splitting stays disjoint
        random.Random(recipe.seed * 100003 + epoch).shuffle(urls)
    ds = wds.WebDataset(
        urls,
        shardshuffle=False,  # shard order is permuted above, deterministically per epoch
        nodesplitter=wds.split_by_node if distributed else None,
        workersplitter=wds.split_by_worker,
        empty_check=False,  # a worker or rank may get no shard when shards are few
        seed=recipe.seed,
    )
    if train and d.shuffle_buffer > 1:
        ds = ds.compose(_SeededShuffle(d.shuffle_buffer, recipe.seed, epoch))
    ds = ds.map(ClipLoader(recipe, train=train, epoch=epoch))
    batch = d.batch_size if train else d.eval_batch_size
    return ds.batched(batch, collation_fn=collate, partial=True)


def build_loader(recipe: Recipe, split: str, *, train: bool, epoch: int = 0, distributed: bool = False):
    ds = build_dataset(recipe, split, train=train, epoch=epoch, distributed=distributed)
    workers = recipe.data.num_workers
    # a private generator: creating the loader must not consume the global torch RNG (exact resume)
    gen = torch.Generator().manual_seed(recipe.seed * 7919 + epoch)
    return torch.utils.data.DataLoader(
        ds, batch_size=None, num_workers=workers, generator=gen, persistent_workers=False,
        prefetch_factor=2 if workers > 0 else None,
    )
