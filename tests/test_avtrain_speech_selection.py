"""Checkpoint selection and the plateau schedule of a speech recipe follow the free-running validation error (what
inference predicts from the video alone), not the teacher-forced loss (issue 13, item 4).

The case where the two disagree: a decoder that copies its previous input frame. Teacher-forced, that input is the
true previous frame, so it scores well on smooth spectrograms; free-running, it only copies its own output from the
all-zero go frame. A model that predicts the validation split's mean frame, whatever its input, has the higher
teacher-forced loss and the lower free-running error, and must be the one kept.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from avtrain.api import make_trainer
from avtrain.config import load_recipe
from avtrain.data import build_loader
from avtrain.synthetic import write_shards
from avtrain.tasks import task_for
from tiny_recipes import TINY_SPEECH_MODEL

RECIPE = """
seed: 5
output_dir: {out}
data: {{shards: {shards}, batch_size: 2, eval_batch_size: 2, shuffle_buffer: 4, max_frames: 4}}
""" + TINY_SPEECH_MODEL + """optim: adam
optim_conf: {{lr: 1.0e-3}}
scheduler: plateau
scheduler_conf: {{factor: 0.5, patience: 0}}
trainer: {{epochs: 2, progress: false, threads: 1}}
"""


class _Scripted(nn.Module):
    """A stand-in speech model: ``forward`` with a target mel is its teacher-forced pass, ``infer`` its free-running
    one; the task scores both as it scores the bridging model's outputs."""

    frames_per_step = 4

    def __init__(self, tag: int, mean_frame: torch.Tensor | None = None):
        super().__init__()
        self.register_buffer("tag", torch.tensor(tag))
        self.mean_frame = mean_frame

    def forward(self, video: torch.Tensor, mel: torch.Tensor | None = None, lengths=None, mask=None) -> dict:
        if self.mean_frame is None:  # the copier, fed the true previous frame
            pred = torch.cat([torch.zeros_like(mel[..., :1]), mel[..., :-1]], -1)
        else:
            pred = self.mean_frame[None, :, None].expand_as(mel)
        return {"mel": pred, "mel_post": pred, "alignments": None}

    def infer(self, video: torch.Tensor, lengths: torch.Tensor) -> dict:
        b, t = video.shape[:2]
        if self.mean_frame is None:  # copying its own output, from the all-zero go frame
            return {"mel_post": torch.zeros(b, 80, 4 * t)}
        return {"mel_post": self.mean_frame[None, :, None].expand(b, 80, 4 * t).clone()}


@pytest.fixture
def recipe(tmp_path):
    shards = write_shards(tmp_path / "syn", splits={"train": (1, 2), "val": (1, 4)}, size=96, min_frames=8,
                          max_frames=12)
    path = tmp_path / "speech.yaml"
    path.write_text(RECIPE.format(out=tmp_path / "run", shards=shards))
    return load_recipe(path)


def _val_mean_frame(recipe) -> torch.Tensor:
    frames = [b["mel"][i, :, : 4 * int(b["lengths"][i])]
              for b in build_loader(recipe, "val", train=False, whole=True) for i in range(len(b["keys"]))]
    return torch.cat(frames, -1).mean(-1)


def test_speech_validation_reads_whole_clips_and_names_the_free_running_error(recipe):
    task = task_for(recipe)
    assert task.metric == "free_running" and not task.higher_is_better and task.whole_clip_validation
    trainer = make_trainer(recipe)
    assert trainer.metric_name == "free_running"
    val = trainer.validate()
    assert val["samples"] == 4 and {"loss", "prediction", "free_running", "mel_l1", "post_l1"} <= set(val)
    assert val["free_running"] > 0 and val["free_running"] == val["free_running"]
    assert "free-running L1" in task.validation_line(val)


def test_best_checkpoint_and_plateau_follow_free_running_not_teacher_forced(recipe):
    trainer = make_trainer(recipe)
    mean_model, copier = _Scripted(1, _val_mean_frame(recipe)), _Scripted(2)
    scores = {}
    for name, model in (("mean", mean_model), ("copier", copier)):
        trainer.model = trainer.net = model
        scores[name] = trainer.validate()
    # the case: teacher-forced, the copier is better; free-running, the mean model is
    assert scores["copier"]["prediction"] < 0.9 * scores["mean"]["prediction"], scores
    assert scores["copier"]["free_running"] > 1.3 * scores["mean"]["free_running"], scores

    lr = trainer.optimizer.param_groups[0]["lr"]
    for model in (mean_model, copier):  # epoch 0: the mean model; epoch 1: the copier
        trainer.model = trainer.net = model
        trainer.end_epoch(1.0, 1)
    best = torch.load(trainer.ckpt_dir / "best.pt", weights_only=False)
    assert int(best["model"]["tag"]) == 1  # the mean model's weights stay best.pt
    assert trainer.best == pytest.approx(scores["mean"]["free_running"])
    # the plateau counted the copier's epoch as no improvement (patience 0): the learning rate halved
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(lr * 0.5)


def test_a_model_whose_training_loss_is_inference_is_validated_in_one_pass(recipe):
    class NonAutoregressive(_Scripted):
        training_loss_is_inference = True

        def infer(self, video, lengths):
            raise AssertionError("no second, free-running pass for a model that says its loss is inference")

    recipe_task = task_for(recipe)
    model = NonAutoregressive(3, _val_mean_frame(recipe))
    batch = next(iter(build_loader(recipe, "val", train=False, whole=True)))
    sums = recipe_task.validation_sums(model, batch)
    assert sums["free_running"] == pytest.approx(sums["prediction"])
