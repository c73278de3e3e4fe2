"""Word-level lip reading tasks: the associative-bridge model (Eq. 7-8) and MTLAM (Eq. 6).

Both classify a clip into a word: training reads video and mel (the memories learn from the audio), validation and
evaluation read video only (top-1 accuracy, the best checkpoint has the highest validation accuracy).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from rich.console import Console
from torch import nn

from avtrain.data.fields import Fields
from avtrain.tasks.base import Task


class _WordTask(Task):
    metric = "acc"
    higher_is_better = True

    def fields(self) -> Fields:
        return Fields(boundary=bool(self.recipe.model_conf["boundary"]))

    def inputs(self, batch: dict) -> dict[str, Any]:
        """The model's inputs beyond video, lengths, mask and mel, from a batch."""
        return {"boundary": batch["boundary"]} if self.recipe.model_conf["boundary"] else {}

    def training_batch(self, batch: dict) -> tuple[dict, torch.Tensor]:
        """(the batch the training step's model reads, its targets): with ``model_conf.mixup`` the clips and their
        one-hot labels blended (training only: validation and evaluation read the clips as they are)."""
        mc = self.recipe.conf("model")
        if not mc.mixup:
            return batch, batch["labels"]
        from avtrain.tasks.lipreading.mixup import mix_batch

        return mix_batch(batch, mc.num_classes, mc.mixup)

    def validation_sums(self, model: nn.Module, batch: dict) -> dict[str, float]:
        logits = model(batch["video"], batch["lengths"], batch["mask"], **self.inputs(batch))["logits"].float()
        labels = batch["labels"]
        return {"correct": float((logits.argmax(-1) == labels).sum()),
                "loss": float(F.cross_entropy(logits, labels, reduction="sum")), "samples": float(len(labels))}

    def finish_validation(self, sums: dict[str, float]) -> dict[str, float]:
        n = sums.get("samples", 0.0)
        return {"acc": sums.get("correct", 0.0) / max(n, 1.0), "loss": sums.get("loss", 0.0) / max(n, 1.0),
                "samples": n}

    def validation_line(self, val: dict[str, float]) -> str:
        return f"val acc {val['acc']:.4f}, val loss {val['loss']:.4f}"

    def evaluate(self, *, split: str | None = None, checkpoint: str | None = None, console: Console | None = None,
                 flip_tta: bool | None = None, **_: Any) -> dict:
        from avtrain.tasks.lipreading.evaluate import evaluate

        return evaluate(self.recipe, self, split=split, checkpoint=checkpoint, flip_tta=flip_tta, console=console)

    # ---------------------------------------------------------------- evaluation hooks
    def memory_stats(self, model: nn.Module):
        """A collector of memory statistics over the split (None for a model without memory)."""
        raise NotImplementedError

    def addressing(self, out: dict, i: int, t: int) -> dict[str, Any]:
        """Clip i's addressing vectors (its first t frames) for the figure."""
        raise NotImplementedError

    def plot_addressing(self, clips: list[dict], path) -> Any:
        raise NotImplementedError


class LipReadingTask(_WordTask):
    """The associative bridge (Kim et al. 2021, Sec. 4.1): L = L_save + L_bridge + CE(recall) + CE(audio)."""

    def build_model(self) -> nn.Module:
        from avtrain.models.lipreading import LipReadingModel

        r, m = self.recipe, self.recipe.model_conf
        return LipReadingModel.build(m["num_classes"], m["embed_dim"], r.visual_frontend_conf, r.audio_frontend_conf,
                                     r.memory_conf, r.backend_conf, m["fusion_dropout"], m["boundary"])

    def losses(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        from avtrain.tasks.lipreading.losses import lipreading_loss

        mc, mem = self.recipe.conf("model"), self.recipe.conf("memory")
        batch, targets = self.training_batch(batch)
        out = model(batch["video"], batch["lengths"], batch["mask"], batch["mel"], **self.inputs(batch))
        return lipreading_loss(out, targets, audio_task_weight=mc.audio_task_weight,
                               save_weight=mem.save_weight, bridge_weight=mem.bridge_weight,
                               label_smoothing=mc.label_smoothing)

    def memory_stats(self, model: nn.Module):
        from avtrain.tasks.lipreading.evaluate import MemoryStats

        return MemoryStats(model.memory.num_slots) if model.memory is not None else None

    def addressing(self, out: dict, i: int, t: int) -> dict[str, Any]:
        return {"src": out["bridge"].src_address[i, :t].float().cpu().numpy(),
                "tgt": out["bridge"].tgt_address[i, :t].float().cpu().numpy()}

    def plot_addressing(self, clips: list[dict], path):
        from avtrain.tasks.lipreading.plots import plot_addressing

        return plot_addressing(clips, path)


class MTLAMTask(_WordTask):
    """MTLAM (multi-temporal lip-audio memory): Eq. 6, the loss weights from model_conf and memory_conf."""

    def __init__(self, recipe):
        super().__init__(recipe)
        from avtrain.tasks.lipreading.losses import MTLAMWeights

        m, mem = recipe.model_conf, recipe.memory_conf
        self.weights = MTLAMWeights(cls_v=m["vsr_weight"], cls_a=m["asr_weight"], cls_va=m["fused_weight"],
                                    recon=mem["recon_weight"], contrast=mem["contrast_weight"],
                                    label_smoothing=m["label_smoothing"])

    def build_model(self) -> nn.Module:
        from avtrain.models.mtlam import MTLAMLipReading
        from avtrain.models.tcn import temporal_spec

        r, m = self.recipe, self.recipe.model_conf
        front = lambda conf: {k: v for k, v in conf.items() if k != "out_dim"}  # noqa: E731 - both emit embed_dim
        return MTLAMLipReading.build(m["num_classes"], m["embed_dim"], front(r.visual_frontend_conf),
                                     front(r.audio_frontend_conf), temporal_spec(r.temporal, r.temporal_conf),
                                     tuple(r.memory_conf["levels"]), r.memory_conf,
                                     visual_pass=bool(self.weights.cls_v), head_dropout=m["head_dropout"],
                                     boundary=m["boundary"])

    def losses(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        from avtrain.tasks.lipreading.losses import mtlam_loss

        batch, targets = self.training_batch(batch)
        out = model(batch["video"], batch["lengths"], batch["mask"], batch["mel"], **self.inputs(batch))
        total, terms = mtlam_loss(out, targets, self.weights)
        parts = {k: v.detach() for k, v in terms.items()}
        parts["total"] = total.detach()
        return total, parts

    def memory_stats(self, model: nn.Module):
        from avtrain.tasks.lipreading.evaluate import MTLAMStats

        if not model.levels:
            return None
        return MTLAMStats(model.levels, {i: model.memories[str(i)].num_slots for i in model.levels})

    def addressing(self, out: dict, i: int, t: int) -> dict[str, Any]:
        return {"levels": {lv: a[i, :t].float().mean(1).cpu().numpy() for lv, a in out["addressing"].items()}}

    def plot_addressing(self, clips: list[dict], path):
        from avtrain.tasks.lipreading.plots import plot_level_addressing

        return plot_level_addressing(clips, path)

