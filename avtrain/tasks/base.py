"""The task protocol: everything the engine, the data module and the CLI need to know about a model.

    task = task_for(load_recipe("recipes/grid-words-bridging.yaml"))  # the recipe's model picks the task
    batch = next(iter(build_loader(task.recipe, "train", train=True, fields=task.fields())))
    loss, parts = task.losses(task.build_model(), batch)  # what the engine's training step does, less the device

A task answers: which sample fields the data module must read (:meth:`Task.fields`), which model the recipe builds
(:meth:`Task.build_model`), how a batch becomes losses (:meth:`Task.losses`), how a validation batch is summed and
the sums become the logged values (:meth:`Task.validation_sums`, :meth:`Task.finish_validation`), which of those
values picks the best checkpoint (``metric``, ``higher_is_better``), and how a trained run is evaluated and what that
writes (:meth:`Task.evaluate`). The engine never asks which model it runs; a new model is a new task (and a recipe
schema in ``avtrain.config.models``), registered in ``avtrain.tasks``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from rich.console import Console
from torch import nn

from avtrain.config import Recipe
from avtrain.data.fields import Fields  # noqa: F401  (the protocol's fields() returns one)


class Task(ABC):
    metric: ClassVar[str]  # the validation value that picks best.pt (and moves a plateau schedule)
    higher_is_better: ClassVar[bool]
    # validation batches are whole clips (no data.max_frames cut), as inference sees them (speech tasks)
    whole_clip_validation: ClassVar[bool] = False
    # batch fields the engine leaves on the host (read there without a device sync: packed RNNs, real-frame indices)
    host_fields: ClassVar[tuple[str, ...]] = ("lengths",)

    def __init__(self, recipe: Recipe):
        self.recipe = recipe

    def fields(self) -> Fields:
        return Fields()

    @abstractmethod
    def build_model(self) -> nn.Module:
        """The untrained model the recipe describes."""

    def init_weights(self, model: nn.Module) -> None:  # noqa: B027 - a hook with nothing to do by default
        """Weights from elsewhere that a new run starts from (e.g. a pretrained front); called once, before the
        first step of a run that is not resumed. Default: none."""

    @abstractmethod
    def losses(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """A training batch (on the device) -> (total loss to back-propagate, named detached parts incl. "total").
        Parts stay tensors: the engine reads them on the host only every ``trainer.log_every`` steps."""

    @abstractmethod
    def validation_sums(self, model: nn.Module, batch: dict) -> dict[str, float]:
        """A validation batch -> sums over its clips, with "samples" = its clip count. Sums from every rank are
        added, so a rank with fewer (or no) validation clips contributes fewer (or no) terms."""

    def finish_validation(self, sums: dict[str, float]) -> dict[str, float]:
        """Summed values of all ranks -> per-clip means (``samples`` kept)."""
        n = sums.get("samples", 0.0)
        out = {k: v / max(n, 1.0) for k, v in sums.items() if k != "samples"}
        out["samples"] = n
        return out

    @abstractmethod
    def validation_line(self, val: dict[str, float]) -> str:
        """One log line of the validation values."""

    @abstractmethod
    def evaluate(self, *, split: str | None = None, checkpoint: str | None = None, console: Console | None = None,
                 **options: Any) -> dict:
        """Evaluate a trained run on a split; writes under ``<output_dir>/eval/<split>/`` and returns the metrics."""
