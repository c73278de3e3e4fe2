"""Benchmark avtrain's input pipeline per crop codec: training samples/s one data-loader worker delivers.

    python scripts/bench_loader.py --batches 20                       # synthetic LRW-shaped clips
    python scripts/bench_loader.py --content out/grid-s1-npy          # real crops from avprep shards (any codec)
    python scripts/bench_loader.py --workers 8 --batches 60           # on a GPU box: what 8 workers deliver

LRW-shaped samples (29 frames of 112x112 gray mouth + an 80 x 116 mel, recipe lrw-bridging at batch 64: decode,
augment, normalise, pad, collate; no model) are written once per crop codec avprep can write (mp4 = H.264, jpg =
JPEG filmstrip, npy = raw). The content is either synthetic (moving bars on pixel noise: harder to compress and
decode than lips, a conservative figure) or 29-frame windows of the mouth crops in avprep shards.

Per codec it reports: bytes per clip, CPU ms to decode the crop field alone, the loader's CPU time per sample
in-process (time.process_time, 0 workers: samples per CPU-second = what one worker delivers on a core of its own,
whatever else runs on the machine), and wall-clock samples/s with each --workers count (contended when the machine
is shared; with 1 worker the split is read to its end and the worker's own CPU time per sample is reported too:
it includes the worker's start-up and moving each batch into shared memory for the main process).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from avbridge.sample import decode_field, decode_sample, encode_field
from avtrain.config import load_recipe
from avtrain.data import build_loader, split_shards
from avtrain.synthetic import CODECS, lrw_shards, make_clip

ROOT = Path(__file__).resolve().parents[1]
FRAMES = 29


def real_windows(shards: Path, limit: int) -> list[np.ndarray]:
    """Non-overlapping 29-frame windows of the mouth crops in avprep shards (112x112 gray expected)."""
    import webdataset as wds

    out = []
    urls = sorted(str(p) for p in shards.glob("*.tar"))
    for raw in wds.WebDataset(urls, shardshuffle=False, empty_check=False):
        mouth = decode_sample(raw, fields=("mouth",))["mouth"]
        if mouth.ndim == 4:
            mouth = np.round(mouth.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.uint8)
        out += [mouth[s : s + FRAMES] for s in range(0, len(mouth) - FRAMES + 1, FRAMES)]
        if len(out) >= limit:
            break
    if not out:
        raise SystemExit(f"no mouth crops of >= {FRAMES} frames in {shards}")
    return out[:limit]


def real_shards(root: Path, windows: list[np.ndarray], codec: str, samples: int, shards: int) -> Path:
    """LRW-shaped shards whose crops are the real windows (repeated), each encoded once with ``codec``."""
    import webdataset as wds

    rng = np.random.default_rng(0)
    mel = make_clip(0, FRAMES, 8, 80, rng)[1]  # a synthetic mel: its decode cost does not depend on content
    encoded = [encode_field(f"mouth.{codec}", w) for w in windows]
    mel_bytes = encode_field("mel.npy", mel)
    per = -(-samples // shards)
    names = []
    for s in range(shards):
        names.append(f"train-{s:06d}.tar")
        with wds.TarWriter(str(root / names[-1])) as sink:
            for i in range(per):
                key = f"real_{s}_{i:05d}"
                label = int(rng.integers(0, 500))
                meta = {"key": key, "label": label, "text": f"w{label}", "num_frames": FRAMES, "fps": 25,
                        "sample_rate": 16000, "samples_per_frame": 640, "split": "train"}
                sink.write({"__key__": key, f"mouth.{codec}": encoded[(s * per + i) % len(encoded)],
                            "mel.npy": mel_bytes, "json": encode_field("json", meta)})
    (root / "index.json").write_text(json.dumps({"splits": {"train": {"shards": names, "samples": per * shards}}}))
    return root


def field_stats(shards: Path, codec: str, count: int = 16) -> tuple[float, float]:
    """(KiB per crop field, CPU ms to decode it) over the first ``count`` samples."""
    import webdataset as wds

    blobs = []
    for raw in wds.WebDataset(split_shards(shards, "train"), shardshuffle=False, empty_check=False):
        blobs.append(raw[f"mouth.{codec}"])
        if len(blobs) >= count:
            break
    decode_field(f"mouth.{codec}", blobs[0])  # imports, first-call set-up
    start = time.process_time()
    for _ in range(3):
        for b in blobs:
            decode_field(f"mouth.{codec}", b)
    ms = (time.process_time() - start) / (3 * len(blobs)) * 1e3
    return float(np.mean([len(b) for b in blobs]) / 1024), ms


def run_loader(shards: Path, workers: int, batches: int | None, batch_size: int, size: int = 112) -> dict:
    """Samples/s after the first batch (worker start-up, shuffle-buffer fill). ``batches=None`` reads the split to
    its end, so the workers have decoded exactly the split when their CPU time is read."""
    recipe = load_recipe(ROOT / "recipes" / "lrw-bridging.yaml",
                         [f"data.shards={shards}", f"data.num_workers={workers}", f"data.batch_size={batch_size}",
                          "data.shuffle_buffer=256", f"data.video_size={size}"])
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    loader = iter(build_loader(recipe, "train", train=True))
    total = int(next(loader)["video"].shape[0])
    count, wall, cpu = 0, time.perf_counter(), time.process_time()
    for _ in range(batches) if batches is not None else iter(int, 1):
        try:
            count += int(next(loader)["video"].shape[0])
        except StopIteration:
            break
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    total += count
    del loader  # joins the workers, so their CPU time lands in RUSAGE_CHILDREN
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    worker_cpu = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
    return {"samples": count, "wall_s": wall, "samples_per_s": count / wall, "main_cpu_s": cpu,
            "cpu_ms_per_sample": cpu / max(count, 1) * 1e3, "worker_cpu_s": worker_cpu,
            "worker_cpu_ms_per_sample": worker_cpu / total * 1e3 if batches is None else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--content", default="synthetic", help="synthetic, or a folder of avprep shards (mouth crops)")
    parser.add_argument("--codecs", nargs="+", default=list(CODECS), choices=CODECS)
    parser.add_argument("--batches", type=int, default=20, help="timed batches per measurement (after 1 warm-up)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, nargs="*", default=[1], help="worker counts for the wall-clock runs")
    parser.add_argument("--size", type=int, default=112, help="side of the synthetic crops (LRW: 88-112)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--tmp", type=Path, help="where to write the shards (default: a new temporary folder)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the loader's own work, not intra-op threads, is measured
    tmp = args.tmp or Path(tempfile.mkdtemp(prefix="bench-loader-"))
    most = max([1, *args.workers])
    samples = (args.batches + 2) * args.batch_size * (1 + most // 8)  # warm-up + timed, with spare for the workers
    shards = max(16, most * 2)
    windows = None if args.content == "synthetic" else real_windows(Path(args.content), 64)
    results = []
    what = (f"synthetic {args.size}x{args.size}" if windows is None
            else f"{len(windows)} real windows from {args.content}")
    print(f"content: {what}, "
          f"batch {args.batch_size}, {args.batches} timed batches, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    for codec in args.codecs:
        root = tmp / codec
        root.mkdir(parents=True, exist_ok=True)
        if windows is None:
            lrw_shards(root, samples, shards=shards, codec=codec, size=args.size)
        else:
            real_shards(root, windows, codec, samples, shards)
        kib, decode_ms = field_stats(root, codec)
        inproc = run_loader(root, 0, args.batches, args.batch_size, args.size)
        row = {"codec": codec, "kib_per_clip": kib, "decode_cpu_ms": decode_ms,
               "cpu_ms_per_sample": inproc["cpu_ms_per_sample"], "samples_per_cpu_s": 1e3 / inproc["cpu_ms_per_sample"],
               "workers": {}}
        for w in args.workers:
            # 1 worker reads the whole split (exact worker CPU per sample); more workers: the timed batches
            row["workers"][w] = run_loader(root, w, None if w == 1 else args.batches, args.batch_size, args.size)
        results.append(row)
        walls = ", ".join(f"{w} workers {r['samples_per_s']:.0f}/s" + (
            f" (worker CPU {r['worker_cpu_ms_per_sample']:.2f} ms/sample)" if w == 1 else "")
            for w, r in row["workers"].items())
        print(f"{codec:>4}: {kib:6.1f} KiB/clip, decode {decode_ms:5.2f} ms CPU, loader {row['cpu_ms_per_sample']:5.2f}"
              f" ms CPU/sample = {row['samples_per_cpu_s']:6.1f} samples per CPU-second; {walls}", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"content": args.content, "batch_size": args.batch_size,
                                         "cores": os.cpu_count(), "results": results}, indent=1))


if __name__ == "__main__":
    main()
