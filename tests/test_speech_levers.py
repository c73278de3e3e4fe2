"""The training levers of the speech recipes, each on its own: per-frame word classes from GRID's alignments (the
auxiliary word loss), per-bin mel standardisation, a visual front started from a lip-reading run, time masking, the
per-step learning-rate schedule and the weight average (EMA) with exact resume.

Real GRID clips go through avprep's CLI (a folder of six s1 clips, linked); the engine tests use synthetic shards.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from avtrain.api import make_trainer, train
from avtrain.config import RecipeError, load_recipe, validate_recipe
from avtrain.data import build_loader, denormalise_mel, normalise_mel
from avtrain.data.augment import ClipAugment, time_mask
from avtrain.data.mel_stats import mel_statistics
from avtrain.engine.checkpoint import CheckpointError, load, save_atomic
from avtrain.synthetic import write_shards
from avtrain.tasks import task_for
from avtrain.tasks.base import Fields
from avtrain.tasks.speech.task import word_vocabulary

REPO = Path(__file__).resolve().parents[1]
# four train clips (lrae3s is 74 frames long), one val, one test
CLIPS = ["bbal6n", "bgaa6n", "bbaf3s", "lrae3s", "srih1s", "bbaf2n"]


@pytest.fixture(scope="module")
def sentence_shards(tmp_path_factory, grid_root) -> Path:
    """avprep's bridging-grid shards of six real s1 clips (the split lists put them in train/val/test)."""
    root = tmp_path_factory.mktemp("grid6")
    for sub in ("video", "align"):
        (root / "s1" / sub).mkdir(parents=True)
    for utt in CLIPS:
        (root / "s1" / "video" / f"{utt}.mkv").symlink_to(grid_root / "s1" / "video" / f"{utt}.mkv")
        (root / "s1" / "align" / f"{utt}.align").symlink_to(grid_root / "s1" / "align" / f"{utt}.align")
    out = root / "shards"
    subprocess.run([str(Path(sys.executable).parent / "avprep"), "grid", "--root", str(root), "--speakers", "s1",
                    "--preset", "bridging-grid", "--out", str(out), "--jobs", "1"], check=True, capture_output=True)
    return out


def _speech_recipe(shards: Path, out: Path, **model: object):
    return validate_recipe({
        "output_dir": str(out), "model": "speech",
        "data": {"shards": str(shards), "video_field": "mouth", "video_size": 32, "color": "gray", "max_frames": 20,
                 "batch_size": 2, "eval_batch_size": 2, "shuffle_buffer": 1},
        "augment": "paper", "augment_conf": {"crop": None, "flip": False, "erase_prob": 0.0},
        "memory_conf": {"num_slots": 0},
        "model_conf": {"in_channels": 1, "embed_dim": 16, "visual": "resnet",
                       "resnet": {"stem_channels": 4, "widths": [4, 4, 8, 8], "blocks": [1, 1, 1, 1]},
                       "decoder": {"type": "aligned", "channels": 16, "postnet_channels": 8}, **model},
        "trainer": {"epochs": 1, "progress": False, "threads": 1, "val_each_epoch": False},
    })


