"""Tasks: one per model, behind the protocol of :mod:`avtrain.tasks.base`. ``task_for(recipe)`` gives the task the
recipe's ``model`` is registered with (avtrain.registry: the built-in models, and other packages' through an entry
point)."""

from __future__ import annotations

from avtrain.config import Recipe
from avtrain.registry import task_class
from avtrain.tasks.base import Fields, Task  # noqa: F401


def task_for(recipe: Recipe) -> Task:
    return task_class(recipe.model)(recipe)
