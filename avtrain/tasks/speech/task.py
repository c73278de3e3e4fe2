"""Speech-from-silent-video tasks: the bridging speech model (Kim et al. 2021, Sec. 4.2) and the two-tower model
(Ephrat et al. 2017). Both regress spectrograms and compute their own loss terms; the best checkpoint (and a plateau
schedule) follows the free-running validation error of what inference predicts from the video alone
(``free_running``, ``avtrain.tasks.speech.validation``), on whole validation clips; evaluation synthesises waveforms
and scores them (STOI, ESTOI, PESQ) — ``avtrain.tasks.speech.evaluate``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from rich.console import Console
from torch import nn

from avbridge.manifests_path import manifest_file
from avtrain.tasks.base import Fields, Task
from avtrain.tasks.speech.predict import Prediction, post_net_window, predict_bridging, predict_two_tower


def word_vocabulary(name: str) -> tuple[str, ...]:
    """The words of a shipped vocabulary (``grid``: manifests/grid/vocab.txt), one per line."""
    return tuple(manifest_file(f"{name}/vocab.txt").read_text().split())


class SpeechTask(Task):
    metric = "free_running"
    higher_is_better = False
    whole_clip_validation = True  # inference predicts whole clips
    default_synthesis: ClassVar[list[str]]  # the paper's synthesis modes for this model
    predicts_linear: bool = False  # whether predict() gives a linear spectrogram (Lin-synth, Mel-synth)

    def free_running(self, model: nn.Module, batch: dict) -> torch.Tensor:
        """(B,) free-running error of each clip of a whole-clip batch (``avtrain.tasks.speech.validation``)."""
        raise NotImplementedError

    def validation_sums(self, model: nn.Module, batch: dict) -> dict[str, float]:
        """The training loss terms (teacher-forced for the Tacotron decoder; logged) and the free-running error
        (``free_running``: picks best.pt). Griffin-Lim and STOI/PESQ are left to ``avtrain eval``."""
        n = len(batch["keys"])
        sums = {k: float(v) * n for k, v in self.losses(model, batch)[1].items()}
        if getattr(model, "training_loss_is_inference", False):  # the model says its loss is what inference does
            sums["free_running"] = sums.get("prediction", sums["total"])
        else:
            sums["free_running"] = float(self.free_running(model, batch).sum())
        sums["samples"] = float(n)
        return sums

    def finish_validation(self, sums: dict[str, float]) -> dict[str, float]:
        out = super().finish_validation(sums)
        out["loss"] = out.pop("total", float("nan"))
        out.setdefault(self.metric, float("nan"))
        return out

    def validation_line(self, val: dict[str, float]) -> str:
        return (f"val free-running L1 {val['free_running']:.4f} (selects best.pt), training loss {val['loss']:.4f}, "
                f"prediction {val.get('prediction', float('nan')):.4f}")

    def evaluate(self, *, split: str | None = None, checkpoint: str | None = None, console: Console | None = None,
                 **_: Any) -> dict:
        from avtrain.tasks.speech.evaluate import evaluate_speech

        return evaluate_speech(self.recipe, self, split=split, checkpoint=checkpoint, console=console)

    def predict(self, model: nn.Module, batch: dict, device: torch.device) -> list[Prediction]:
        """Whole clips (a scoring batch) -> predicted spectrograms in the shards' units."""
        raise NotImplementedError


class BridgingSpeechTask(SpeechTask):
    default_synthesis = ["mel"]

    def __init__(self, recipe):
        super().__init__(recipe)
        from avtrain.tasks.speech.losses import BridgingWeights

        words, memory = recipe.model_conf["word_loss"], recipe.memory_conf
        self.vocabulary: tuple[str, ...] = word_vocabulary(words["vocabulary"]) if words["weight"] > 0 else ()
        self.weights = BridgingWeights(save=memory["save_weight"], bridge=memory["bridge_weight"],
                                       words=words["weight"], delta=recipe.model_conf["delta_weight"])

    def fields(self) -> Fields:
        return Fields(word_vocabulary=self.vocabulary)

    def build_model(self) -> nn.Module:
        from avtrain.models.bridging_speech import SpeechModel

        m, mem = self.recipe.model_conf, self.recipe.memory_conf
        architecture = {k: v for k, v in m.items() if k not in ("visual_init", "word_loss", "delta_weight")}
        return SpeechModel.build(**architecture, num_slots=mem["num_slots"], scale=mem["scale"],
                                 variant=mem["variant"], init_std=mem["init_std"],
                                 word_classes=len(self.vocabulary) + 1 if self.vocabulary else 0)

    def losses(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        from avtrain.tasks.speech.losses import bridging_speech_loss

        out = model(batch["video"], batch["mel"], batch.get("lengths"), batch.get("mask"))
        return bridging_speech_loss(out, batch, self.recipe.model_conf["decoder"]["frames_per_step"], self.weights)

    def init_weights(self, model: nn.Module) -> None:
        """``model_conf.visual_init``: the visual front starts from a lip-reading run's (before the first step)."""
        path = self.recipe.model_conf["visual_init"]
        if path:
            from avtrain.tasks.visual_init import load_visual_front

            load_visual_front(model.visual.front, path)

    def predict(self, model: nn.Module, batch: dict, device: torch.device) -> list[Prediction]:
        return predict_bridging(model, self.recipe, batch, device)

    def free_running(self, model: nn.Module, batch: dict) -> torch.Tensor:
        from avtrain.tasks.speech.validation import bridging_free_running

        return bridging_free_running(model, batch)


class TwoTowerTask(SpeechTask):
    default_synthesis = ["linear", "exemplar"]  # Lin-synth and Mel-synth

    def __init__(self, recipe):
        super().__init__(recipe)
        self.predicts_linear = bool(recipe.model_conf["postnet"])

    def fields(self) -> Fields:
        # K // 2 frames of context around a training window: its border frames get their true K-frame windows, as
        # when a whole clip is predicted (only a clip's own ends repeat frames / have zero flow)
        return Fields(flow=bool(self.recipe.model_conf["use_flow"]), linear=self.predicts_linear,
                      context=int(self.recipe.model_conf["k"]) // 2)

    host_fields = ("lengths", "centre")  # the loss window's bounds are read on the host, like the lengths

    def build_model(self) -> nn.Module:
        from avtrain.models.two_tower import TwoTowerModel

        return TwoTowerModel(**{k: v for k, v in self.recipe.model_conf.items() if k != "loss"})

    def losses(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        from avtrain.tasks.speech.losses import two_tower_loss

        out = model(batch["video"], batch.get("flow"), batch.get("lengths"), batch.get("centre"))
        return two_tower_loss(out, batch, self.recipe.model_conf["frames_per_step"], self.recipe.model_conf["loss"])

    def predict(self, model: nn.Module, batch: dict, device: torch.device) -> list[Prediction]:
        return predict_two_tower(model, self.recipe, batch, device)

    def validation_sums(self, model: nn.Module, batch: dict) -> dict[str, float]:
        """One inference pass per whole clip gives both the loss terms and the free-running error."""
        from avtrain.tasks.speech.validation import two_tower_validation_sums

        sums = two_tower_validation_sums(model, batch, post_net_window(self.recipe), self.recipe.model_conf["loss"])
        sums["samples"] = float(len(batch["keys"]))
        return sums
