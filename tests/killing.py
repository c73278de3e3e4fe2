"""Killing an avprep run at the worst moment, for the resume tests: once ``shards`` shards are in its ledger and
another is being written (a ``.tmp`` file exists), SIGKILL, as a cluster's OOM killer or preemption would."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path


def kill_mid_shard(proc: subprocess.Popen, out: Path, shards: int = 1, timeout: float = 240, poll: float = 0.05
                   ) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        ledger = out / "ledger.jsonl"
        if ledger.exists() and ledger.read_text().count("\n") >= shards and list(out.glob("*.tmp")):
            break
        time.sleep(poll)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
