"""Start the 2-rank gloo speech run of tests/test_avtrain_ddp.py many times and count the runs that do not exit 0.

    python scripts/stress_torchrun_exit.py --runs 60

A rank that aborts at interpreter exit ("terminate called without an active exception") fails a torchrun job after
all of its work is done; it shows in a few runs in a hundred, so one passing test run says nothing. Each run trains
one epoch on 8 synthetic clips, validates twice (one rank holds no validation clip) and exits (~7 s a run).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from avtrain.synthetic import write_shards  # noqa: E402
from test_avtrain_ddp import SPEECH_RECIPE, SPEECH_WORKER  # noqa: E402


def one_run(tmp: Path) -> subprocess.CompletedProcess:
    shards = write_shards(tmp / "syn", splits={"train": (2, 4), "val": (1, 3)}, size=96, max_frames=5)
    recipe = tmp / "speech.yaml"
    recipe.write_text(SPEECH_RECIPE.format(out=tmp / "run", shards=shards))
    script = tmp / "speech_worker.py"
    script.write_text(SPEECH_WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(script), str(recipe), str(tmp)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=60)
    args = parser.parse_args()
    failed = 0
    for i in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            proc = one_run(Path(tmp))
        if proc.returncode != 0:
            failed += 1
            last = [line for line in proc.stderr.splitlines() if "terminate" in line or "Error" in line][:1]
            print(f"run {i}: exit {proc.returncode} {last[0] if last else ''}", flush=True)
    print(f"{failed} of {args.runs} runs failed")


if __name__ == "__main__":
    main()
