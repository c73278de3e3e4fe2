"""A model avtrain does not ship, added from outside the package: the walk-through of docs/training.md ("Adding a
task"). A word classifier that pools each frame to 8 x 8, embeds it and averages over the clip's real frames.

Three parts: a recipe schema (what ``model_conf`` may hold, checked with one-line errors like every recipe), a model
(tensors in, tensors out) and a task (the model from the recipe, the loss, validation, evaluation), registered under
the recipe's ``model:`` name with ``register_task``. The package makes avtrain find this module through its entry
point (group ``avtrain.models``; here the ``avtrain_example_task-0.1.dist-info`` folder beside this file).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from avtrain.config import Recipe
from avtrain.data import build_loader
from avtrain.models.masked import masked_time_mean
from avtrain.registry import register_task
from avtrain.tasks.base import Task
from avtrain.tasks.weights import load_weights


class MeanFrameConf(BaseModel):
    model_config = ConfigDict(extra="forbid")
    num_classes: int = Field(default=4, ge=2)
    hidden: int = Field(default=32, ge=1)


class MeanFrameRecipe(Recipe):
    MODEL_COMPONENTS = {"model": {"mean_frame": MeanFrameConf}}
    model: Literal["mean_frame"] = "mean_frame"


class MeanFrameClassifier(nn.Module):
    def __init__(self, num_classes: int, hidden: int):
        super().__init__()
        self.embed = nn.Sequential(nn.Flatten(1), nn.Linear(64, hidden), nn.ReLU())
        self.out = nn.Linear(hidden, num_classes)

    def forward(self, video: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """video (B, T, 1, H, W), mask (B, T) -> logits (B, classes)."""
        b, t = video.shape[:2]
        frames = F.adaptive_avg_pool2d(video.flatten(0, 1), 8)  # (B T, 1, 8, 8)
        return self.out(masked_time_mean(self.embed(frames).view(b, t, -1), mask))


@register_task("mean_frame", schema=MeanFrameRecipe)
class MeanFrameTask(Task):
    metric = "acc"
    higher_is_better = True

    def build_model(self) -> nn.Module:
        conf = self.recipe.model_conf
        return MeanFrameClassifier(conf["num_classes"], conf["hidden"])

    def losses(self, model, batch):
        loss = F.cross_entropy(model(batch["video"], batch["mask"]), batch["labels"])
        return loss, {"ce": loss.detach(), "total": loss.detach()}

    def validation_sums(self, model, batch):
        logits = model(batch["video"], batch["mask"])
        return {"correct": float((logits.argmax(-1) == batch["labels"]).sum()), "samples": float(len(logits))}

    def validation_line(self, val):
        return f"val acc {val['correct']:.4f}"

    def finish_validation(self, sums):
        n = max(sums.get("samples", 0.0), 1.0)
        return {"acc": sums.get("correct", 0.0) / n, "correct": sums.get("correct", 0.0) / n,
                "samples": sums.get("samples", 0.0)}

    def evaluate(self, *, split=None, checkpoint=None, console=None, **_):
        split = split or self.recipe.data.test_split
        model, path = load_weights(self.recipe, self, checkpoint, torch.device("cpu"))
        sums = {"correct": 0.0, "samples": 0.0}
        with torch.no_grad():
            for batch in build_loader(self.recipe, split, train=False, fields=self.fields()):
                for k, v in self.validation_sums(model, batch).items():
                    sums[k] += v
        metrics = {"split": split, "checkpoint": str(path), **self.finish_validation(sums)}
        out = Path(self.recipe.output_dir) / "eval" / split
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
        if console is not None:
            console.print(f"{split}: top-1 {metrics['acc']:.3f} on {int(sums['samples'])} clips")
        return metrics
