"""The training loop: device, precision, DDP, optimisation, validation, checkpoints and logging.

Exact resume: data order and augmentation depend only on (seed, epoch, sample) (see data.py), the data loader gets
a private generator, and checkpoints carry every RNG state. A resumed run replays the interrupted epoch's batches,
skips the ones already trained on, and continues with bit-identical losses on CPU.
"""

from __future__ import annotations

import json
import math
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from avtrain.engine import checkpoint as ckpt
from avtrain.engine import distributed
from avtrain.config import SPEECH_MODELS, Recipe
from avtrain.data import build_loader, preprocessing_record, split_size
from avtrain.tasks.lipreading.losses import lipreading_loss
from avtrain.models import build_model
from avtrain.models.mtlam import mtlam_loss


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    epoch: int
    losses: list[float] = field(default_factory=list)  # total loss of every step this call ran (this rank)
    seen_keys: list[str] = field(default_factory=list)  # sample keys this rank trained on, in order
    best_metric: float | None = None
    metric_name: str = "acc"  # what best_metric is: val top-1 (classifiers) or val prediction loss (speech models)


def select_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("trainer.device is 'cuda' but no CUDA device is available")
    return torch.device(name)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_optimizer(recipe: Recipe, params) -> torch.optim.Optimizer:
    c = recipe.conf("optim")
    if recipe.optim == "sgd":
        return torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, nesterov=c.nesterov and c.momentum > 0,
                               weight_decay=c.weight_decay)
    cls = torch.optim.Adam if recipe.optim == "adam" else torch.optim.AdamW
    return cls(params, lr=c.lr, betas=tuple(c.betas), weight_decay=c.weight_decay)


def build_scheduler(recipe: Recipe, optimizer: torch.optim.Optimizer):
    """Epoch-level schedules (stepped once per epoch)."""
    c, epochs = recipe.conf("scheduler"), recipe.trainer.epochs
    if recipe.scheduler == "plateau":
        mode = "min" if recipe.model in SPEECH_MODELS else "max"  # val loss vs val accuracy
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode=mode, factor=c.factor,
                                                          patience=c.patience, min_lr=c.min_lr)
    if recipe.scheduler == "step":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, c.milestones, c.gamma)
    warm = c.warmup_epochs

    def factor(epoch: int) -> float:
        if epoch < warm:
            return (epoch + 1) / (warm + 1)
        if recipe.scheduler == "cosine":
            progress = (epoch - warm) / max(1, epochs - warm)
            return c.min_lr_ratio + (1 - c.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}


