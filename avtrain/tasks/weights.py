"""A trained run's model weights for evaluation (``best`` / ``last`` of its output folder, or a checkpoint path),
and the folder each checkpoint's scores go to."""

from __future__ import annotations

from pathlib import Path

import torch

from avtrain.config import Recipe
from avtrain.engine import checkpoint as ckpt


def checkpoint_path(recipe: Recipe, which: str | None) -> Path:
    if which and which not in ("best", "last"):
        return Path(which)
    return Path(recipe.output_dir) / "checkpoints" / f"{which or recipe.eval.checkpoint}.pt"


def eval_dir(recipe: Recipe, split: str, which: str | None) -> Path:
    """Where an evaluation of ``split`` writes: ``eval/<split>`` for the recipe's own ``eval.checkpoint``;
    another checkpoint gets ``eval/<split>-<name>`` (``test-last``, ``test-epoch3``), so evaluating it never
    overwrites the scores of the checkpoint the run reports (``avtrain compare --split test-last`` reads them).
    A checkpoint from outside this run is named after its folder too (``test-<run>-best``), so another run's
    ``best.pt`` does not share ``test-best`` with this run's."""
    root = Path(recipe.output_dir) / "eval"
    path = checkpoint_path(recipe, which).resolve()
    if path == checkpoint_path(recipe, None).resolve():
        return root / split
    own = Path(recipe.output_dir, "checkpoints").resolve()
    if path.parent == own:
        return root / f"{split}-{path.stem}"
    folder = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    return root / f"{split}-{folder.name}-{path.stem}"


def load_weights(recipe: Recipe, task, which: str | None, device: torch.device) -> tuple[torch.nn.Module, Path]:
    """The task's model with the weights of checkpoint ``which``, on ``device``, in eval mode."""
    path = checkpoint_path(recipe, which)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}; train first (avtrain run) or pass --checkpoint")
    model = task.build_model()
    ckpt.load_model_weights(model, ckpt.load_checkpoint(path), path, recipe)  # one line if it does not fit
    return model.to(device).eval(), path
