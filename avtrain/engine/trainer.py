"""The training loop: device, precision, DDP, optimisation, validation, checkpoints and logging.

The loop never asks which model it trains: it is given the recipe's task (avtrain.api composes them), which builds
the model, names the fields the data module reads and those it keeps on the host, turns a batch into losses and a
validation batch into sums, and says which validation value picks the best checkpoint.

Exact resume: data order and augmentation depend only on (seed, epoch, sample) (see data/loader.py), the data
loader gets a private generator, and checkpoints carry every RNG state. A resumed run replays the interrupted
epoch's batches, skips the ones already trained on, and continues with bit-identical losses on CPU.

No host synchronisation per step: loss parts stay on the device and are read back every ``trainer.log_every``
steps (and at the end of an epoch), all at once.
"""

from __future__ import annotations

import math
import random
import warnings
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from avtrain.config import Recipe
from avtrain.data import build_loader, check_fields, preprocessing_record, split_shards, split_size
from avtrain.data.bad_samples import SkipTally
from avtrain.engine import checkpoint as ckpt
from avtrain.engine import distributed
from avtrain.engine.ema import WeightAverage
from avtrain.engine.optimisation import build_optimizer, build_scheduler, per_step
from avtrain.engine.precision import autocast, autocast_dtype, configure_cuda, select_device, to_channels_last
from avtrain.engine.runlock import hold_run_dir
from avtrain.engine.steplog import StepLog
from avtrain.engine.transfer import to_device

