"""The training engine: trainer loop (trainer.py), checkpoints, distributed setup, optimisation, precision.

The submodules are imported where they are used, so that ``import avtrain.engine.checkpoint`` (evaluation,
``avtrain synth``) does not load the training loop; ``from avtrain.engine import Trainer`` still works.
"""

from __future__ import annotations

_LAZY = {"Trainer": "trainer", "TrainResult": "trainer", "train": "trainer", "build_optimizer": "optimisation",
         "build_scheduler": "optimisation", "autocast_dtype": "precision", "select_device": "precision",
         "to_device": "transfer"}


def __getattr__(name: str):
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f"avtrain.engine.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'avtrain.engine' has no attribute {name!r}")
