"""`avtrain synth` on bad input: a clip with no face, no frames (empty, truncated, no video stream) or another frame
rate than the checkpoint's 25 fps must end with one line saying so and exit code 2, never a traceback. The
checkpoint is an untrained aligned CPU model written directly (what is tested is the input handling, not the
reconstruction), with the bridging-grid preset avprep would have recorded."""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]


def _write_checkpoint(out: Path, mean_face: np.ndarray | None = None) -> Path:
    from avprep.presets import get_preset
    from avtrain.config import load_recipe
    from avtrain.engine.checkpoint import save_atomic
    from avtrain.tasks import task_for

    recipe = load_recipe(REPO / "recipes" / "grid-s1-speech-aligned-cpu.yaml",
                         [f"output_dir={out}", f"data.shards={out / 'no-shards'}"])
    model = task_for(recipe).build_model()
    face = None if mean_face is None else np.asarray(mean_face).tolist()
    state = {"recipe": recipe.model_dump(mode="json"), "model": model.state_dict(),
             "preprocess": {"preset": get_preset("bridging-grid").model_dump(mode="json"), "mean_face": face}}
    return save_atomic(state, out / "untrained.pt")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """No mean face: every case below is refused before registration."""
    return _write_checkpoint(tmp_path_factory.mktemp("synth-ckpt"))


@pytest.fixture(scope="module")
def clips(grid_root, tmp_path_factory) -> dict[str, Path]:
    from clipmaker import read_clip, retime, truncate, write_clip

    out = tmp_path_factory.mktemp("synth-clips")
    src = grid_root / "s1" / "video" / "bbaf2n.mkv"
    frames, audio, rate = read_clip(src)
    (out / "empty.mp4").write_bytes(b"")
    return {
        "no face": write_clip(out / "gray.mp4", np.full_like(frames, 128), 25, audio, rate),
        "30 fps": write_clip(out / "fps30.mp4", retime(frames, 25, 30), 30, audio, rate),
        "29.97 fps": write_clip(out / "fps2997.mp4", retime(frames, 25, 30000 / 1001), Fraction(30000, 1001),
                                audio, rate),
        "empty": out / "empty.mp4",
        "truncated": truncate(src, out / "truncated.mkv", 0.02),
        "no video stream": write_clip(out / "audio-only.mp4", frames[:0], 25, audio, rate),
        "grid": src,
    }


def _synth(checkpoint: Path, video: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "avtrain.cli", "synth", "--checkpoint", str(checkpoint), "--video",
                           str(video), "--out", str(out), "--iters", "2", *args], capture_output=True, text=True,
                          timeout=600, cwd=REPO)


def _one_line_error(proc: subprocess.CompletedProcess, *phrases: str) -> None:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    for phrase in phrases:
        assert phrase in lines[0], lines[0]


@pytest.mark.parametrize("case, phrases", [
    ("30 fps", ("30 fps", "trained on 25 fps clips", "--any-fps")),
    ("29.97 fps", ("29.97 fps", "trained on 25 fps clips")),
    ("empty", ("empty file",)),
    ("truncated", ("too few frames",)),
    ("no video stream", ("no video stream",)),
])
def test_synth_refuses_bad_video_in_one_line(checkpoint, clips, tmp_path, case, phrases):
    out = tmp_path / "speech.wav"
    _one_line_error(_synth(checkpoint, clips[case], out), *phrases)
    assert not out.exists()


@pytest.mark.slow
def test_synth_refuses_a_clip_without_a_face_and_accepts_another_rate_when_asked(clips, tmp_path):
    from avprep.presets import get_preset
    from avprep.reference import estimate_mean_face
    from avprep.types import ClipSpec

    src = clips["grid"]
    spec = ClipSpec(key="s1_bbaf2n", corpus="grid", speaker="s1", utterance="bbaf2n", split="test", video=src)
    checkpoint = _write_checkpoint(tmp_path, estimate_mean_face([spec], get_preset("bridging-grid"), max_clips=1))
    _one_line_error(_synth(checkpoint, clips["no face"], tmp_path / "a.wav"), "no face")
    # --any-fps: avprep places the 30 fps frames on the 25 fps grid, as it does for training clips
    from avtrain.tasks.speech import hifigan

    vocoder, label = ("hifigan", "HiFi-GAN") if hifigan.available() else ("griffin-lim", "Griffin-Lim")
    out = tmp_path / "b.wav"
    proc = _synth(checkpoint, clips["30 fps"], out, "--any-fps", "--vocoder", vocoder)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"from 75 frames (mel, {label})" in proc.stderr
    wave, rate = sf.read(out)
    assert rate == 16000 and len(wave) == 75 * 640


def test_synth_refuses_a_bad_vocoder_choice_before_reading_the_video(checkpoint, clips, tmp_path):
    _one_line_error(_synth(checkpoint, clips["grid"], tmp_path / "a.wav", "--vocoder", "wavenet"),
                    "--vocoder must be one of griffin-lim, hifigan")
    _one_line_error(_synth(checkpoint, clips["grid"], tmp_path / "a.wav", "--synthesis", "linear"),
                    "needs the two-tower post-net")
