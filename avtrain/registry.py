"""Which recipe schema and which task a recipe's ``model:`` name means.

The built-in models register here from avtrain.config.models. Another package adds its own without editing
avtrain: it decorates its task with :func:`register_task` and names the module in its package metadata, so that
avtrain imports it when a recipe asks for a model it does not know::

    # mypkg/asr_task.py
    @register_task("my_model", schema=MyRecipe)      # MyRecipe: an avtrain.config.Recipe subclass
    class MyTask(Task): ...

    # mypkg's pyproject.toml
    [project.entry-points."avtrain.models"]
    my_model = "mypkg.asr_task"

Then ``avtrain run recipe.yaml`` with ``model: my_model`` works (docs/training.md, "Adding a task"). Nothing here
imports torch or a task: a built-in task is named as "module:Class" and imported on first use.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any

ENTRY_POINTS = "avtrain.models"


@dataclass(frozen=True)
class ModelEntry:
    schema: type  # the recipe schema (an avtrain.config.Recipe subclass)
    task: Any  # the Task subclass, or "module:Class" imported on first use


_MODELS: dict[str, ModelEntry] = {}
_plugins_loaded = False


def register_model(name: str, schema: type, task: Any) -> None:
    """``model: name`` means recipes of ``schema`` trained and evaluated by ``task`` (a Task subclass or
    "module:Class"). Registering a name again with another schema or task is refused: two packages claim it."""
    entry = ModelEntry(schema, task)
    if name in _MODELS and _MODELS[name] != entry:
        raise ValueError(f"model {name!r} is registered already (schema {_MODELS[name].schema.__name__}); "
                         "choose another name")
    _MODELS[name] = entry


def register_task(name: str, *, schema: type):
    """Class decorator: the decorated Task subclass trains and evaluates ``model: name`` recipes of ``schema``."""

    def register(task: type) -> type:
        register_model(name, schema, task)
        return task

    return register


def _load_plugins() -> None:
    """Import the modules other packages name in the ``avtrain.models`` entry-point group (once)."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for point in entry_points(group=ENTRY_POINTS):
        point.load()  # the module's register_task decorators run on import


def models() -> dict[str, ModelEntry]:
    """Every model a recipe may name: the built-in ones and those of installed plugins."""
    import avtrain.config.models  # noqa: F401  (registers the built-in models)

    _load_plugins()
    return dict(_MODELS)


def task_class(name: str) -> type:
    """The task class of ``model: name`` (importing a built-in task's module on first use)."""
    entry = models()[name]
    if isinstance(entry.task, str):
        module, _, attr = entry.task.partition(":")
        return getattr(import_module(module), attr)
    return entry.task