# ------------------------------------------------------------------ word classes
def _align(grid_root: Path, utt: str) -> list[tuple[int, int, str]]:
    rows = [line.split() for line in (grid_root / "s1" / "align" / f"{utt}.align").read_text().splitlines()]
    # 1000 units = one frame; a frame the word covers in part is the word's
    return [(int(a) // 1000, -(-int(b) // 1000), w) for a, b, w in rows if w != "sil"]


def test_word_frames_follow_the_alignment_in_whole_clips_and_windows(sentence_shards, grid_root, tmp_path):
    vocab = word_vocabulary("grid")
    assert len(vocab) == 51 and vocab[0] == "bin"
    fields = Fields(word_vocabulary=vocab)
    recipe = _speech_recipe(sentence_shards, tmp_path / "r")
    whole = {k: w for b in build_loader(recipe, "train", train=False, fields=fields, whole=True)
             for k, w in zip(b["keys"], b["word_frames"])}
    assert whole
    for key, labels in whole.items():
        words = _align(grid_root, key.split("_")[1])
        first, last = words[0][0], words[-1][1]
        assert (labels[:first] == 0).all() and (labels[last:75] <= 0).all()  # silence, then padding (-100)
        for start, end, word in words:
            inside = labels[start + 1 : end - 1]  # a word's edge frames may go to its neighbour
            assert (inside == vocab.index(word) + 1).all(), (key, word)
    # a random training window carries the same labels as the same frames of the whole clip
    for batch in build_loader(recipe, "train", train=True, fields=fields):
        for key, labels, n in zip(batch["keys"], batch["word_frames"], batch["lengths"]):
            full = whole[key][whole[key] >= 0]
            assert n == 20 and any(torch.equal(labels[:n], full[s : s + 20]) for s in range(len(full) - 19))


def test_word_loss_is_trained_and_never_decoded(sentence_shards, tmp_path):
    recipe = _speech_recipe(sentence_shards, tmp_path / "w", word_loss={"weight": 0.5})
    task = task_for(recipe)
    assert task.fields().word_vocabulary == word_vocabulary("grid")
    model = task.build_model()
    assert model.word_head.out_features == 52  # no word + 51 words
    batch = next(iter(build_loader(recipe, "train", train=True, fields=task.fields())))
    loss, losses = task.losses(model, batch)
    assert losses["words"] > 0 and math.isclose(losses["prediction"], losses["mel_l1"] + losses["post_l1"])
    assert math.isclose(losses["total"], losses["task"] + 0.5 * losses["words"], rel_tol=1e-5)
    model.eval()
    with torch.no_grad():
        mel = model.infer(batch["video"], batch["lengths"])["mel_post"]
        model.word_head.weight.add_(1.0)  # the head cannot change what is decoded
        assert torch.equal(mel, model.infer(batch["video"], batch["lengths"])["mel_post"])
    assert not hasattr(task_for(_speech_recipe(sentence_shards, tmp_path / "n")).build_model().word_head, "weight")


# ------------------------------------------------------------------ mel scaling
def test_per_bin_mel_statistics_and_scaling(sentence_shards):
    mean, std, frames = mel_statistics(sentence_shards, "train")
    mels = [b["mel"][i, :, : 4 * int(n)].numpy()
            for b in build_loader(_speech_recipe(sentence_shards, Path("x")), "train", train=False, whole=True)
            for i, n in enumerate(b["lengths"])]
    # the loader normalised with -5 / 2.5: undo it, then measure directly
    direct = np.concatenate([m * 2.5 - 5.0 for m in mels], 1)
    assert frames == direct.shape[1] and np.allclose(mean, direct.mean(1), atol=1e-4)
    assert np.allclose(std, direct.std(1), atol=1e-4)
    assert mean[0] > mean[-1] + 2  # GRID's low bins are louder than its high bins
    d = validate_recipe({"output_dir": "x", "model": "speech", "model_conf": {"in_channels": 1},
                         "data": {"shards": "y", "mel_mean": mean.tolist(), "mel_std": std.tolist()}}).data
    z = normalise_mel(direct, d)
    assert np.allclose(z.mean(1), 0, atol=1e-3) and np.allclose(z.std(1), 1, atol=1e-3)
    assert np.allclose(denormalise_mel(z, d), direct, atol=1e-4)
    batched = torch.from_numpy(np.stack([z[:, :40], z[:, 40:80]]))  # (B, M, L) tensors, as predictions are
    assert torch.allclose(denormalise_mel(batched, d), torch.from_numpy(np.stack([direct[:, :40], direct[:, 40:80]])),
                          atol=1e-4)
    with pytest.raises(RecipeError, match="lists of different lengths"):
        validate_recipe({"output_dir": "x", "model": "speech", "model_conf": {"in_channels": 1},
                         "data": {"shards": "y", "mel_mean": [0.0] * 80, "mel_std": [1.0] * 79}})


# ------------------------------------------------------------------ visual front from lip reading
def _lip_checkpoint(path: Path, widths: list[int]) -> Path:
    recipe = validate_recipe({
        "output_dir": str(path.parent), "model": "lipreading", "data": {"shards": "y"},
        "visual_frontend_conf": {"stem_channels": widths[0], "widths": widths, "blocks": [1, 1, 1, 1]},
        "memory_conf": {"num_slots": 0}, "model_conf": {"num_classes": 5, "embed_dim": 8}})
    model = task_for(recipe).build_model()
    save_atomic({"model": model.state_dict(), "recipe": recipe.model_dump(mode="json")}, path)
    return path


def test_visual_front_starts_from_a_lipreading_checkpoint(sentence_shards, tmp_path):
    lip = _lip_checkpoint(tmp_path / "lip.pt", [4, 4, 8, 8])
    recipe = _speech_recipe(sentence_shards, tmp_path / "s", visual_init=str(lip))
    trainer = make_trainer(recipe)  # the engine calls the task's init_weights on a new run
    saved = {k[len("visual."):]: v for k, v in load(lip)["model"].items() if k.startswith("visual.")}
    front = trainer.model.visual.front.state_dict()
    assert set(front) <= set(saved) and all(torch.equal(front[k], saved[k]) for k in front)
    other = task_for(_speech_recipe(sentence_shards, tmp_path / "t")).build_model().visual.front.state_dict()
    assert not torch.equal(other["stem.weight"], front["stem.weight"])  # not what a fresh model starts with
    wrong = _lip_checkpoint(tmp_path / "wide.pt", [4, 8, 8, 16])
    with pytest.raises(CheckpointError, match="does not match this recipe's"):
        make_trainer(_speech_recipe(sentence_shards, tmp_path / "u", visual_init=str(wrong)))
    with pytest.raises(RecipeError, match="set visual: resnet"):
        validate_recipe({"output_dir": "x", "model": "speech", "data": {"shards": "y"},
                         "model_conf": {"visual_init": str(lip)}})


# ------------------------------------------------------------------ time masking
def test_time_masks_are_spans_of_the_mean_frame_drawn_per_clip():
    video = np.ones((40, 8, 8), np.float32)
    masked = time_mask(video.copy(), np.random.default_rng(3), width=6, count=2)
    zero = np.flatnonzero((masked == 0).all(axis=(1, 2)))
    assert 0 < len(zero) <= 12 and ((masked == 0) | (masked == 1)).all()
    assert np.array_equal(masked, time_mask(video.copy(), np.random.default_rng(3), width=6, count=2))
    aug = ClipAugment("paper", {"crop": None, "flip": False, "erase_prob": 0.0, "time_mask": 6, "time_masks": 2},
                      0.0, 1 / 255)
    frames = np.full((40, 8, 8), 2.0, np.float32)
    masked = [int((aug(frames, np.random.default_rng(s)) == 0).all(axis=(1, 2)).sum()) for s in range(200)]
    assert max(masked) <= 12 and 4 < np.mean(masked) < 6.5  # two spans of 0..6 frames: 6 on average, less overlaps
    assert not (aug(frames, None) == 0).any()  # evaluation never masks


# ------------------------------------------------------------------ engine: per-step schedule, weight average
ENGINE = """
seed: 3
output_dir: {out}
data: {{shards: {shards}, batch_size: 4, eval_batch_size: 8, shuffle_buffer: 8}}
visual_frontend_conf: {{stem_channels: 8, widths: [8, 8, 16, 16], blocks: [1, 1, 1, 1]}}
memory_conf: {{num_slots: 0}}
backend_conf: {{hidden: 16}}
model_conf: {{num_classes: 4, embed_dim: 16}}
optim: adamw
optim_conf: {{lr: 0.01}}
scheduler: cosine
scheduler_conf: {{warmup_epochs: 1, min_lr_ratio: 0.1, interval: {interval}}}
augment_conf: {{crop: 28}}
trainer: {{epochs: 3, progress: false, threads: 1, save_every_steps: 4, ema: {ema}}}
"""


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return write_shards(tmp_path_factory.mktemp("syn"), splits={"train": (2, 12), "val": (1, 8), "test": (1, 8)})


def _engine(tmp_path, shards, name, interval="step", ema="null"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(ENGINE.format(out=tmp_path / name, shards=shards, interval=interval, ema=ema))
    return load_recipe(path)


def _rates(tmp_path, name) -> list[float]:
    import json

    rows = [json.loads(line) for line in (tmp_path / name / "train_log.jsonl").read_text().splitlines()]
    return [r["lr"] for r in rows]


def test_step_schedule_moves_every_step_along_the_epoch_curve(tmp_path, synthetic):
    rec = _engine(tmp_path, synthetic, "steps")
    rec.trainer.log_every = 1
    train(rec)
    lr = _rates(tmp_path, "steps")  # the rate each step ran with: 3 epochs x 6 steps
    warm = [(k + 1) / 6 for k in range(6)]  # linear warm-up over epoch 0, then the cosine over epochs 1-2
    cos = [0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * k / 12)) for k in range(12)]
    assert lr == pytest.approx([0.01 * f for f in warm + cos])
    rec = _engine(tmp_path, synthetic, "epochs", interval="epoch")
    rec.trainer.log_every = 1
    train(rec)
    assert len(set(_rates(tmp_path, "epochs"))) == 3  # the staircase: one rate per epoch


def test_weight_average_is_what_is_validated_saved_and_resumed(tmp_path, synthetic):
    whole = train(_engine(tmp_path, synthetic, "whole", ema=0.9))
    ck = load(tmp_path / "whole" / "checkpoints" / "last.pt")
    assert ck["ema_updates"] == 18
    assert any(not torch.equal(ck["model"][k], ck["train_model"][k]) for k in ck["model"] if "weight" in k)
    part = _engine(tmp_path, synthetic, "part", ema=0.9)
    part.trainer.max_steps = 9
    a = train(part)
    b = train(_engine(tmp_path, synthetic, "part", ema=0.9))
    assert a.losses + b.losses == whole.losses  # exact, through the interruption
    again = load(tmp_path / "part" / "checkpoints" / "last.pt")
    assert all(torch.equal(again["model"][k], ck["model"][k]) for k in ck["model"])
    # a checkpoint without the average cannot resume a run that keeps one
    plain = tmp_path / "plain.yaml"
    plain.write_text(ENGINE.format(out=tmp_path / "plain", shards=synthetic, interval="step", ema="null"))
    rec = load_recipe(plain)
    rec.trainer.max_steps = 2
    train(rec)
    with pytest.raises(CheckpointError, match="trainer.ema: None in the checkpoint, 0.9 here"):
        train(load_recipe(plain, ["trainer.ema=0.9"]))


def test_delta_term_scores_the_frame_to_frame_changes_of_real_frames():
    from avtrain.tasks.speech.losses import BridgingWeights, bridging_speech_loss

    target = torch.zeros(1, 2, 8)
    target[..., 4:] = 1.0  # an onset between frames 3 and 4
    mask = torch.tensor([[True, True]])  # two video frames = 8 spectrogram frames
    flat = {"mel": torch.full_like(target, 0.5), "mel_post": torch.full_like(target, 0.5), "alignments": None}
    step = {"mel": target.clone(), "mel_post": target.clone(), "alignments": None}
    batch = {"mel": target, "mask": mask}
    _, smooth = bridging_speech_loss(flat, batch, 4, BridgingWeights(delta=1.0))
    _, sharp = bridging_speech_loss(step, batch, 4, BridgingWeights(delta=1.0))
    assert smooth["post_l1"] == pytest.approx(0.5) and smooth["delta"] == pytest.approx(1 / 7)  # one jump missed
    assert sharp["delta"] == 0.0 and "delta" not in bridging_speech_loss(flat, batch, 4, BridgingWeights())[1]
    assert smooth["total"] == pytest.approx(smooth["task"] + smooth["delta"])