class Trainer:
    def __init__(self, recipe: Recipe, *, console: Console | None = None):
        self.recipe = recipe
        self.t = recipe.trainer
        self.console = console or Console(stderr=True)
        self.device = select_device(self.t.device)
        self.dist = distributed.setup(self.device.type)
        if self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        if self.t.threads and self.device.type == "cpu":
            torch.set_num_threads(self.t.threads)
        if self.t.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        self.run_dir = Path(recipe.output_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.amp_dtype = autocast_dtype(self.t.precision, self.device)

        seed_everything(recipe.seed)  # same initial weights on every rank
        self.model = build_model(recipe)
        if self.t.init_checkpoint:
            if not Path(self.t.init_checkpoint).exists():
                raise FileNotFoundError(f"trainer.init_checkpoint {self.t.init_checkpoint}: no such checkpoint")
            self.model.load_state_dict(ckpt.load(self.t.init_checkpoint, "cpu")["model"])
        self.model.to(self.device)
        self.optimizer = build_optimizer(recipe, self.model.parameters())
        self.scheduler = build_scheduler(recipe, self.optimizer)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.net = self.model
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        # different dropout masks per rank, but deterministic
        seed_everything(recipe.seed + 1000 * self.dist.rank + 1)
        self.epoch, self.epoch_step, self.step, self.best = 0, 0, 0, None
        # speech models regress spectrograms and compute their own loss; the best checkpoint has the lowest
        # validation loss of what inference decodes (the model's "prediction" term)
        self.speech = recipe.model in SPEECH_MODELS
        self.metric_name = "prediction" if self.speech else "acc"
        self.loss_fn = self._loss_for(recipe)
        self.writer = None
        self.preprocess = preprocessing_record(recipe.data.shards) if self.speech else None

    def _loss_for(self, recipe: Recipe):
        """(out, labels) -> (total, parts); the loss weights live in each model's own conf keys."""
        if self.speech:
            return lambda out, labels: (out["loss"], {k: float(v) for k, v in out["losses"].items()})
        if recipe.model == "mtlam":
            weights = self.model.weights  # from model_conf/memory_conf via MTLAMConfig.from_confs
            return lambda out, labels: mtlam_loss(out, labels, weights)
        mc, mem = recipe.conf("model"), recipe.conf("memory")
        kw = dict(audio_task_weight=mc.audio_task_weight, save_weight=mem.save_weight, bridge_weight=mem.bridge_weight)
        return lambda out, labels: lipreading_loss(out, labels, **kw)

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> dict:
        return {
            "model": ckpt.unwrap(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": ckpt.rng_state(),
            "epoch": self.epoch,
            "epoch_step": self.epoch_step,
            "step": self.step,
            "best": self.best,
            "recipe": self.recipe.model_dump(mode="json"),
            "preprocess": self.preprocess,  # avprep preset + mean face: what `avtrain synth` needs for a new video
        }

    def save(self, name: str = "last.pt") -> None:
        if self.dist.is_main:
            ckpt.save_atomic(self.state(), self.ckpt_dir / name)
        distributed.barrier(self.dist)

    def restore(self, path: Path) -> None:
        state = ckpt.load(path, self.device)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.epoch_step, self.step, self.best = (state["epoch"], state["epoch_step"], state["step"],
                                                             state["best"])
        if self.dist.rank == 0:
            ckpt.set_rng_state(state["rng"])
        else:  # rank 0's RNG was saved; other ranks re-derive theirs from the step so they stay distinct
            seed_everything(self.recipe.seed + 1000 * self.dist.rank + 1 + self.step)
        self.console.log(f"resumed from {path}: epoch {self.epoch}, step {self.step}")

    # ------------------------------------------------------------------ data
    def steps_cap(self) -> int | None:
        """Per-rank batches per epoch under DDP: equal on every rank, or the collective ops would hang."""
        if not self.dist.enabled:
            return None
        n = split_size(self.recipe.data.shards, self.recipe.data.train_split)
        if n is None:
            raise RuntimeError("DDP training needs index.json with the train split's sample count")
        return max(1, n // (self.dist.world_size * self.recipe.data.batch_size))

    def epoch_batches(self, epoch: int) -> Iterator[dict]:
        cap, done, repeat = self.steps_cap(), 0, 0
        while True:
            loader = build_loader(self.recipe, self.recipe.data.train_split, train=True,
                                  epoch=epoch + 1_000_003 * repeat, distributed=self.dist.enabled)
            got = False
            for batch in loader:
                got = True
                yield batch
                done += 1
                if cap is not None and done >= cap:
                    return
            # under DDP a rank whose shards ran dry re-reads them (reshuffled) until the common cap
            if cap is None or not got:
                return
            repeat += 1

    def batches_per_epoch(self) -> int | None:
        cap = self.steps_cap()
        if cap is not None:
            return cap
        n = split_size(self.recipe.data.shards, self.recipe.data.train_split)
        return None if n is None else math.ceil(n / self.recipe.data.batch_size)

    # ------------------------------------------------------------------ steps
    def autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def train_step(self, batch: dict) -> dict[str, float]:
        b = to_device(batch, self.device)
        self.net.train()
        with self.autocast():
            out = self.net(b) if self.speech else self.net(b["video"], b["lengths"], b["mask"], b["mel"])
            loss, parts = self.loss_fn(out, b["labels"])
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.t.grad_clip:
            self.scaler.unscale_(self.optimizer)
            parts["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.t.grad_clip))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return parts

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        if self.speech:
            return self.validate_speech()
        split = self.recipe.data.valid_split
        model = ckpt.unwrap(self.model).eval()
        correct = total = loss_sum = 0.0
        for batch in build_loader(self.recipe, split, train=False, distributed=self.dist.enabled):
            b = to_device(batch, self.device)
            with self.autocast():
                logits = model(b["video"], b["lengths"], b["mask"])["logits"].float()
            loss_sum += float(torch.nn.functional.cross_entropy(logits, b["labels"], reduction="sum"))
            correct += float((logits.argmax(-1) == b["labels"]).sum())
            total += len(b["labels"])
        correct, total, loss_sum = distributed.all_reduce_sum(self.dist, [correct, total, loss_sum], self.device)
        return {"acc": correct / max(total, 1), "loss": loss_sum / max(total, 1), "samples": total}

    @torch.no_grad()
    def validate_speech(self) -> dict[str, float]:
        """Teacher-forced loss terms averaged over the validation clips (free-running synthesis and STOI/PESQ are
        left to ``avtrain eval``: Griffin-Lim on every clip each epoch would cost more than the epoch)."""
        model = ckpt.unwrap(self.model).eval()
        names: list[str] = []
        sums: list[float] = []
        total = 0.0
        for batch in build_loader(self.recipe, self.recipe.data.valid_split, train=False,
                                  distributed=self.dist.enabled):
            with self.autocast():
                losses = model(to_device(batch, self.device))["losses"]
            if not names:
                names, sums = list(losses), [0.0] * len(losses)
            n = len(batch["keys"])
            sums = [acc + float(losses[k]) * n for acc, k in zip(sums, names)]
            total += n
        reduced = distributed.all_reduce_sum(self.dist, [*sums, total], self.device)
        total = reduced[-1]
        out = {k: v / max(total, 1) for k, v in zip(names, reduced[:-1])}
        out["loss"] = out.pop("total", float("nan"))
        out["samples"] = total
        return out

    def better(self, metric: float) -> bool:
        if self.best is None:
            return True
        return metric < self.best if self.speech else metric > self.best

    # ------------------------------------------------------------------ loop
    def log_scalars(self, prefix: str, values: dict[str, float], step: int) -> None:
        if self.writer is not None:
            for k, v in values.items():
                self.writer.add_scalar(f"{prefix}/{k}", v, step)

    def fit(self, resume: bool = True) -> TrainResult:
        last = self.ckpt_dir / "last.pt"
        if resume and last.exists():
            self.restore(last)
        result = TrainResult(self.run_dir, self.step, self.epoch, best_metric=self.best, metric_name=self.metric_name)
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.yaml").write_text(self.recipe.to_yaml())
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.run_dir / "tb"))
        log_path = self.run_dir / "train_log.jsonl"
        max_steps = self.t.max_steps
        n_batches = self.batches_per_epoch()
        progress = Progress(TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                            console=self.console, disable=not (self.t.progress and self.dist.is_main))
        stopped = False
        with progress:
            while self.epoch < self.t.epochs and not stopped:
                task = progress.add_task("train", total=n_batches, epoch=self.epoch, info="", completed=0)
                skip, seen, t0, t_samples = self.epoch_step, 0, time.perf_counter(), 0
                for batch in self.epoch_batches(self.epoch):
                    seen += 1
                    if seen <= skip:  # already trained on before the interruption
                        progress.advance(task)
                        continue
                    parts = self.train_step(batch)
                    self.step += 1
                    self.epoch_step += 1
                    t_samples += len(batch["labels"])
                    result.losses.append(parts["total"])
                    result.seen_keys.extend(batch["keys"])
                    progress.update(task, advance=1, info=f"loss {parts['total']:.3f}")
                    if self.dist.is_main and (self.step % self.t.log_every == 0 or self.step == 1):
                        parts["lr"] = self.optimizer.param_groups[0]["lr"]
                        parts["samples_per_s"] = t_samples * self.dist.world_size / (time.perf_counter() - t0)
                        self.log_scalars("train", parts, self.step)
                        with open(log_path, "a") as f:
                            f.write(json.dumps({"epoch": self.epoch, "step": self.step, **parts}) + "\n")
                    if self.t.save_every_steps and self.step % self.t.save_every_steps == 0:
                        self.save()
                    if max_steps is not None and self.step >= max_steps:
                        stopped = True
                        break
                progress.remove_task(task)
                if stopped:
                    self.save()
                    break
                self.end_epoch(time.perf_counter() - t0, t_samples)
        if self.writer is not None:
            self.writer.close()
        result.step, result.epoch, result.best_metric = self.step, self.epoch, self.best
        return result

    def end_epoch(self, seconds: float, samples: int) -> None:
        metric = None
        if self.t.val_each_epoch and self.recipe.data.valid_split:
            val = self.validate()
            metric = val[self.metric_name]
            self.log_scalars("val", val, self.step)
            if self.dist.is_main:
                head = f"val loss {val['loss']:.4f}, prediction {val['prediction']:.4f}" if self.speech else \
                    f"val acc {val['acc']:.4f}, val loss {val['loss']:.4f}"
                self.console.log(f"epoch {self.epoch}: {head}, "
                                 f"{samples * self.dist.world_size / max(seconds, 1e-9):.1f} train samples/s")
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(metric if metric is not None else 0.0)
        else:
            self.scheduler.step()
        improved = metric is not None and self.better(metric)
        if improved:
            self.best = metric
        self.epoch += 1
        self.epoch_step = 0
        self.save()
        if improved or metric is None:
            self.save("best.pt")


def train(recipe: Recipe, *, resume: bool = True, console: Console | None = None) -> TrainResult:
    trainer = Trainer(recipe, console=console)
    try:
        return trainer.fit(resume=resume)
    finally:
        distributed.teardown(trainer.dist)