if TYPE_CHECKING:
    from avtrain.tasks.base import Task


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    epoch: int
    losses: list[float] = field(default_factory=list)  # total loss of every step this call ran (this rank)
    samples_seen: int = 0  # samples this rank trained on in this call
    # their keys, in order, only when asked (fit(record_keys=True): tests of exact resume and data splitting); an
    # LRW run would otherwise keep 500 000 strings an epoch
    seen_keys: list[str] = field(default_factory=list)
    best_metric: float | None = None
    metric_name: str = "acc"  # what best_metric is: val top-1 (classifiers), free-running val L1 (speech models)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    def __init__(self, recipe: Recipe, task: Task, *, console: Console | None = None):
        self.recipe = recipe
        self.t = recipe.trainer
        self.task = task
        self.console = console or Console(stderr=True)
        self.device = select_device(self.t.device)
        self.dist = distributed.setup(self.device.type)
        if self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
            configure_cuda(self.t.deterministic)
        # refused before any collective: a rank without a training shard would deadlock the others
        distributed.check_shards_per_rank(len(split_shards(recipe.data.shards, recipe.data.train_split)),
                                          self.dist.world_size, recipe.data.train_split)
        check_fields(recipe.data.shards, task.fields())  # before the first epoch's progress bar
        if self.t.threads and self.device.type == "cpu":
            torch.set_num_threads(self.t.threads)
        if self.t.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        self.run_dir = Path(recipe.output_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.amp_dtype = autocast_dtype(self.t.precision, self.device)
        self.pin_memory = self.device.type == "cuda"

        seed_everything(recipe.seed)  # same initial weights on every rank
        self.model = self.task.build_model()
        self.task.init_weights(self.model)  # a resumed run's last.pt overwrites these below
        if self.t.init_checkpoint:
            if not Path(self.t.init_checkpoint).exists():
                raise FileNotFoundError(f"trainer.init_checkpoint {self.t.init_checkpoint}: no such checkpoint")
            path = self.t.init_checkpoint
            ckpt.load_model_weights(self.model, ckpt.load_checkpoint(path), path, recipe)
        if self.t.sync_batchnorm and self.dist.enabled:
            if self.device.type != "cuda":
                raise RuntimeError("trainer.sync_batchnorm needs CUDA devices (torch's SyncBatchNorm has no CPU "
                                   "kernel); leave it off for a CPU run")
            self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        if self.t.channels_last and self.device.type == "cuda":
            to_channels_last(self.model)  # Conv2d and Conv3d weights (frame trunks, 3D stems, towers)
        self.model.to(self.device)
        self.optimizer = build_optimizer(recipe, self.model.parameters())
        self.step_schedule = per_step(recipe) and recipe.scheduler != "plateau"
        self.scheduler = build_scheduler(recipe, self.optimizer, self.task.higher_is_better,
                                         self.batches_per_epoch() if self.step_schedule else None)
        self.ema = WeightAverage(self.model, self.t.ema) if self.t.ema else None
        self.restored = False  # state loaded from a checkpoint of this run (restore)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.net: torch.nn.Module = self.model
        if self.dist.enabled:
            # device_ids=None (allowed for a single-device module): with device ids DDP would copy every input to
            # the GPU, the host-side lengths too, and bring back the per-step syncs they avoid
            self.net = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=None)
        if self.t.compile:
            self.net = torch.compile(self.net)
        # different dropout masks per rank, but deterministic
        seed_everything(recipe.seed + 1000 * self.dist.rank + 1)
        self.epoch, self.epoch_step, self.step, self.best = 0, 0, 0, None
        self.skips = SkipTally()  # bad samples skipped this epoch (data.on_bad_sample: skip)
        self.metric_name = self.task.metric
        self.writer = None
        # avprep preset + mean face: what `avtrain synth` needs to prepare a new video as the training clips were
        self.preprocess = preprocessing_record(recipe.data.shards)

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> dict:
        return {
            "format": ckpt.FORMAT,
            # with an EMA, "model" is the average (what validation scored, what eval and synth load) and the weights
            # being trained are kept apart for resuming
            "model": self.ema.state_dict() if self.ema else ckpt.unwrap(self.model).state_dict(),
            **({"train_model": ckpt.unwrap(self.model).state_dict(), "ema_updates": self.ema.updates}
               if self.ema else {}),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": ckpt.rng_state(),
            "epoch": self.epoch,
            "epoch_step": self.epoch_step,
            "step": self.step,
            "best": self.best,
            "recipe": self.recipe.model_dump(mode="json"),
            "preprocess": self.preprocess,
        }

    def save(self, name: str = "last.pt") -> None:
        if self.dist.is_main:
            ckpt.save_atomic(self.state(), self.ckpt_dir / name)
        distributed.barrier(self.dist)

    def restore(self, path: Path) -> None:
        state = ckpt.load_checkpoint(path)  # to the CPU: set_rng_state needs CPU tensors
        diffs = ckpt.resume_differences(state["recipe"], self.recipe.model_dump(mode="json"))
        if diffs:
            raise ckpt.CheckpointError(
                f"{path} was trained with another recipe ({'; '.join(diffs)}): resume it with the recipe it was "
                f"trained with ({self.run_dir / 'config.yaml'}), start over with --no-resume, or pass "
                f"--set output_dir=... for a new run")
        if state.get("preprocess") is not None and state["preprocess"] != self.preprocess:
            raise ckpt.CheckpointError(
                f"{path} was trained on shards made differently from {self.recipe.data.shards} (another avprep "
                f"preset or mean face): point data.shards at the run's own shards, or start over with --no-resume")
        if self.ema is not None:
            if "train_model" not in state:
                raise ckpt.CheckpointError(f"{path}: written without trainer.ema, cannot resume with it")
            ckpt.load_model_weights(self.model, {**state, "model": state["train_model"]}, path, self.recipe)
            self.ema.load_state_dict(state["model"], int(state["ema_updates"]))
        else:
            ckpt.load_model_weights(self.model, state, path, self.recipe)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.epoch_step, self.step, self.best = (state["epoch"], state["epoch_step"], state["step"],
                                                             state["best"])
        if self.dist.rank == 0:
            ckpt.set_rng_state(state["rng"])
        else:  # rank 0's RNG was saved; other ranks re-derive theirs from the step so they stay distinct
            seed_everything(self.recipe.seed + 1000 * self.dist.rank + 1 + self.step)
        self.restored = True
        self.console.log(f"resumed from {path}: epoch {self.epoch}, step {self.step}")

    # ------------------------------------------------------------------ data
    def loader(self, split: str, *, train: bool, epoch: int = 0, whole: bool = False):
        return build_loader(self.recipe, split, train=train, epoch=epoch, distributed=self.dist.enabled,
                            fields=self.task.fields(), pin_memory=self.pin_memory, whole=whole)

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
            loader = self.loader(self.recipe.data.train_split, train=True, epoch=epoch + 1_000_003 * repeat)
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
        return autocast(self.device, self.amp_dtype)

    def train_step(self, batch: dict) -> dict[str, torch.Tensor]:
        """One optimizer step; the loss parts come back as detached device tensors (no host sync)."""
        b = to_device(batch, self.device, self.task.host_fields)
        self.net.train()
        with self.autocast():
            loss, parts = self.task.losses(self.net, b)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        parts = dict(parts)
        if self.t.grad_clip:
            self.scaler.unscale_(self.optimizer)
            parts["grad_norm"] = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.t.grad_clip).detach()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update(ckpt.unwrap(self.model))
        if self.step_schedule:
            self.scheduler.step()
        return parts

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """The task's validation values over the whole split: each rank sums its own clips, the sums are added."""
        model = self.ema.model if self.ema is not None else ckpt.unwrap(self.model).eval()
        # every rank's batch norms moved on its own batches since DDP's last broadcast: rank 0's statistics, the
        # ones best.pt stores, are what every rank validates with
        distributed.broadcast_buffers(self.dist, model)
        split = self.recipe.data.valid_split
        sums: dict[str, float] = {}
        for batch in self.loader(split, train=False, whole=self.task.whole_clip_validation):
            self.skips.add(batch, split)
            with self.autocast():
                part = self.task.validation_sums(model, to_device(batch, self.device, self.task.host_fields))
            for k, v in part.items():
                sums[k] = sums.get(k, 0.0) + v
        return self.task.finish_validation(distributed.sum_across_ranks(self.dist, sums))

    def better(self, metric: float) -> bool:
        if self.best is None:
            return True
        return metric > self.best if self.task.higher_is_better else metric < self.best

    # ------------------------------------------------------------------ loop
    def log_scalars(self, prefix: str, values: dict[str, float], step: int) -> None:
        if self.writer is not None:
            for k, v in values.items():
                self.writer.add_scalar(f"{prefix}/{k}", v, step)

    def fit(self, resume: bool = True, record_keys: bool = False) -> TrainResult:
        """Train to the recipe's budget, resuming from ``last.pt``; the main rank holds the run folder meanwhile
        (a second process training into it is refused: engine/runlock.py)."""
        with hold_run_dir(self.run_dir) if self.dist.is_main else nullcontext():
            return self._fit(resume, record_keys)

    def _fit(self, resume: bool, record_keys: bool) -> TrainResult:
        last = self.ckpt_dir / "last.pt"
        if resume and last.exists():
            self.restore(last)
        result = TrainResult(self.run_dir, self.step, self.epoch, best_metric=self.best, metric_name=self.metric_name)
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.yaml").write_text(self.recipe.to_yaml())
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.run_dir / "tb"))
        log = StepLog(self.run_dir / "train_log.jsonl", self.t.log_every, self.dist.world_size)
        max_steps = self.t.max_steps
        n_batches = self.batches_per_epoch()
        progress = Progress(TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                            console=self.console, disable=not (self.t.progress and self.dist.is_main))
        # A run resumed at its step budget is done: no step past max_steps, no checkpoint rewritten.
        stopped = max_steps is not None and self.step >= max_steps
        with progress:
            while self.epoch < self.t.epochs and not stopped:
                bar = progress.add_task("train", total=n_batches, epoch=self.epoch, info="", completed=0)
                skip, seen = self.epoch_step, 0
                log.start_epoch()
                for batch in self.epoch_batches(self.epoch):
                    seen += 1
                    self.skips.add(batch, self.recipe.data.train_split)
                    if seen <= skip:  # already trained on before the interruption
                        progress.advance(bar)
                        continue
                    lr = self.optimizer.param_groups[0]["lr"]  # the rate this step runs with
                    parts = self.train_step(batch)
                    self.step += 1
                    self.epoch_step += 1
                    result.samples_seen += len(batch["keys"])
                    if record_keys:
                        result.seen_keys.extend(batch["keys"])
                    log.add(self.epoch, self.step, parts, len(batch["keys"]), lr)
                    if log.due(self.step):
                        self.flush(log, result, progress, bar)
                    else:
                        progress.advance(bar)
                    if self.t.save_every_steps and self.step % self.t.save_every_steps == 0:
                        self.save()
                    if max_steps is not None and self.step >= max_steps:
                        stopped = True
                        break
                self.flush(log, result, progress, bar, advance=False)
                progress.remove_task(bar)
                if stopped:
                    self.save()
                    break
                self.end_epoch(log.seconds(), log.samples)
        if self.writer is not None:
            self.writer.close()
        result.step, result.epoch, result.best_metric = self.step, self.epoch, self.best
        return result

    def flush(self, log: StepLog, result: TrainResult, progress: Progress, bar, advance: bool = True) -> None:
        """Read the pending steps' loss parts back to the host (one sync), log them, update the progress bar."""
        rows = log.flush(main=self.dist.is_main)
        result.losses.extend(row["total"] for row in rows)
        for row in rows:
            if row.get("logged"):
                self.log_scalars("train", {k: v for k, v in row.items() if k not in ("epoch", "step", "logged")},
                                 row["step"])
        if advance:
            progress.advance(bar)
        if rows:
            progress.update(bar, info=f"loss {rows[-1]['total']:.3f}")

    def end_epoch(self, seconds: float, samples: int) -> None:
        metric = None
        if self.t.val_each_epoch and self.recipe.data.valid_split:
            val = self.validate()
            metric = val.get(self.metric_name) if val["samples"] else None
            self.log_scalars("val", val, self.step)
            if self.dist.is_main:
                self.console.log(f"epoch {self.epoch}: {self.task.validation_line(val)}, "
                                 f"{samples * self.dist.world_size / max(seconds, 1e-9):.1f} train samples/s")
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            # a plateau schedule moves on validation results only, never on a made-up value
            if metric is not None:
                self.scheduler.step(metric)
            elif self.dist.is_main and self.epoch == 0:
                self.console.log("scheduler plateau: no validation this run, the learning rate stays constant")
        elif not self.step_schedule:
            with warnings.catch_warnings():
                if self.restored:
                    # A run resumed after its epoch's last batch steps the schedule before any optimizer step of
                    # this process; the schedule's state came from the checkpoint, so torch's warning that its
                    # first learning rate was skipped does not apply.
                    warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before")
                self.scheduler.step()
        improved = metric is not None and self.better(metric)
        if improved:
            self.best = metric
        self.skips.report(self.console, self.epoch, self.run_dir / "train_log.jsonl" if self.dist.is_main else None)
        self.epoch += 1
        self.epoch_step = 0
        self.save()
        if improved or metric is None:
            self.save("best.pt")


def train(recipe: Recipe, task: Task, *, resume: bool = True, console: Console | None = None,
          record_keys: bool = False) -> TrainResult:
    """Train (or resume) the run ``recipe`` describes with its ``task``; the process group is left after."""
    trainer = Trainer(recipe, task, console=console)
    try:
        return trainer.fit(resume=resume, record_keys=record_keys)
    finally:
        distributed.teardown(trainer.dist)
