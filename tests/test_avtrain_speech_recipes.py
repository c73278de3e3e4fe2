"""Speech reconstruction end to end on real GRID clips: avprep shards (bridging-grid and two-tower presets, the real
detector) -> the CPU-sized recipes trained for a few steps -> `avtrain eval` (Griffin-Lim, STOI/ESTOI/PESQ, example
files) -> `avtrain synth` on an original GRID .mpg (with audio) and on a silent copy.

Training is cut to a few steps: what is asserted is that every stage runs on real data and produces well-formed,
scored output, not that a few steps reconstruct speech (docs/results.md has the trained numbers).
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from avtrain.api import make_trainer, train
from avtrain.config import RecipeError, load_recipe, validate_recipe
from avtrain.data import MEL_PER_FRAME, build_loader
from avtrain.tasks import task_for
from avtrain.tasks.speech.evaluate import evaluate_speech

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes"
SPEECH_RECIPES = ["grid-s1-speech-bridging", "grid-s1-speech-baseline", "grid-s1-speech-two-tower",
                  "grid-unseen-speech-bridging"]
# keys a CPU variant may change: sizes, batch, workers, epochs (never the model, memory kind, data fields, loss)
SIZE_KEYS = {"width", "embed_dim", "audio_channels", "decoder", "fc_dim", "cbhg", "batch_size", "eval_batch_size",
             "num_workers", "shuffle_buffer", "epochs", "log_every", "save_every_steps", "threads", "max_frames",
             "output_dir", "bottleneck_ratio", "patience"}
TINY = ["trainer.max_steps=2", "trainer.progress=false", "data.batch_size=2", "data.eval_batch_size=2",
        "data.num_workers=0", "data.shuffle_buffer=1", "trainer.val_each_epoch=false",
        "eval.max_clips=2", "eval.griffin_lim_iters=4", "eval.plot_clips=1"]


def _prepare(out: Path, preset_name: str, grid: Path) -> Path:
    from avprep.corpora import grid as grid_corpus
    from avprep.options import PrepOptions
    from avprep.prepare import prepare

    clips = grid_corpus.find_clips(grid, ["s1"])
    by_split: dict[str, list] = {}
    for c in clips:
        by_split.setdefault(c.split, []).append(c)
    chosen = by_split["train"][:3] + by_split["val"][:1] + by_split["test"][:2]
    report = prepare(chosen, "grid", out, PrepOptions(preset=preset_name, jobs=1, progress=False))
    assert report is not None
    return out


@pytest.fixture(scope="module")
def bridging_shards(tmp_path_factory, grid_root):
    return _prepare(tmp_path_factory.mktemp("speech-bridging"), "bridging-grid", grid_root)


@pytest.fixture(scope="module")
def two_tower_shards(tmp_path_factory, grid_root):
    return _prepare(tmp_path_factory.mktemp("speech-two-tower"), "two-tower", grid_root)


def _cpu_recipe(name: str, shards: Path, out: Path, extra: list[str] = ()):
    return load_recipe(RECIPES / f"{name}-cpu.yaml",
                       [f"data.shards={shards}", f"output_dir={out}", *TINY, *extra])


# ------------------------------------------------------------------ recipes
@pytest.mark.parametrize("name", SPEECH_RECIPES)
def test_recipe_and_its_cpu_variant_differ_only_in_size(name):
    full, cpu = load_recipe(RECIPES / f"{name}.yaml"), load_recipe(RECIPES / f"{name}-cpu.yaml")
    assert full.model == cpu.model and getattr(full, "memory", None) == getattr(cpu, "memory", None)

    def flat(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict) and k != "decoder" and k != "cbhg":
                yield from flat(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}", v

    a, b = dict(flat(full.model_dump())), dict(flat(cpu.model_dump()))
    changed = {k for k in a if a[k] != b[k]}
    assert {k.split(".")[-1] for k in changed} <= SIZE_KEYS, changed
    if full.model == "speech":  # the paper's N: 150 speaker-dependent, 360 speaker-independent, 0 baseline
        want = {"grid-s1-speech-bridging": 150, "grid-s1-speech-baseline": 0, "grid-unseen-speech-bridging": 360}
        assert full.memory_conf["num_slots"] == cpu.memory_conf["num_slots"] == want[name]


def test_speech_recipe_errors_are_one_line():
    base = {"output_dir": "x", "data": {"shards": "y", "color": "rgb"}, "model": "speech"}
    with pytest.raises(RecipeError, match="did you mean 'attention_rnn'"):
        validate_recipe({**base, "model_conf": {"decoder": {"atention_rnn": 8}}})
    with pytest.raises(RecipeError, match="in_channels is 3 but data.color 'gray'"):
        validate_recipe({**base, "data": {"shards": "y"}})
    with pytest.raises(RecipeError, match="two_tower reads optical flow"):
        validate_recipe({"output_dir": "x", "data": {"shards": "y"}, "model": "two_tower", "augment": "paper"})
    with pytest.raises(RecipeError, match="needs memory 'bridge'"):
        validate_recipe({**base, "memory": "mtlam"})


def test_decoder_keys_match_tacotron():
    import inspect

    from avtrain.config import DECODER_KEYS
    from avtrain.models.tacotron import TacotronDecoder

    assert set(DECODER_KEYS) == set(inspect.signature(TacotronDecoder).parameters) - {"memory_dim", "n_mels"}


# ------------------------------------------------------------------ data
@pytest.mark.slow
def test_batches_of_real_sentence_shards(bridging_shards, two_tower_shards, tmp_path):
    r = _cpu_recipe("grid-s1-speech-bridging", bridging_shards, tmp_path / "b", ["data.max_frames=12"])
    batch = next(iter(build_loader(r, "train", train=True)))
    assert batch["video"].shape == (2, 12, 3, 96, 96)
    assert batch["mel"].shape == (2, 80, MEL_PER_FRAME * 12)
    full = next(iter(build_loader(r, "test", train=False, scoring=True)))  # whole clips, true waves
    t = int(full["lengths"][0])
    assert t == 75 and full["video"].shape[1] == 75
    assert len(full["waves"][0]) == t * 640 and full["spectrograms"][0]["n_fft"] == 800

    r2 = _cpu_recipe("grid-s1-speech-two-tower", two_tower_shards, tmp_path / "t", ["data.max_frames=10"])
    b2 = next(iter(build_loader(r2, "train", train=True, fields=task_for(r2).fields())))
    # a 10-frame loss window with up to K // 2 = 4 frames of context on each side (fewer at a clip's ends)
    n = b2["video"].shape[1]
    assert 10 < n <= 18 and b2["video"].shape == (2, n, 1, 160, 128)
    assert ((b2["centre"][:, 1] - b2["centre"][:, 0]) == 10).all()
    assert b2["flow"].shape == (2, n - 1, 2, 160, 128)  # flow i joins loaded frames i and i + 1
    assert b2["linear"].shape == (2, 321, 4 * n) and b2["mel"].shape == (2, 80, 4 * n)
    assert 0.0 <= float(b2["mel"].min()) and float(b2["mel"].max()) <= 1.0  # tacotron [0, 1] targets as stored
    assert float(b2["flow"].abs().max()) > 0.1  # real motion, in pixels per frame


# ------------------------------------------------------------------ train + eval + synth
# the runs below are evaluated with checkpoint="last", which writes under eval/test-last/ (best.pt owns eval/test/)
def _check_summary(summary: dict, modes: list[str], run: Path, split: str = "test-last"):
    assert summary["clips"] == 2 and list(summary["modes"]) == modes
    for mode in modes:
        m = summary["modes"][mode]["metrics"]
        for name in ("stoi", "estoi"):
            assert m[name]["count"] + m[name]["failed"] == 2
            assert m[name]["count"] == 0 or -1.0 <= m[name]["mean"] <= 1.0
        for name in ("pesq_wb_16k", "pesq_nb_8k"):
            assert m[name]["count"] + m[name]["failed"] == 2  # a clip PESQ cannot score is counted, never a crash
            assert m[name]["label"]
        mode_dir = run / "eval" / split / mode
        assert (mode_dir / "speech_metrics.json").exists()
        rows = (mode_dir / "speech_per_clip.jsonl").read_text().splitlines()
        assert len(rows) == 2
        wavs = sorted((mode_dir / "examples").glob("*_pred.wav"))
        assert len(wavs) == 1 and list((mode_dir / "examples").glob("*_mel.png"))
        wave, rate = sf.read(wavs[0])
        assert rate == 16000 and len(wave) == 75 * 640 and np.isfinite(wave).all() and np.abs(wave).max() > 0


@pytest.fixture(scope="module")
def bridging_run(bridging_shards, tmp_path_factory):
    run = tmp_path_factory.mktemp("bridging-run")
    r = _cpu_recipe("grid-s1-speech-bridging", bridging_shards, run, ["data.max_frames=12"])
    result = train(r)
    assert result.step == 2 and len(result.losses) == 2 and all(math.isfinite(x) for x in result.losses)
    return r, run


@pytest.mark.slow
def test_bridging_speech_trains_and_scores_on_real_grid(bridging_run):
    r, run = bridging_run
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=False)
    assert state["preprocess"]["preset"]["name"] == "bridging-grid"
    assert np.asarray(state["preprocess"]["mean_face"]).ndim == 2  # the registration synth must repeat
    summary = evaluate_speech(r, checkpoint="last")
    _check_summary(summary, ["mel"], run)
    assert 0.0 < summary["attention_diagonal_mass"] <= 1.0


@pytest.mark.slow
def test_speech_eval_reports_wer_and_the_ceilings_beside_each_vocoder(bridging_run, bridging_shards):
    """eval.synthesis [mel, hifigan]: both vocoders scored with the WER, and the ceilings of the same clips (true
    audio through the recogniser, the true mel through each vocoder), cached per shard folder."""
    import json

    from avtrain.tasks.speech import hifigan
    from avtrain.tasks.speech.ceilings import ceilings
    from avtrain.tasks.speech.recognise import recognisers

    pytest.importorskip("pocketsphinx")
    _, run = bridging_run
    vocoders = ["mel", "hifigan"] if hifigan.available() else ["mel"]
    r = _cpu_recipe("grid-s1-speech-bridging", bridging_shards, run, [f"eval.synthesis=[{','.join(vocoders)}]"])
    summary = evaluate_speech(r, checkpoint="last")
    _check_summary(summary, vocoders, run)
    for mode in vocoders:
        m = summary["modes"][mode]["metrics"]
        assert m["wer"]["count"] == m["wer_cmudict"]["count"] == 2 and 0.0 <= m["wer"]["mean"] <= 1.0
        row = json.loads((run / "eval" / "test-last" / mode / "speech_per_clip.jsonl").read_text().splitlines()[0])
        assert {"wer", "wer_cmudict", "text", "heard_wer", "heard_wer_cmudict"} <= set(row)
    bounds = summary["ceilings"]
    names = {"true_audio", "true_mel_griffin_lim"} | ({"true_mel_hifigan"} if hifigan.available() else set())
    assert set(bounds["rows"]) == names and bounds["cache"].startswith(str(bridging_shards / "ceilings"))
    rows = bounds["rows"]
    assert set(rows["true_audio"]["metrics"]) == {"wer", "wer_cmudict"} and rows["true_audio"]["clips"] == 2
    assert rows["true_audio"]["metrics"]["wer"]["mean"] <= 1 / 6  # two real s1 test clips, heard (nearly) right
    for name in names - {"true_audio"}:
        assert rows[name]["metrics"]["stoi"]["mean"] > 0.85 and rows[name]["clips"] == 2
    saved = json.loads((run / "eval" / "test-last" / "speech_summary.json").read_text())
    assert saved["ceilings"]["rows"].keys() == rows.keys()
    # the second time: from the shard folder's cache, same numbers
    again = ceilings(r, "test", False, recognisers(), hifigan.HifiGan() if hifigan.available() else None)
    assert again["cached"] and again["rows"] == json.loads(json.dumps(rows))


def test_diagonal_attention_mass():
    from avtrain.tasks.speech.predict import diagonal_mass

    t = 10
    assert diagonal_mass(torch.eye(t), t) == pytest.approx(1.0)
    assert diagonal_mass(torch.full((t, t), 1 / t), t) == pytest.approx((3 * t - 2) / t / t)
    assert diagonal_mass(torch.eye(t).roll(5, 1), t) == pytest.approx(0.0)


@pytest.mark.slow
def test_validation_keeps_the_lowest_free_running_error(bridging_shards, tmp_path):
    r = _cpu_recipe("grid-s1-speech-bridging", bridging_shards, tmp_path, ["data.max_frames=8",
                                                                         "trainer.val_each_epoch=true"])
    trainer = make_trainer(r)
    val = trainer.validate()
    assert val["samples"] == 1 and math.isfinite(val["loss"]) and {"mel_l1", "post_l1", "save", "bridge"} <= set(val)
    assert trainer.metric_name == "free_running" and val["free_running"] > 0  # whole clips, decoded from video only
    assert val["prediction"] == pytest.approx(val["mel_l1"] + val["post_l1"])  # the recall path only
    trainer.best = 1.0
    assert trainer.better(0.5) and not trainer.better(2.0)


@pytest.mark.slow
def test_two_tower_trains_and_scores_lin_and_mel_synth(two_tower_shards, tmp_path):
    r = _cpu_recipe("grid-s1-speech-two-tower", two_tower_shards, tmp_path, ["data.max_frames=8",
                                                                           "eval.exemplar_clips=2", "eval.window=8"])
    result = train(r)
    assert result.step == 2 and all(math.isfinite(x) for x in result.losses)
    summary = evaluate_speech(r, checkpoint="last")
    _check_summary(summary, ["linear", "exemplar"], tmp_path)

    # the paper's second stage: the first stage's weights, the towers' conv layers (and BN statistics) frozen
    stage1 = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=False)["model"]
    r2 = _cpu_recipe("grid-s1-speech-two-tower", two_tower_shards, tmp_path / "stage2",
                     ["data.max_frames=8", f"trainer.init_checkpoint={tmp_path / 'checkpoints' / 'last.pt'}",
                      "model_conf.freeze_towers=true", "trainer.max_steps=1"])
    assert train(r2).step == 1
    stage2 = torch.load(tmp_path / "stage2" / "checkpoints" / "last.pt", weights_only=False)["model"]
    towers = [k for k in stage1 if k.startswith(("pixels.", "flow."))]
    rest = [k for k in stage1 if k.startswith(("decoder.", "postnet.")) and stage1[k].is_floating_point()]
    assert towers and all(torch.equal(stage1[k], stage2[k]) for k in towers)
    assert any(not torch.equal(stage1[k], stage2[k]) for k in rest)


def _avtrain(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "avtrain.cli", *args], capture_output=True, text=True, timeout=600,
                          cwd=REPO)


@pytest.mark.slow
def test_synth_command_on_a_real_mpg_and_a_silent_copy(bridging_run, grid_root, tmp_path):
    from clipmaker import read_clip, write_clip

    _, run = bridging_run
    ckpt = run / "checkpoints" / "last.pt"
    mpg = grid_root / "s2" / "video" / "swwp2s.mpg"  # an original GRID file: another speaker, MPEG-1, 25 fps
    out = tmp_path / "speech.wav"
    proc = _avtrain("synth", "--checkpoint", str(ckpt), "--video", str(mpg), "--out", str(out), "--iters", "4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    wave, rate = sf.read(out)
    assert rate == 16000 and len(wave) == 75 * 640 and np.isfinite(wave).all()
    assert "stoi" in proc.stderr and "against the video's own audio" in proc.stderr

    frames, _, _ = read_clip(mpg)
    silent = write_clip(tmp_path / "silent.mp4", frames, 25)  # no audio stream at all
    out2 = tmp_path / "silent.wav"
    proc = _avtrain("synth", "--checkpoint", str(ckpt), "--video", str(silent), "--out", str(out2), "--iters", "4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "silent video" in proc.stderr
    assert len(sf.read(out2)[0]) == len(frames) * 640

    proc = _avtrain("synth", "--checkpoint", str(tmp_path / "nope.pt"), "--video", str(mpg), "--out", str(out2))
    assert proc.returncode == 2 and "no such checkpoint" in proc.stderr
