"""Benchmark avtrain's input pipeline: training samples/s delivered per data-loader worker setting.

    python scripts/bench_loader.py --grid-shards out/grid-s1-words --batches 40

Two sample shapes, each through the loader of the recipe that trains on it (decode H.264 crops and the mel,
augment, pad, collate — everything but the model):
- GRID-shaped: the real s1 word shards (2-15 frames of 112x112 gray mouth + 80-mel), recipe grid-words-bridging
  (resized to 64, random 56 crop, flip, erasing);
- LRW-shaped: synthetic clips of 29 frames at 112x112 + an 80 x 116 mel written by avtrain.synthetic (moving bars
  on noise: more expensive to decode than real lips, so a conservative number), recipe lrw-bridging.
Compare with what a training step consumes (docs/benchmarks.md, "Training throughput"): the loader must deliver at
least that many samples/s with the workers left over from training.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from avtrain.config import load_recipe
from avtrain.data import build_loader
from avtrain.synthetic import write_shards

ROOT = Path(__file__).resolve().parents[1]


def samples_per_second(recipe_path: Path, shards: Path, workers: int, batches: int, batch_size: int) -> float:
    recipe = load_recipe(recipe_path, [f"data.shards={shards}", f"data.num_workers={workers}",
                                       f"data.batch_size={batch_size}", "data.shuffle_buffer=64"])
    loader = iter(build_loader(recipe, "train", train=True))
    next(loader)  # the first batch pays for worker start-up and the shuffle buffer's fill
    count, start = 0, time.perf_counter()
    for _ in range(batches):
        try:
            batch = next(loader)
        except StopIteration:
            break
        count += int(batch["video"].shape[0])
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid-shards", type=Path, default=ROOT / "out" / "grid-s1-words")
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    torch.set_num_threads(1)  # the loader's own work, not intra-op threads, is what is measured
    console = Console()
    if not (args.grid_shards / "index.json").exists():
        raise SystemExit(f"no shards at {args.grid_shards}: make them with `make demo` or avprep grid --unit word")
    lrw = Path(tempfile.mkdtemp(prefix="bench-loader-lrw-"))
    # 8 shards so 2 workers each get several; enough clips for the timed batches after the warm-up one.
    per_shard = (args.batches + 2) * args.batch_size // 8 + 1
    write_shards(lrw, splits={"train": (8, per_shard)}, num_classes=500, size=112, min_frames=29, max_frames=29)
    cases = [("GRID words (real s1)", ROOT / "recipes" / "grid-words-bridging.yaml", args.grid_shards),
             ("LRW-shaped 29x112x112 (synthetic)", ROOT / "recipes" / "lrw-bridging.yaml", lrw)]
    table = Table(title=f"avtrain loader: training samples/s, batch {args.batch_size}, {os.cpu_count()} cores")
    table.add_column("samples")
    for w in args.workers:
        table.add_column(f"{w} workers" if w != 1 else "1 worker", justify="right")
    for name, recipe, shards in cases:
        table.add_row(name, *[f"{samples_per_second(recipe, shards, w, args.batches, args.batch_size):.1f}"
                              for w in args.workers])
    console.print(table)
    console.print(f"load average after the run: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
