"""One clip: a raw webdataset sample -> the model's inputs (decode, cut the training window, resize, augment,
normalise), and the mel normalisation both ways.

A training clip's window and augmentation draw from a generator seeded by (seed, epoch, key) only, so replaying an
epoch replays its clips exactly (how a resumed run skips the batches it already trained on).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from avbridge.sample import MEL_PER_FRAME, decode_field, decode_sample
from avbridge.spectra import SpectrogramParams, mel_spectrogram
from avtrain.config import DataConf, Recipe
from avtrain.data.augment import ClipAugment, resize_frames
from avtrain.data.fields import Fields


def _seed(*parts: int | str) -> np.random.SeedSequence:
    return np.random.SeedSequence([zlib.crc32(p.encode()) if isinstance(p, str) else int(p) for p in parts])


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


def word_boundary(meta: dict, num_frames: int) -> np.ndarray:
    """1.0 on the frames of the clip's word, 0.0 on its context. The word is ``word_span`` (a word sample stored with
    context, ``avprep grid --word-context``), else the one aligned word of a whole labelled clip (LRW's word centred
    in its 1.16 s, LRW-1000's word before its 0.4 s of trailing audio); a word sample without context is all word."""
    span = meta.get("word_span")
    words = meta.get("words") or []
    if span is None and meta.get("unit") != "word" and meta.get("label") is not None and len(words) == 1:
        span = (words[0]["start_frame"], words[0]["end_frame"])
    start, stop = span or (0, num_frames)
    indicator = np.zeros(num_frames, np.float32)
    indicator[max(0, int(start)) : max(0, int(stop))] = 1.0
    return indicator


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
    task_fields: Fields = field(default_factory=Fields)  # what the task reads beyond video, mel and metadata
    whole: bool = False

    def __post_init__(self):
        d, r = self.recipe.data, self.recipe
        self.augment = ClipAugment(r.augment, r.augment_conf, d.mean, d.std)
        wanted = self.task_fields
        self.want_flow, self.want_linear, self.want_boundary = wanted.flow, wanted.linear, wanted.boundary
        self.context = int(wanted.context)
        self.vocabulary = {w: i for i, w in enumerate(wanted.word_vocabulary)}
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
        if self.want_boundary:
            indicator = word_boundary(meta, clip_frames)
            out["boundary"] = indicator[window[0] : window[3]] if window is not None else indicator[:t]
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


def _resize(video: np.ndarray, size: int) -> np.ndarray:
    if video.ndim == 3:
        return resize_frames(video, size)
    return np.stack([resize_frames(video[..., c], size) for c in range(video.shape[-1])], -1)
