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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import webdataset as wds

from avbridge.sample import decode_field, decode_sample
from avbridge.shardlist import shard_names
from avbridge.spectra import SpectrogramParams, mel_spectrogram
from avtrain.config import DataConf, Recipe
from avtrain.data.augment import ClipAugment, resize_frames
from avtrain.data.bad_samples import Guarded, RaisingLoader, WithSkips

MEL_PER_FRAME = 4  # 100 fps spectrogram frames per 25 fps video frame


def read_index(root: str | Path) -> dict[str, Any]:
    path = Path(root) / "index.json"
    return json.loads(path.read_text()) if path.exists() else {}


def split_shards(root: str | Path, split: str) -> list[str]:
    """Shard paths of a split: from avprep's ledgers (index.json may lag them), else index.json or the file names."""
    root = Path(root)
    names = shard_names(root, split)
    if not names:
        raise FileNotFoundError(f"no shards for split {split!r} in {root}")
    return [str(root / n) for n in names]


def vocabulary(root: str | Path) -> list[str]:
    """Class names by label index, as avprep records them in index.json (``run.vocabulary``); [] if absent."""
    return list(read_index(root).get("run", {}).get("vocabulary") or [])


def split_size(root: str | Path, split: str) -> int | None:
    info = read_index(root).get("splits", {}).get(split)
    return int(info["samples"]) if info and "samples" in info else None


def preprocessing_record(root: str | Path) -> dict[str, Any]:
    """How the shards were made: avprep's preset (as a dict) and the mean face registration used (or None).
    Stored in checkpoints so that ``avtrain synth`` prepares a new video exactly as the training clips were."""
    root = Path(root)
    run = read_index(root).get("run") or {}
    if not run and (root / "run.json").exists():
        run = json.loads((root / "run.json").read_text())
    face = root / "mean_face.npy"
    return {"preset": run.get("preset"), "mean_face": np.load(face).tolist() if face.exists() else None}


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


LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def _mel_scaling(d: DataConf, like) -> tuple:
    """``data.mel_mean`` / ``mel_std`` shaped to broadcast over (..., n_mels, frames), numpy or torch as ``like``."""
    out = []
    for value in (d.mel_mean, d.mel_std):
        if isinstance(value, list):
            value = np.asarray(value, np.float32)[:, None]
            if torch.is_tensor(like):
                value = torch.from_numpy(value).to(like.device)
        out.append(value)
    return tuple(out)


def normalise_mel(mel: np.ndarray, d: DataConf) -> np.ndarray:
    mean, std = _mel_scaling(d, mel)
    return (mel - mean) / std


def denormalise_mel(mel, d: DataConf):
    """A (predicted or batched) mel back in the units the shards were written in (``avbridge.spectra``)."""
    mean, std = _mel_scaling(d, mel)
    return mel * std + mean


def word_frames(words: list[dict], num_frames: int, vocabulary: dict[str, int]) -> np.ndarray:
    """Per-video-frame word classes from a sample's word alignment (``json.words``): 0 where no word is spoken, else
    1 + the word's index in the vocabulary; a frame two words share goes to the later one. Unknown words are 0."""
    labels = np.zeros(num_frames, np.int64)
    for w in words:
        labels[max(0, int(w["start_frame"])) : max(0, int(w["end_frame"]))] = vocabulary.get(w["word"], -1) + 1
    return labels


def denormalise_video(frames, d: DataConf):
    """Normalised frames back to 0..1 intensities (figures)."""
    return (frames * d.std + d.mean).clip(0, 1)


