"""Checkpoints: everything a run needs to continue exactly where it stopped, written atomically, read safely.

A checkpoint holds model, optimizer, scheduler and grad-scaler states, the RNG states (python, numpy, torch CPU and
CUDA), epoch, step within the epoch, global step, the best validation score, the recipe and (speech models) the avprep
preset and mean face. It is written to a temporary file in the same folder, fsynced, then renamed over the old one,
so a crash mid-write leaves the previous checkpoint intact.

Reading never runs code from the file: every load is ``torch.load(weights_only=True)``, whose unpickler builds only
tensors and plain Python values. So everything a checkpoint holds is stored as tensors or plain types (the numpy
RNG state as a tensor and ints, the recipe and preset as JSON-like dicts). A file whose pickle would call anything
else is refused with one line naming the file and what it would call. Checkpoints written before this format
(``format`` absent: numpy's RNG state pickled as an ndarray) still load, through one narrow extra allowance: numpy's
array reconstruction (the array's bytes and dtype, nothing callable); ``avtrain convert-checkpoint`` rewrites them.

Every loading path (resume, ``trainer.init_checkpoint``, ``avtrain eval``, ``avtrain synth``) goes through
:func:`load_checkpoint` and :func:`load_model_weights`, so a checkpoint of another model or recipe is named as such
in one line instead of a state-dict traceback. Everything is loaded to the CPU: RNG states must be CPU tensors
(``torch.set_rng_state`` rejects CUDA ones), and ``load_state_dict`` copies weights and optimizer state to wherever
the model's parameters live.
"""

from __future__ import annotations

import os
import pickle
import random
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT = 2  # 2: only tensors and plain types (weights_only); absent: written before, numpy RNG state as ndarray

# What an older checkpoint's numpy RNG state needs besides torch's own allowlist: an ndarray and its dtype. These
# build an array from a dtype description and raw bytes; none of them calls anything named in the file.
_LEGACY_NUMPY = {"numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct", "numpy.ndarray",
                 "numpy.dtype", "numpy.dtypes.UInt32DType"}


class CheckpointError(ValueError):
    """A checkpoint that cannot or must not be used, phrased as one line naming the file."""


# ---------------------------------------------------------------------------------------------- RNG states
def rng_state() -> dict[str, Any]:
    """Every RNG state as tensors and plain values (python's is a tuple of ints already)."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                  "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        # this process's own device only: a run resumed on fewer visible GPUs has no index for the others
        state["cuda"] = torch.cuda.get_rng_state(torch.cuda.current_device())
    return state


def _numpy_state(saved: Any) -> tuple:
    if isinstance(saved, dict):
        keys = saved["keys"].numpy().astype(np.uint32)
        return "MT19937", keys, saved["pos"], saved["has_gauss"], saved["gauss"]
    return tuple(saved)  # a checkpoint written before FORMAT 2: numpy's own tuple


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(_numpy_state(state["numpy"]))
    torch.set_rng_state(state["torch"].cpu())  # a CPU ByteTensor, or set_rng_state raises
    if "cuda" in state and torch.cuda.is_available():
        saved = state["cuda"]
        if isinstance(saved, (list, tuple)):  # written before: every device's state; the saving rank's device first
            saved = saved[0]
        torch.cuda.set_rng_state(saved.cpu(), torch.cuda.current_device())


# ---------------------------------------------------------------------------------------------- writing
def save_atomic(obj: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


# ---------------------------------------------------------------------------------------------- reading
def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:200]


def _unsafe_globals(path: Path) -> list[str]:
    """What the file's pickle would import beyond torch's allowlist, read from its opcodes (nothing is run)."""
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception:  # noqa: BLE001 - unreadable: the caller reports the original load error
        return []


def _legacy_allowlist() -> list:
    try:
        from numpy._core import multiarray  # numpy >= 2 (1.26 has it too)
    except ImportError:  # pragma: no cover - older numpy
        from numpy.core import multiarray

    allowed: list = [(multiarray._reconstruct, name) for name in ("numpy.core.multiarray._reconstruct",
                                                                  "numpy._core.multiarray._reconstruct")]
    allowed += [np.ndarray, np.dtype]
    if hasattr(np, "dtypes"):
        allowed.append(np.dtypes.UInt32DType)
    return allowed


def _blocked(path: Path, e: BaseException) -> list[str]:
    """The globals a refused pickle names: from the opcodes of a zip checkpoint, else (torch's older non-zip
    format) the one the unpickler stopped at."""
    return _unsafe_globals(path) or re.findall(r"GLOBAL ([\w.]+) (?:was not an allowed|whose module)", str(e))


def _torch_load(path: Path, allow: list | None = None) -> Any:
    """torch.load(weights_only=True) to the CPU, ``allow`` added to the allowlist; one-line CheckpointErrors."""
    try:
        with warnings.catch_warnings():  # a damaged file's odd protocol byte: our one-line error says enough
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            if allow is None:
                return torch.load(path, map_location="cpu", weights_only=True)
            with torch.serialization.safe_globals(allow):
                return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        unsafe = _blocked(path, e)
        if unsafe and allow is None and set(unsafe) <= _LEGACY_NUMPY:
            return _torch_load(path, _legacy_allowlist())  # an older avtrain checkpoint: numpy RNG state
        if unsafe:
            raise CheckpointError(f"{path}: refused: unpickling it would call {', '.join(unsafe[:4])}, which could "
                                  "run code (avtrain opens only checkpoints of tensors and plain values)") from None
        raise CheckpointError(f"{path}: not a readable checkpoint ({_first_line(e)})") from None
    except Exception as e:  # noqa: BLE001 - not a zip, truncated, ...: one line, not torch's page
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({_first_line(e)})") from None


def load(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint to the CPU without running code from it; CheckpointError (one line) if refused."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    return _torch_load(path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """:func:`load`, then check it is an avtrain checkpoint: a dict with the model's weights and the recipe."""
    state = load(path)
    weights = state.get("model") if isinstance(state, dict) else None
    recipe = state.get("recipe") if isinstance(state, dict) else None
    if not isinstance(weights, dict) or not isinstance(recipe, dict) or not isinstance(recipe.get("model"), str):
        raise CheckpointError(f"{path}: not an avtrain checkpoint (no model weights and recipe)")
    if not all(torch.is_tensor(v) for v in weights.values()):
        raise CheckpointError(f"{path}: not an avtrain checkpoint (model weights are not all tensors)")
    return state


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


