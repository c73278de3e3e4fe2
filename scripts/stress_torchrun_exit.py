"""Start the 2-rank gloo speech run of tests/test_avtrain_ddp.py many times and count the runs that do not exit 0.

    python scripts/stress_torchrun_exit.py --runs 60

A rank that aborts at interpreter exit ("terminate called without an active exception") fails a torchrun job after
all of its work is done; it shows in a few runs in a hundred, so one passing test run says nothing. Each run trains
one epoch on 8 synthetic clips, validates twice (one rank holds no validation clip) and exits (~7 s a run).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_avtrain_ddp import run_speech_job  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=60)
    args = parser.parse_args()
    failed = 0
    for i in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            proc = run_speech_job(Path(tmp))
        if proc.returncode != 0:
            failed += 1
            last = [line for line in proc.stderr.splitlines() if "terminate" in line or "Error" in line][:1]
            print(f"run {i}: exit {proc.returncode} {last[0] if last else ''}", flush=True)
    print(f"{failed} of {args.runs} runs failed")


if __name__ == "__main__":
    main()
