"""The optimiser and the learning-rate schedule a recipe names (``optim`` / ``scheduler`` and their confs)."""

from __future__ import annotations

import math

import torch

from avtrain.config import Recipe


def build_optimizer(recipe: Recipe, params) -> torch.optim.Optimizer:
    c = recipe.conf("optim")
    if recipe.optim == "sgd":
        return torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, nesterov=c.nesterov and c.momentum > 0,
                               weight_decay=c.weight_decay)
    cls = torch.optim.Adam if recipe.optim == "adam" else torch.optim.AdamW
    return cls(params, lr=c.lr, betas=tuple(c.betas), weight_decay=c.weight_decay)


def per_step(recipe: Recipe) -> bool:
    """Whether the schedule moves after every optimizer step (``scheduler_conf.interval: step``), else per epoch."""
    return recipe.scheduler_conf.get("interval", "epoch") == "step"


def build_scheduler(recipe: Recipe, optimizer: torch.optim.Optimizer, higher_is_better: bool = True,
                    steps_per_epoch: int | None = None):
    """Epoch-level schedules (stepped once per epoch), or with ``interval: step`` the same curve stepped after every
    optimizer step (``steps_per_epoch`` of them an epoch); a plateau follows the task's validation metric."""
    c, epochs = recipe.conf("scheduler"), recipe.trainer.epochs
    if recipe.scheduler == "plateau":
        mode = "max" if higher_is_better else "min"
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode=mode, factor=c.factor,
                                                          patience=c.patience, min_lr=c.min_lr)
    if recipe.scheduler == "step":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, c.milestones, c.gamma)
    warm = c.warmup_epochs
    if per_step(recipe):
        if not steps_per_epoch:
            raise RuntimeError("scheduler_conf.interval: step needs the train split's size (index.json)")
        spe = steps_per_epoch

        def step_factor(step: int) -> float:
            if step < warm * spe:  # linear warm-up from 1 / (warm-up steps)
                return (step + 1) / (warm * spe)
            if recipe.scheduler == "cosine":
                progress = min(1.0, (step - warm * spe) / max(1, (epochs - warm) * spe))
                return c.min_lr_ratio + (1 - c.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
            return 1.0

        return torch.optim.lr_scheduler.LambdaLR(optimizer, step_factor)

    def factor(epoch: int) -> float:
        if epoch < warm:
            return (epoch + 1) / (warm + 1)
        if recipe.scheduler == "cosine":
            progress = (epoch - warm) / max(1, epochs - warm)
            return c.min_lr_ratio + (1 - c.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
