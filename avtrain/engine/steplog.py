"""The training log: loss parts kept on the device and read back every ``trainer.log_every`` steps, in one copy."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch


class StepLog:
    """Loss parts of the steps since the last flush, kept on the device; every ``log_every`` steps (and step 1)
    one row goes to ``train_log.jsonl`` and TensorBoard, with the learning rate and the train samples/s."""

    def __init__(self, path: Path, log_every: int, world_size: int):
        self.path, self.every, self.world = path, max(1, log_every), world_size
        self.pending: list[tuple[int, int, dict[str, torch.Tensor], float, float]] = []
        self.samples, self.t0 = 0, time.perf_counter()

    def start_epoch(self) -> None:
        self.samples, self.t0 = 0, time.perf_counter()

    def seconds(self) -> float:
        return time.perf_counter() - self.t0

    def add(self, epoch: int, step: int, parts: dict[str, torch.Tensor], samples: int, lr: float) -> None:
        self.samples += samples
        self.pending.append((epoch, step, parts, lr, self.samples * self.world / max(self.seconds(), 1e-9)))

    def due(self, step: int) -> bool:
        return step % self.every == 0 or step == 1

    def flush(self, main: bool) -> list[dict]:
        if not self.pending:
            return []
        first = next(iter(self.pending[0][2].values()))
        device = first.device if torch.is_tensor(first) else torch.device("cpu")
        flat = [torch.as_tensor(v, device=device).detach().float().reshape(())
                for p in self.pending for v in p[2].values()]
        values = iter(torch.stack(flat).tolist())  # the one device-to-host copy of these steps
        rows = []
        for epoch, step, parts, lr, rate in self.pending:
            row = {"epoch": epoch, "step": step, **{k: next(values) for k in parts}}
            if self.due(step):
                row.update(lr=lr, samples_per_s=rate, logged=True)
            rows.append(row)
        self.pending = []
        if main:
            with open(self.path, "a") as f:
                for row in rows:
                    if row.get("logged"):
                        f.write(json.dumps({k: v for k, v in row.items() if k != "logged"}) + "\n")
        return rows
