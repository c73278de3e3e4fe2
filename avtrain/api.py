"""avtrain from Python (notebooks, scripts): the one place that composes recipe -> task -> data -> engine.

    from avtrain import api
    recipe = api.load_recipe("recipes/grid-words-baseline.yaml", ["trainer.max_steps=20"])
    task = api.task_for(recipe)
    batch = next(iter(api.loader(recipe, "train", task)))           # what the model sees, the task's fields
    loss, parts = task.losses(task.build_model(), batch)             # one training step's objective
    result = api.train(recipe)                                       # a run (resumes from output_dir)
    metrics = api.evaluate(recipe)                                   # the task's evaluation of best.pt

The CLI is a shell over these functions. Below this module the layers only look down: the engine is given a task
and never imports avtrain.tasks, the data module is told its fields, models read no recipe.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console

from avtrain.config import Recipe, load_recipe  # noqa: F401  (part of the API)
from avtrain.tasks import Task, task_for  # noqa: F401


def loader(recipe: Recipe, split: str, task: Task | None = None, *, train: bool = False, epoch: int = 0):
    """The batches of ``split`` with the fields the recipe's task reads (training batches when ``train``:
    shuffled, augmented, cut to ``data.max_frames``; else whole clips in shard order, as evaluation reads them)."""
    from avtrain.data import build_loader

    task = task or task_for(recipe)
    return build_loader(recipe, split, train=train, epoch=epoch, fields=task.fields())


def make_trainer(recipe: Recipe, *, console: Console | None = None):
    """The engine for the run ``recipe`` describes, with its task (``.fit()`` trains, ``.validate()`` scores)."""
    from avtrain.engine.trainer import Trainer

    return Trainer(recipe, task_for(recipe), console=console)


def train(recipe: Recipe, *, resume: bool = True, console: Console | None = None, record_keys: bool = False):
    """Train (or resume from ``<output_dir>/checkpoints/last.pt``) and return the run's TrainResult."""
    from avtrain.engine.trainer import train as train_run

    return train_run(recipe, task_for(recipe), resume=resume, console=console, record_keys=record_keys)


def evaluate(recipe: Recipe, *, split: str | None = None, checkpoint: str | None = None,
             console: Console | None = None, **options: Any) -> dict:
    """The task's evaluation of a trained run (word accuracy, or STOI/ESTOI/PESQ/WER for speech models)."""
    return task_for(recipe).evaluate(split=split, checkpoint=checkpoint, console=console, **options)
