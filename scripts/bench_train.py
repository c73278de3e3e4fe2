"""Training throughput of the LRW-shaped lip-reading model with the associative bridge and of its N = 0 baseline.

Times full optimisation steps, alternating between the two models, (forward, Eq. 8 loss, backward, gradient clipping,
optimizer step) on random LRW-shaped batches (29 frames of 112x112 gray, 80 x 116 mel), so the number measures the
model, not the data loader. Reports samples/s for each N and the memory's overhead as the ratio of the two.

    python scripts/bench_train.py --batch 8 --threads 1 --json out/bench-train.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from avtrain.config import load_recipe
from avtrain.engine import build_optimizer
from avtrain.engine.precision import autocast, autocast_dtype, select_device
from avtrain.tasks import task_for

ROOT = Path(__file__).resolve().parents[1]


def make_step(slots: int, args, device: torch.device):
    """One optimisation step of the LRW-shaped model with N = slots, on a fixed random batch."""
    recipe = load_recipe(ROOT / "recipes" / "lrw-bridging.yaml", [f"memory_conf.num_slots={slots}"])
    torch.manual_seed(0)
    task = task_for(recipe)
    model = task.build_model().to(device).train()
    opt = build_optimizer(recipe, model.parameters())
    amp = autocast_dtype("auto", device)
    b, t = args.batch, args.frames
    video = torch.randn(b, t, 1, args.size, args.size, device=device)
    mel = torch.randn(b, 80, 4 * t, device=device)
    lengths = torch.full((b,), t, dtype=torch.long)
    mask = torch.ones(b, t, dtype=torch.bool, device=device)
    labels = torch.randint(0, 500, (b,), device=device)
    batch = {"video": video, "mel": mel, "lengths": lengths, "mask": mask, "labels": labels}

    def step():
        with autocast(device, amp):
            loss, _ = task.losses(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    return step, sum(p.numel() for p in model.parameters())


def bench(args, device: torch.device) -> list[dict]:
    """Steps of the two models alternate, so a change in background load hits both alike."""
    models = {n: make_step(n, args, device) for n in (88, 0)}
    for step, _ in models.values():
        for _ in range(args.warmup):
            step()
    times: dict[int, list[float]] = {n: [] for n in models}
    for _ in range(args.steps):
        for n, (step, _) in models.items():
            t0 = time.perf_counter()
            step()
            times[n].append(time.perf_counter() - t0)
    rows = []
    for n, (_, params) in models.items():
        med = sorted(times[n])[len(times[n]) // 2]
        rows.append({"num_slots": n, "params": params, "step_s_median": med, "samples_per_s": args.batch / med,
                     "step_s": times[n]})
    return rows


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--frames", type=int, default=29)
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads on CPU (default: torch's)")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    device = select_device(args.device)
    if args.threads and device.type == "cpu":
        torch.set_num_threads(args.threads)
    rows = bench(args, device)
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
        "batch": args.batch, "frames": args.frames,
        "size": args.size, "steps": args.steps, "rows": rows,
        "overhead_ratio": rows[1]["samples_per_s"] / rows[0]["samples_per_s"],
    }
    print(f"device {result['device']} ({device.type}), threads {result['threads']}, batch {args.batch}, "
          f"{args.frames}x{args.size}x{args.size}, median of {args.steps} steps")
    print("| model | parameters | step (s) | samples/s |")
    print("|---|---|---|---|")
    for r in rows:
        name = f"bridging N={r['num_slots']}" if r["num_slots"] else "baseline N=0"
        print(f"| {name} | {r['params'] / 1e6:.2f} M | {r['step_s_median']:.2f} | {r['samples_per_s']:.2f} |")
    print(f"baseline / bridging throughput ratio: {result['overhead_ratio']:.3f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
