"""What a GPU run would hit, checked on the CPU: the channels-last conversion of every shipped model, a speech recipe
whose audio module could never train, resuming on fewer GPUs than were saved, device-to-host syncs per step, batch
norm statistics that differ between ranks at validation, and the list of trained keys growing without bound.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from avtrain.config import RecipeError, load_recipe, validate_recipe
from avtrain.engine import checkpoint as ckpt
from avtrain.engine.precision import to_channels_last
from avtrain.tasks import task_for

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted((REPO / "recipes").glob("*.yaml"))


# ------------------------------------------------------------------ channels-last
@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_channels_last_converts_every_shipped_model(path):
    recipe = load_recipe(path, ["model_conf.visual_init=null"] if "visual_init" in path.read_text() else [])
    model = task_for(recipe).build_model()
    has_3d = any(p.dim() == 5 for p in model.parameters())
    if has_3d:  # what the trainer did before: the whole model to channels_last
        with pytest.raises(RuntimeError, match="rank 4"):
            task_for(recipe).build_model().to(memory_format=torch.channels_last)
    to_channels_last(model)
    for p in model.parameters():
        if p.dim() == 4:
            assert p.is_contiguous(memory_format=torch.channels_last)
        elif p.dim() == 5:
            assert p.is_contiguous(memory_format=torch.channels_last_3d)


def test_channels_last_computes_the_same_function():
    conv = torch.nn.Sequential(torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.Flatten(1, 2),
                               torch.nn.Conv2d(4 * 5, 3, 3, padding=1))
    x = torch.randn(2, 1, 5, 12, 12)
    want = conv(x)
    to_channels_last(conv)
    assert torch.allclose(conv(x), want, atol=1e-5)


# ------------------------------------------------------------------ an audio module that cannot train
def test_official_memory_without_the_audio_path_is_refused():
    base = {"output_dir": "x", "model": "speech", "data": {"shards": "y", "color": "rgb"}}
    with pytest.raises(RecipeError, match="audio_path: false leaves the audio module without gradients"):
        validate_recipe({**base, "memory_conf": {"num_slots": 150, "variant": "official"},
                         "model_conf": {"in_channels": 3, "audio_path": False}})
    # the paper variant trains it through L_save and L_bridge; N = 0 has none
    validate_recipe({**base, "memory_conf": {"num_slots": 150, "variant": "paper"},
                     "model_conf": {"in_channels": 3, "audio_path": False}})
    validate_recipe({**base, "memory_conf": {"num_slots": 0, "variant": "official"},
                     "model_conf": {"in_channels": 3, "audio_path": False}})


# ------------------------------------------------------------------ RNG state of a run saved on more GPUs
class _FakeCuda:
    """torch.cuda as a process with ``count`` visible devices sees it (the RNG calls only)."""

    def __init__(self, count: int, current: int = 0):
        self.count, self.current = count, current
        self.states = {i: torch.full((16,), i, dtype=torch.uint8) for i in range(count)}

    def is_available(self):
        return True

    def is_initialized(self):
        return True

    def device_count(self):
        return self.count

    def current_device(self):
        return self.current

    def get_rng_state(self, device="cuda"):
        return self.states[self._index(device)].clone()

    def set_rng_state(self, state, device="cuda"):
        self.states[self._index(device)] = state.clone()

    def get_rng_state_all(self):
        return [self.states[i].clone() for i in range(self.count)]

    def set_rng_state_all(self, states):
        for i, s in enumerate(states):
            self.set_rng_state(s, i)

    def _index(self, device):
        if isinstance(device, int):
            index = device
        else:
            index = torch.device(device).index
        index = self.current if index is None else index
        if index >= self.count:
            raise IndexError(f"device {index} of {self.count}")
        return index


def test_resume_on_fewer_visible_gpus_restores_the_local_device_state(monkeypatch):
    eight = _FakeCuda(8, current=5)  # rank 5 of a run on 8 GPUs saves
    eight.states[5] = torch.full((16,), 55, dtype=torch.uint8)
    monkeypatch.setattr(ckpt.torch, "cuda", eight)
    saved = ckpt.rng_state()
    one = _FakeCuda(1)  # the resumed run sees one GPU
    monkeypatch.setattr(ckpt.torch, "cuda", one)
    ckpt.set_rng_state(saved)
    assert torch.equal(one.states[0], torch.full((16,), 55, dtype=torch.uint8))


def test_a_checkpoint_with_every_devices_state_still_resumes(monkeypatch):
    one = _FakeCuda(1)
    monkeypatch.setattr(ckpt.torch, "cuda", one)
    state = {"python": __import__("random").getstate(), "numpy": __import__("numpy").random.get_state(),
             "torch": torch.get_rng_state(), "cuda": [torch.full((16,), 7, dtype=torch.uint8)] * 4}
    ckpt.set_rng_state(state)  # written before: a list of all devices' states
    assert torch.equal(one.states[0], torch.full((16,), 7, dtype=torch.uint8))


# ------------------------------------------------------------------ no device-to-host sync in a training step
HOST_CALLS = {torch.Tensor.cpu, torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.numpy, torch.Tensor.nonzero,
              torch.nonzero, torch.Tensor.__bool__, torch.Tensor.__int__, torch.Tensor.__float__,
              torch.Tensor.__index__, torch.masked_select, torch.Tensor.masked_select}


class OnDevice(torch.Tensor):
    """A CPU tensor standing in for one on the GPU: every call that would copy it (or what is computed from it) to
    the host, and so wait for the device, is recorded with where it was made."""

    calls: list[str] = []

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        to_host = func is torch.Tensor.to and any(
            isinstance(a, (str, torch.device)) and torch.device(a).type == "cpu" for a in [*args[1:], *kwargs.values()])
        bool_index = (func in (torch.Tensor.__getitem__, torch.Tensor.__setitem__) and torch.is_tensor(args[1])
                      and args[1].dtype == torch.bool)
        if func in HOST_CALLS or to_host or bool_index:
            import traceback

            frame = next((f for f in reversed(traceback.extract_stack()[:-1]) if "/avtrain/" in f.filename), None)
            where = f"{frame.filename.split('/avtrain/')[-1]}:{frame.lineno}" if frame else "?"
            cls.calls.append(f"{getattr(func, '__name__', func)} at {where}")
        out = super().__torch_function__(func, types, args, kwargs)
        if getattr(func, "__name__", "") in ("_pack_padded_sequence", "_pad_packed_sequence"):
            out = (out[0], out[1].as_subclass(torch.Tensor))  # batch sizes and lengths: torch keeps them on the host
        return out


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_a_training_step_never_waits_for_the_device(path, tmp_path_factory, monkeypatch):
    """What the engine moves to the device (all but the task's host fields) is marked; the task's step, forward
    and backward, must not bring any of it back to the host (a sync per step on a GPU)."""
    from avtrain.models import masked
    from recipe_shards import small_recipe

    # batch norm over real frames selects them by a boolean mask on the CPU only (no sync there): take the GPU's way
    monkeypatch.setattr(masked, "selected_batch_norm", masked.weighted_batch_norm)
    from avtrain.data import build_loader
    recipe = small_recipe(path, tmp_path_factory.getbasetemp() / "sync")
    task = task_for(recipe)
    model = task.build_model().train()
    batch = next(iter(build_loader(recipe, recipe.data.train_split, train=True, fields=task.fields())))
    batch = {k: v.as_subclass(OnDevice) if torch.is_tensor(v) and k not in task.host_fields else v
             for k, v in batch.items()}
    OnDevice.calls = []
    loss, _ = task.losses(model, batch)
    loss.backward()
    assert not OnDevice.calls, OnDevice.calls


# ------------------------------------------------------------------ synchronised batch norm
def test_sync_batchnorm_is_refused_on_cpu_ranks_and_idle_alone(tmp_path, monkeypatch):
    from avtrain.api import make_trainer
    from avtrain.engine import distributed
    from avtrain.synthetic import write_shards

    shards = write_shards(tmp_path / "syn", splits={"train": (2, 4)})
    recipe = validate_recipe({
        "output_dir": str(tmp_path / "run"), "data": {"shards": str(shards), "batch_size": 2},
        "visual_frontend_conf": {"stem_channels": 4, "widths": [4, 4, 4, 4], "blocks": [1, 1, 1, 1]},
        "memory_conf": {"num_slots": 0}, "backend_conf": {"hidden": 8}, "model_conf": {"num_classes": 4,
                                                                                      "embed_dim": 8},
        "trainer": {"sync_batchnorm": True, "progress": False}})
    alone = make_trainer(recipe)  # one process: nothing to synchronise, the model keeps its batch norms
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in alone.model.modules())
    monkeypatch.setattr(distributed, "setup", lambda device: distributed.DistInfo(0, 2, 0))
    with pytest.raises(RuntimeError, match="sync_batchnorm needs CUDA"):
        make_trainer(recipe)
    assert load_recipe(REPO / "recipes" / "lrw-mtlam.yaml").trainer.sync_batchnorm  # 4 clips a GPU there
