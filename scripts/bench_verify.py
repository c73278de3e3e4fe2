"""What checking shard checksums costs (issue 22, item 2): ``avprep verify``'s hashing speed, and avtrain's check
before each shard against the loading it guards.

    PYTHONPATH=. python scripts/bench_verify.py --shards FOLDER --recipe recipes/grid-words-bridging.yaml

FOLDER: avprep shards whose ledger records SHA-256s. The loader reads one training epoch in this process
(``num_workers`` 0) with ``data.verify_checksums`` on and off, alternating round by round so that a machine shared
with other work weighs on both alike; CPU time (process time) is reported, not wall time. The check hashes each
shard once per process, so an epoch in fresh workers pays it once per shard: the on/off difference is that.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

CHECK_CPU = [0.0]  # CPU seconds spent inside avtrain.data.verify.check (the stage's own cost)


def epoch_cpu(recipe, verify: bool) -> tuple[float, int]:
    import avtrain.data.verify as verify_module
    from avtrain.data.loader import build_dataset

    verify_module._VERIFIED.clear()  # as in a fresh loader worker
    data = recipe.data.model_copy(update={"verify_checksums": verify, "num_workers": 0})
    recipe = recipe.model_copy(update={"data": data})
    start = time.process_time()
    batches = sum(1 for _ in build_dataset(recipe, "train", train=True))
    return time.process_time() - start, batches


def _timed_check():
    import avtrain.data.verify as verify_module

    inner = verify_module.check

    def check(path, expected):
        start = time.process_time()
        try:
            return inner(path, expected)
        finally:
            CHECK_CPU[0] += time.process_time() - start

    verify_module.check = check


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shards", type=Path, required=True)
    parser.add_argument("--recipe", type=Path, default=Path("recipes/grid-words-bridging.yaml"))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from avbridge.shardlist import file_sha256, recorded_checksums
    from avtrain.config.loading import load_recipe

    names = sorted(recorded_checksums(args.shards))
    size = sum((args.shards / n).stat().st_size for n in names)
    start, cpu = time.perf_counter(), time.process_time()
    for n in names:
        file_sha256(args.shards / n)
    hash_wall, hash_cpu = time.perf_counter() - start, time.process_time() - cpu
    recipe = load_recipe(args.recipe, [f"data.shards={args.shards}"])
    _timed_check()
    epoch_cpu(recipe, False)  # warm-up: imports and first-use costs land in no measured epoch
    on, off = [], []
    for r in range(args.rounds):
        for verify in ((True, False) if r % 2 == 0 else (False, True)):
            seconds, batches = epoch_cpu(recipe, verify)
            (on if verify else off).append(seconds)
            print(f"round {r} verify={verify}: {seconds:.1f} s CPU, {batches} batches", flush=True)
    result = {
        "load_average": os.getloadavg(), "shards": len(names), "mib": round(size / 2**20, 1),
        "hash_cpu_mib_s": round(size / 2**20 / hash_cpu, 1), "hash_wall_mib_s": round(size / 2**20 / hash_wall, 1),
        "epoch_cpu_verify_on": on, "epoch_cpu_verify_off": off,
        "hash_share_of_epoch": round(hash_cpu / (sum(off) / len(off)), 4),
        "check_cpu_per_verified_epoch": round(CHECK_CPU[0] / len(on), 3),
        "check_share_of_epoch": round(CHECK_CPU[0] / len(on) / (sum(off) / len(off)), 4),
        "on_over_off": round(sum(on) / sum(off), 4),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