@dataclass
class ClipLoader:
    """Turns raw webdataset samples into model inputs (one job: decode + crop/augment + normalise).

    What is read follows the recipe's data section (the video field, gray or RGB with ``data.color: rgb``, the mel)
    and the task's ``fields`` (optical flow, linear spectrogram). ``scoring`` (speech evaluation) keeps whole clips
    (no ``data.max_frames`` cut) and adds the true waveform and the clip's spectrogram parameters; ``whole`` keeps
    whole clips without them (a speech task's free-running validation).
    """

    recipe: Recipe
    train: bool
    epoch: int = 0
    scoring: bool = False
    task_fields: Any = None  # avtrain.tasks.Fields; None = the recipe's task's
    whole: bool = False

    def __post_init__(self):
        d, r = self.recipe.data, self.recipe
        self.augment = ClipAugment(r.augment, r.augment_conf, d.mean, d.std)
        wanted = self.task_fields if self.task_fields is not None else _task_fields(r)
        self.want_flow, self.want_linear = wanted.flow, wanted.linear
        self.context = int(getattr(wanted, "context", 0))
        self.vocabulary = {w: i for i, w in enumerate(getattr(wanted, "word_vocabulary", ()))}
        self.fields = (d.video_field, "mel.npy", "json") + ("flow.npz",) * self.want_flow \
            + ("linear.npy",) * self.want_linear + ("wav.flac",) * self.scoring

    def __call__(self, raw: dict[str, Any]) -> dict[str, Any]:
        d = self.recipe.data
        key = raw["__key__"]
        has_mel = any(name.startswith("mel.") for name in raw)
        rng = np.random.default_rng(_seed(self.recipe.seed, self.epoch, key)) if self.train else None
        window = self._window(raw, rng)  # (first loaded, window start, window stop, last loaded + 1) or None
        s = decode_sample(raw, fields=self.fields if has_mel else self.fields + ("wav.flac",),
                          flow_frames=None if window is None else (window[0], window[3] - 1))
        for name in self.fields:
            if name not in s and not (name == "mel.npy" and not has_mel):
                raise KeyError(f"sample {key}: no field {name!r} (have {sorted(k for k in raw if k[0] != '_')}); "
                               f"prepare the shards with a preset that stores it")
        meta = s["json"]
        video = s[d.video_field]
        if d.color == "gray" and video.ndim == 4:  # RGB face crops -> luma for single-channel front-ends
            video = video.astype(np.float32) @ LUMA
        elif d.color == "rgb" and video.ndim != 4:
            raise ValueError(f"sample {key}: data.color is rgb but {d.video_field!r} crops are gray")
        t = clip_frames = video.shape[0]
        mel = s.get("mel.npy")
        if mel is None:
            params = SpectrogramParams(**meta.get("spectrogram", {}))
            mel = mel_spectrogram(s["wav.flac"], params, num_frames=MEL_PER_FRAME * t)
        flow, linear = s.get("flow.npz"), s.get("linear.npy")  # flow: already cut to the loaded frames
        centre = (0, t)
        if window is not None:
            first, start, stop, end = window
            video = video[first:end]
            mel = mel[:, MEL_PER_FRAME * first : MEL_PER_FRAME * end]
            linear = None if linear is None else linear[:, MEL_PER_FRAME * first : MEL_PER_FRAME * end]
            centre, t = (start - first, stop - first), end - first
        frames = _resize(video, d.video_size) if d.video_size else video.astype(np.float32)
        frames = self.augment(frames, rng)
        mel = normalise_mel(mel[:, : MEL_PER_FRAME * t], d)
        out = {
            "key": key,
            "video": frames,
            "mel": mel.astype(np.float32),
            "label": int(meta["label"]) if meta.get("label") is not None else -1,
            "text": meta.get("text", ""),
        }
        if self.want_flow:
            out["flow"] = flow.astype(np.float32)
        if self.want_linear:
            out["linear"] = linear[:, : MEL_PER_FRAME * t].astype(np.float32)
        if self.context:
            out["centre"] = centre
        if self.vocabulary:
            labels = word_frames(meta.get("words") or [], clip_frames, self.vocabulary)
            out["word_frames"] = labels[window[0] : window[3]] if window is not None else labels[:t]
        if self.scoring:
            out["wave"] = s["wav.flac"]
            out["spectrogram"] = meta.get("spectrogram", {})
        return out

    def _window(self, raw: dict[str, Any], rng) -> tuple[int, int, int, int] | None:
        """Where a clip longer than ``data.max_frames`` is cut (train: a random window; eval: the centre one), with
        the task's ``context`` frames on each side as far as the clip has them: (first loaded, window start, window
        stop, last loaded + 1). None: the whole clip (short enough, scoring, no max_frames, or no readable JSON —
        decoding then reports the JSON)."""
        d = self.recipe.data
        if d.max_frames is None or self.scoring or self.whole:
            return None
        try:
            t = int(decode_field("json", raw["json"])["num_frames"])
        except Exception:  # noqa: BLE001 - decode_sample names the problem with the sample's key
            return None
        if t <= d.max_frames:
            return None
        start = int(rng.integers(0, t - d.max_frames + 1)) if rng is not None else (t - d.max_frames) // 2
        stop = start + d.max_frames
        return max(0, start - self.context), start, stop, min(t, stop + self.context)


def _task_fields(recipe: Recipe):
    from avtrain.tasks import task_for

    return task_for(recipe).fields()


