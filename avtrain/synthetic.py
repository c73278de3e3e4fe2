"""Synthetic shards in avprep's layout, for tests, benchmarks and smoke runs without a corpus.

Each class draws a bright bar sweeping across the frame at a class-specific angle and speed, and a mel band at a
class-specific height, so a model can learn the task in a few steps; clip lengths vary, as GRID word clips do.
``lrw_shards`` and ``grid_speech_shards`` give the shapes of LRW word clips and GRID sentence clips (for loader
benchmarks and the GPU check); their bars sit on pixel noise, which costs codecs more than real lips do.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import webdataset as wds

from avbridge.sample import encode_field

CODECS = ("mp4", "jpg", "npy")  # the crop codecs avprep writes (avprep.presets.Preset.crop_codec)
_TINT = np.array([1.0, 0.8, 0.6], np.float32)  # RGB clips: the bar in a colour, so chroma is not flat
GRID_WORDS = ("bin", "lay", "place", "set", "blue", "green", "red", "white")  # a clip's one aligned word


def make_clip(label: int, length: int, size: int, n_mels: int, rng: np.random.Generator):
    yy, xx = np.mgrid[0:size, 0:size] / size
    angle = np.pi * label / 7.0
    frames = []
    for t in range(length):
        phase = (t / max(length - 1, 1)) * (0.5 + 0.1 * (label % 5))
        d = np.cos(angle) * xx + np.sin(angle) * yy - phase
        frames.append(np.exp(-(d**2) / 0.01) * 200 + rng.normal(0, 8, (size, size)) + 30)
    video = np.clip(np.stack(frames), 0, 255).astype(np.uint8)
    mel = rng.normal(-6.0, 0.5, (n_mels, 4 * length)).astype(np.float32)
    band = (label * 7) % (n_mels - 8)
    mel[band : band + 8] += 4.0
    return video, mel


def write_shards(root: str | Path, *, splits: dict[str, tuple[int, int]] | None = None, num_classes: int = 4,
                 size: int = 32, n_mels: int = 80, min_frames: int = 3, max_frames: int = 8, seed: int = 0,
                 codec: str = "mp4", field: str = "mouth", color: str = "gray", distinct: int | None = None,
                 two_tower: int | None = None) -> Path:
    """``splits`` maps split -> (number of shards, samples per shard). Writes index.json last, like avprep.

    ``codec``: how crops are stored (mp4, jpg or npy, as avprep's ``crop_codec``); ``field``: mouth or face;
    ``color``: gray (T, H, W) or rgb (T, H, W, 3) crops. ``distinct``: draw only this many different clips and
    repeat their encoded bytes under new keys (fast to write thousands of samples for throughput runs);
    None draws every clip. ``two_tower``: also the two-tower model's fields, optical flow and a linear spectrogram
    of this many bins. Every clip carries a one-word alignment (``json.words``) with a GRID word.
    """
    if codec not in CODECS:
        raise ValueError(f"unknown crop codec {codec!r}; known: {', '.join(CODECS)}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    splits = splits or {"train": (2, 16), "val": (1, 8), "test": (1, 8)}
    rng = np.random.default_rng(seed)
    pool: list[tuple[int, int, bytes, bytes, dict]] = []

    def draw() -> tuple[int, int, bytes, bytes, dict]:
        label = int(rng.integers(0, num_classes))
        length = int(rng.integers(min_frames, max_frames + 1))
        video, mel = make_clip(label, length, size, n_mels, rng)
        if color == "rgb":
            video = np.clip(video[..., None] * _TINT, 0, 255).astype(np.uint8)
        name = f"{field}.{codec}"
        extra = {}
        if two_tower:
            flow = rng.integers(-20, 21, (length - 1, size, size, 2)).astype(np.int8)
            extra = {"flow.npz": encode_field("flow.npz", flow),
                     "linear.npy": encode_field("linear.npy", rng.uniform(0, 1, (two_tower, 4 * length)))}
        return label, length, encode_field(name, video), encode_field("mel.npy", mel), extra

    index = {"splits": {}, "run": {"vocabulary": [f"w{i}" for i in range(num_classes)]}}
    count = 0
    for split, (n_shards, per_shard) in splits.items():
        names = []
        for s in range(n_shards):
            name = f"{split}-{s:06d}.tar"
            with wds.TarWriter(str(root / name)) as sink:
                for i in range(per_shard):
                    if distinct is not None and len(pool) < distinct:
                        pool.append(draw())
                    label, length, video_bytes, mel_bytes, extra = (draw() if distinct is None
                                                                    else pool[count % distinct])
                    count += 1
                    key = f"syn_{split}_{s}_{i:04d}"
                    meta = {"key": key, "corpus": "synthetic", "speaker": "s0", "utterance": key, "split": split,
                            "unit": "word", "text": f"w{label}", "label": label, "num_frames": length, "fps": 25,
                            "sample_rate": 16000, "samples_per_frame": 640, "preset": "synthetic",
                            "preset_hash": "0",
                            "words": [{"word": GRID_WORDS[label % len(GRID_WORDS)], "start_frame": 1,
                                       "end_frame": max(1, length - 1)}]}
                    if two_tower:
                        meta["flow"] = {"scale": 0.25}
                    sink.write({"__key__": key, f"{field}.{codec}": video_bytes, "mel.npy": mel_bytes,
                                "json": encode_field("json", meta), **extra})
            names.append(name)
        index["splits"][split] = {"shards": names, "samples": n_shards * per_shard}
    (root / "index.json").write_text(json.dumps(index, indent=1))
    return root


def lrw_shards(root: str | Path, samples: int, *, shards: int = 16, codec: str = "mp4", distinct: int = 64,
               splits: tuple[str, ...] = ("train",), size: int = 112) -> Path:
    """LRW-shaped word clips: 29 frames of 112x112 (``size``) gray mouth, an 80 x 116 mel, 500 classes
    (``lrw-bridging``)."""
    per = -(-samples // shards)
    return write_shards(root, splits={s: (shards, per) for s in splits}, num_classes=500, size=size,
                        min_frames=29, max_frames=29, codec=codec, distinct=distinct)


def grid_speech_shards(root: str | Path, samples: int, *, shards: int = 16, codec: str = "mp4", distinct: int = 32,
                       splits: tuple[str, ...] = ("train",)) -> Path:
    """GRID-shaped sentence clips: 75 frames of 96x96 RGB face, an 80 x 300 mel (``grid-s1-speech-bridging``)."""
    per = -(-samples // shards)
    return write_shards(root, splits={s: (shards, per) for s in splits}, num_classes=51, size=96,
                        min_frames=75, max_frames=75, codec=codec, field="face", color="rgb", distinct=distinct)