# Recipe sections that do not shape the model's parameters: left out of "trained with a different recipe" hints.
_NOT_MODEL = ("seed", "output_dir", "data", "trainer", "eval", "optim", "optim_conf", "scheduler", "scheduler_conf",
              "augment", "augment_conf")


def _differences(saved: dict, current: dict, compared, limit: int) -> list[str]:
    a = {k: v for k, v in _flat(saved).items() if compared(k)}
    b = {k: v for k, v in _flat(current).items() if compared(k)}
    diffs = [f"{k}: {a.get(k, '-')} in the checkpoint, {b.get(k, '-')} here" for k in sorted(set(a) | set(b))
             if a.get(k) != b.get(k)]
    return diffs[:limit] + ([f"{len(diffs) - limit} more"] if len(diffs) > limit else [])


def recipe_differences(saved: dict, current: dict, limit: int = 3) -> list[str]:
    return _differences(saved, current, lambda k: k.split(".")[0] not in _NOT_MODEL, limit)


# What may differ between a run's last.pt and the recipe that resumes it: the budget (train longer), how the work is
# executed (threads, workers, device, precision, the batch size under another world size: docs/training.md), where
# the run and its shards live (the shards' identity is checked on their preprocessing record instead), and the
# evaluation. Anything else would continue a model under settings it was not trained with, and config.yaml would
# then name only the second half.
RESUMABLE_CHANGES = ("output_dir", "eval", "data.shards", "data.batch_size", "data.eval_batch_size",
                     "data.num_workers", "data.shuffle_buffer", "data.on_bad_sample", "data.verify_checksums",
                     "trainer.epochs", "trainer.max_steps", "trainer.device", "trainer.precision", "trainer.log_every",
                     "trainer.save_every_steps", "trainer.val_each_epoch", "trainer.progress", "trainer.threads",
                     "trainer.init_checkpoint", "trainer.deterministic", "trainer.compile", "trainer.channels_last",
                     "trainer.sync_batchnorm")


def resume_differences(saved: dict, current: dict, limit: int = 3) -> list[str]:
    """How the recipe resuming a run differs from the one its checkpoint was trained with, beyond
    :data:`RESUMABLE_CHANGES`, as ``key: old in the checkpoint, new here`` (the first ``limit``, then a count)."""
    from avtrain.config import RecipeError, validate_recipe

    try:  # fills in defaults added since, and drops the unused sections older checkpoints carried
        saved = validate_recipe(saved, "checkpoint").model_dump(mode="json")
    except RecipeError:
        pass  # a recipe this version no longer reads: compare it as written

    return _differences(saved, current,
                        lambda k: not any(k == p or k.startswith(p + ".") for p in RESUMABLE_CHANGES), limit)


def load_model_weights(model: torch.nn.Module, state: dict[str, Any], path: str | Path, recipe) -> None:
    """Load ``state["model"]`` into ``model`` (built from ``recipe``), or say in one line why it does not fit."""
    saved = state["recipe"]
    if saved.get("model") != recipe.model:
        raise CheckpointError(f"{path}: a checkpoint of model {saved.get('model')!r}, but this recipe builds "
                              f"{recipe.model!r}")
    target = unwrap(model).state_dict()
    weights = state["model"]
    missing = [k for k in target if k not in weights]
    unexpected = [k for k in weights if k not in target]
    shaped = [k for k in target if k in weights and tuple(weights[k].shape) != tuple(target[k].shape)]
    if missing or unexpected or shaped:
        found = []
        if missing:
            found.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            found.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if shaped:
            k = shaped[0]
            found.append(f"{len(shaped)} of another shape (e.g. {k}: {tuple(weights[k].shape)} in the checkpoint, "
                         f"{tuple(target[k].shape)} here)")
        diffs = recipe_differences(saved, recipe.model_dump(mode="json"))
        hint = f"; it was trained with another recipe ({'; '.join(diffs)})" if diffs else ""
        raise CheckpointError(f"{path}: its {recipe.model} weights do not fit this recipe's model: "
                              f"{', '.join(found)}{hint}")
    unwrap(model).load_state_dict(weights)


def convert(src: str | Path, dst: str | Path | None = None) -> Path:
    """Rewrite a checkpoint in the current format (tensors and plain types only); in place when ``dst`` is None."""
    state = load_checkpoint(src)
    if "rng" in state:
        numpy_state = _numpy_state(state["rng"]["numpy"])
        state["rng"]["numpy"] = {"keys": torch.from_numpy(np.asarray(numpy_state[1]).astype(np.int64)),
                                 "pos": int(numpy_state[2]), "has_gauss": int(numpy_state[3]),
                                 "gauss": float(numpy_state[4])}
    state["format"] = FORMAT
    return save_atomic(state, dst or src)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model
