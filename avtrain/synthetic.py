"""Tiny synthetic word-clip shards in avprep's layout, for tests and smoke runs without a corpus.

Each class draws a bright bar sweeping across the frame at a class-specific angle and speed, and a mel band at a
class-specific height, so a model can learn the task in a few steps; clip lengths vary, as GRID word clips do.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import webdataset as wds

from avbridge.sample import encode_field


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
                 size: int = 32, n_mels: int = 80, min_frames: int = 3, max_frames: int = 8, seed: int = 0) -> Path:
    """``splits`` maps split -> (number of shards, samples per shard). Writes index.json last, like avprep."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    splits = splits or {"train": (2, 16), "val": (1, 8), "test": (1, 8)}
    rng = np.random.default_rng(seed)
    index = {"splits": {}, "run": {"vocabulary": [f"w{i}" for i in range(num_classes)]}}
    for split, (n_shards, per_shard) in splits.items():
        names = []
        for s in range(n_shards):
            name = f"{split}-{s:06d}.tar"
            with wds.TarWriter(str(root / name)) as sink:
                for i in range(per_shard):
                    label = int(rng.integers(0, num_classes))
                    length = int(rng.integers(min_frames, max_frames + 1))
                    video, mel = make_clip(label, length, size, n_mels, rng)
                    key = f"syn_{split}_{s}_{i:04d}"
                    meta = {"key": key, "corpus": "synthetic", "speaker": "s0", "utterance": key, "split": split,
                            "unit": "word", "text": f"w{label}", "label": label, "num_frames": length, "fps": 25,
                            "sample_rate": 16000, "samples_per_frame": 640, "preset": "synthetic",
                            "preset_hash": "0"}
                    sink.write({"__key__": key, "mouth.mp4": encode_field("mouth.mp4", video),
                                "mel.npy": encode_field("mel.npy", mel), "json": encode_field("json", meta)})
            names.append(name)
        index["splits"][split] = {"shards": names, "samples": n_shards * per_shard}
    (root / "index.json").write_text(json.dumps(index, indent=1))
    return root