def _resize(video: np.ndarray, size: int) -> np.ndarray:
    if video.ndim == 3:
        return resize_frames(video, size)
    return np.stack([resize_frames(video[..., c], size) for c in range(video.shape[-1])], -1)


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Pad clips to the longest in the batch; ``mask`` is True on real frames. Video is (B, T, C, H, W): C = 1 for
    gray, 3 for RGB; the two-tower fields ``flow`` (B, T - 1, 2, H, W) and ``linear`` (B, bins, 4T) when present."""
    lengths = torch.tensor([s["video"].shape[0] for s in samples], dtype=torch.long)
    tmax = int(lengths.max())
    first = samples[0]
    h, w = first["video"].shape[1:3]
    channels = first["video"].shape[3] if first["video"].ndim == 4 else 1
    n_mels = first["mel"].shape[0]
    video = torch.zeros(len(samples), tmax, channels, h, w)
    mel = torch.zeros(len(samples), n_mels, MEL_PER_FRAME * tmax)
    flow = torch.zeros(len(samples), max(tmax - 1, 0), 2, *first["flow"].shape[1:3]) if "flow" in first else None
    linear = torch.zeros(len(samples), first["linear"].shape[0], MEL_PER_FRAME * tmax) if "linear" in first else None
    for i, s in enumerate(samples):
        t = s["video"].shape[0]
        v = torch.from_numpy(s["video"])
        video[i, :t] = v.permute(0, 3, 1, 2) if v.dim() == 4 else v[:, None]
        mel[i, :, : MEL_PER_FRAME * t] = torch.from_numpy(s["mel"])
        if flow is not None:
            flow[i, : t - 1] = torch.from_numpy(s["flow"]).permute(0, 3, 1, 2)
        if linear is not None:
            linear[i, :, : MEL_PER_FRAME * t] = torch.from_numpy(s["linear"])
    mask = torch.arange(tmax)[None, :] < lengths[:, None]
    batch = {
        "video": video,
        "mel": mel,
        "lengths": lengths,
        "mask": mask,
        "labels": torch.tensor([s["label"] for s in samples], dtype=torch.long),
        "keys": [s["key"] for s in samples],
        "texts": [s["text"] for s in samples],
    }
    if flow is not None:
        batch["flow"] = flow
    if linear is not None:
        batch["linear"] = linear
    if "centre" in first:
        batch["centre"] = torch.tensor([s["centre"] for s in samples], dtype=torch.long)
    if "word_frames" in first:  # -100 on padding: cross-entropy's ignore index
        words = torch.full((len(samples), tmax), -100, dtype=torch.long)
        for i, s in enumerate(samples):
            words[i, : len(s["word_frames"])] = torch.from_numpy(s["word_frames"])
        batch["word_frames"] = words
    if "wave" in first:
        batch["waves"] = [s["wave"] for s in samples]
        batch["spectrograms"] = [s["spectrogram"] for s in samples]
    return batch


def build_dataset(recipe: Recipe, split: str, *, train: bool, epoch: int = 0, distributed: bool = False,
                  scoring: bool = False, fields: Any = None, whole: bool = False):
    """The webdataset pipeline of one epoch of ``split``.

    ``distributed`` splits shards across ranks (training); evaluation reads every shard on the calling rank.
    ``scoring``: whole clips with their true waveforms and spectrogram parameters (speech evaluation); ``whole``:
    whole clips (no ``data.max_frames`` cut).
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
    ds = ds.compose(Guarded(ClipLoader(recipe, train=train, epoch=epoch, scoring=scoring, task_fields=fields,
                                       whole=whole),
                            d.on_bad_sample, MEL_PER_FRAME))  # bad samples: raised or skipped and counted
    batch = d.batch_size if train else d.eval_batch_size
    return ds.batched(batch, collation_fn=WithSkips(collate), partial=True)


def loader_workers(requested: int, num_shards: int, world_size: int = 1, rank: int = 0) -> int:
    """Workers for one rank's loader: at most one per shard the rank reads (``split_by_node`` gives rank r the
    shards r, r + world, ...; ``split_by_worker`` deals those to the workers), so that no worker sits idle."""
    mine = len(range(rank, num_shards, world_size)) if world_size > 1 else num_shards
    return max(0, min(requested, mine))


def build_loader(recipe: Recipe, split: str, *, train: bool, epoch: int = 0, distributed: bool = False,
                 scoring: bool = False, fields: Any = None, pin_memory: bool = False, whole: bool = False):
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
