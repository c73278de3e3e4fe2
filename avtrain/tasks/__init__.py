"""Tasks: one per model, behind the protocol of :mod:`avtrain.tasks.base`. ``task_for(recipe)`` picks it by the
recipe's schema (``avtrain.config.models``)."""

from __future__ import annotations

from avtrain.config import Recipe
from avtrain.tasks.base import Fields, Task  # noqa: F401


def task_for(recipe: Recipe) -> Task:
    # imported here: a task module pulls in its models and evaluation code
    from avtrain.tasks.lipreading.task import LipReadingTask, MTLAMTask
    from avtrain.tasks.speech.task import BridgingSpeechTask, TwoTowerTask

    tasks: dict[str, type[Task]] = {"lipreading": LipReadingTask, "mtlam": MTLAMTask, "speech": BridgingSpeechTask,
                                    "two_tower": TwoTowerTask}
    return tasks[recipe.model](recipe)
