"""Scoring predicted spectrograms as speech: waveform synthesis, metrics and example files, one clip at a time.

The evaluation loop of a speech model calls :meth:`SpeechEvaluator.add` per test clip with the predicted spectrogram
and the clip's true waveform, then :meth:`SpeechEvaluator.summary`. Synthesis modes:

``mel``       Griffin-Lim on the predicted mel (bridging speech model; two-tower without post-net)
``hifigan``   HiFi-GAN's universal generator on the predicted mel (``avtrain.tasks.speech.hifigan``; bridging-grid
              mels, the ``vocoder`` extra)
``linear``    Griffin-Lim on the predicted linear spectrogram (two-tower Lin-synth)
``exemplar``  nearest training exemplars by mel (or mel+linear) -> their linear frames -> Griffin-Lim (Mel-synth)

With recognisers (``avtrain.tasks.speech.recognise``) and each clip's transcript, the word error rate is scored too.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from avbridge.spectra import SpectrogramParams
from avtrain.tasks.speech.metrics import SpeechMetrics
from avtrain.tasks.speech.plots import write_examples
from avtrain.tasks.speech.vocoder import ExemplarBank, linear_to_wave, mel_to_wave

MODES = ("mel", "hifigan", "linear", "exemplar")


class SpeechEvaluator:
    def __init__(self, params: SpectrogramParams, out_dir: str | Path | None = None, mode: str = "mel",
                 examples: int = 4, n_iter: int = 60, power: float = 1.0, bank: ExemplarBank | None = None,
                 hifigan=None, recognisers: dict | None = None):
        """``hifigan``: a loaded ``avtrain.tasks.speech.hifigan.HifiGan`` to share (mode ``hifigan`` loads one
        otherwise); ``recognisers``: WER metric name -> ``Recogniser`` (none: no WER)."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if mode == "exemplar" and bank is None:
            raise ValueError("mode 'exemplar' needs an ExemplarBank of training frames")
        if mode == "hifigan":
            from avtrain.tasks.speech.hifigan import HifiGan, check_params

            check_params(params)
            hifigan = hifigan or HifiGan()
        self.params, self.mode, self.examples = params, mode, examples
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.n_iter, self.power, self.bank, self.hifigan = n_iter, power, bank, hifigan
        self.metrics = SpeechMetrics(recognisers=dict(recognisers or {}))
        self.written: list[str] = []

    def synthesise(self, mel: torch.Tensor | np.ndarray | None, linear: torch.Tensor | np.ndarray | None
                   ) -> np.ndarray:
        if self.mode == "mel":
            return mel_to_wave(_as_tensor(mel, "mel"), self.params, self.n_iter, self.power)
        if self.mode == "hifigan":
            return self.hifigan(_as_tensor(mel, "mel"), self.params)
        if self.mode == "linear":
            return linear_to_wave(_as_tensor(linear, "linear"), self.params, self.n_iter, self.power)
        linear = None if self.bank.search == "mel" else _as_tensor(linear, "linear")
        return self.bank.synthesise(_as_tensor(mel, "mel"), linear, self.params, self.n_iter, self.power)

    def add(self, key: str, true_wave: np.ndarray, mel: torch.Tensor | np.ndarray | None = None,
            linear: torch.Tensor | np.ndarray | None = None, true_mel: np.ndarray | None = None,
            text: str | None = None) -> dict[str, float]:
        """Synthesise, score against ``true_wave`` (and the transcript ``text``, with recognisers) and, for the
        first ``examples`` clips, write the predicted wav (and the predicted-vs-true mel figure when ``true_mel`` is
        given) under ``out_dir/examples``."""
        wave = self.synthesise(mel, linear)
        scores = self.metrics.add(key, true_wave, wave, self.params.sample_rate, text=text)
        if self.out_dir is not None and len(self.written) < self.examples and mel is not None and true_mel is not None:
            write_examples(self.out_dir / "examples", key, _as_tensor(mel, "mel").numpy(), true_mel, wave,
                           self.params.sample_rate, true_wave)
            self.written.append(key)
        return scores

    def summary(self) -> dict:
        out = {"synthesis": self.mode, "clips": len(self.metrics.per_clip), "metrics": self.metrics.summary(),
               "examples": self.written}
        if self.mode != "hifigan":
            out["griffin_lim_iterations"] = self.n_iter
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "speech_metrics.json").write_text(json.dumps(out, indent=2))
            with (self.out_dir / "speech_per_clip.jsonl").open("w") as f:
                for key, scores in self.metrics.per_clip.items():
                    f.write(json.dumps({"key": key, **scores, **self.metrics.transcripts.get(key, {})}) + "\n")
        return out


def _as_tensor(x: torch.Tensor | np.ndarray | None, name: str) -> torch.Tensor:
    if x is None:
        raise ValueError(f"this synthesis mode needs the predicted {name} spectrogram")
    return torch.as_tensor(x).detach().float().cpu()
