"""Imports go one way (docs/training.md, "Code layout"): each package of avtrain is imported alone, in a fresh
interpreter, and what it pulled in is checked. The engine is given its task, the data module is told its fields,
models read no recipe, the recipe schema needs no torch, and evaluation can read a checkpoint without the loop."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# module -> prefixes it must not load (directly or through anything it imports)
RULES = {
    "avtrain.registry": ["avtrain.config", "avtrain.tasks", "avtrain.engine", "avtrain.data", "avtrain.models",
                         "torch"],
    "avtrain.config": ["avtrain.tasks", "avtrain.engine", "avtrain.data", "avtrain.models", "torch"],
    "avtrain.models": ["avtrain.config", "avtrain.tasks", "avtrain.engine", "avtrain.data"],
    "avtrain.models.bridging_speech": ["avtrain.config", "avtrain.tasks", "avtrain.engine", "avtrain.data"],
    "avtrain.models.mtlam": ["avtrain.config", "avtrain.tasks", "avtrain.engine", "avtrain.data"],
    "avtrain.models.two_tower": ["avtrain.config", "avtrain.tasks", "avtrain.engine", "avtrain.data"],
    "avtrain.models.ctc": ["avtrain.config", "avtrain.tasks", "avtrain.engine", "avtrain.data"],
    "avtrain.data": ["avtrain.tasks", "avtrain.engine", "avtrain.models"],
    "avtrain.engine.trainer": ["avtrain.tasks", "avtrain.models"],
    "avtrain.engine.checkpoint": ["avtrain.engine.trainer", "avtrain.tasks", "avtrain.data", "avtrain.models"],
    "avtrain.api": ["avtrain.cli", "avtrain.engine.trainer", "avtrain.models"],
}


def loaded_by(module: str) -> list[str]:
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


@pytest.mark.parametrize("module", list(RULES))
def test_each_package_imports_only_the_layers_below(module):
    loaded = loaded_by(module)
    wrong = [m for m in loaded for p in RULES[module] if m == p or m.startswith(p + ".")]
    assert not wrong, f"importing {module} loads {sorted(set(wrong))[:6]}"


def imported_names(path) -> list[str]:
    """Modules a file imports anywhere (inside functions too), except under `if TYPE_CHECKING:`, which never runs."""
    import ast

    tree = ast.parse(path.read_text())
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)}
    names = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


def test_no_lower_layer_imports_a_task_even_lazily():
    """Imports inside functions count too: no source file of the data module, the engine, the models or the recipe
    schema imports avtrain.tasks (the task comes in as an argument, its fields as a value; the registry names a task
    by a "module:Class" string that only avtrain.api resolves)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "avtrain"
    offenders = [f"{p.relative_to(root)}: {name}" for sub in ("data", "engine", "models", "config")
                 for p in sorted((root / sub).glob("*.py")) for name in imported_names(p)
                 if name == "avtrain.tasks" or name.startswith("avtrain.tasks.")]
    assert offenders == []
