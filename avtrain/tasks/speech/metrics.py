"""Speech-reconstruction metrics: STOI, ESTOI (pystoi, 16 kHz) and PESQ, each mode labelled; with recognisers
(``avtrain.tasks.speech.recognise``) and the clip's transcript, the word error rate too.

Papers mix PESQ modes (wide-band P.862.2 at 16 kHz, narrow-band P.862 at 8 kHz; VCA-GAN reports narrow-band after
resampling to 8 kHz), so both are computed and every number carries its mode in its name. PESQ raises on silent or
very short signals; such a clip is counted under its error message and left out of that metric's mean, never
raised. pystoi and pesq are optional (the ``metrics`` extra); they are imported on first use.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from math import gcd
from typing import Any

import numpy as np

METRICS: dict[str, str] = {
    "stoi": "STOI (Taal et al. 2011), pystoi, 16 kHz",
    "estoi": "extended STOI (Jensen & Taal 2016), pystoi, 16 kHz",
    "pesq_wb_16k": "PESQ wide-band (ITU-T P.862.2), 16 kHz",
    "pesq_nb_8k": "PESQ narrow-band (ITU-T P.862), after resampling to 8 kHz",
}
STOI_RATE = 16000


def resample(wave: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Polyphase resampling (scipy.signal.resample_poly, its default Kaiser-windowed FIR)."""
    if rate == target:
        return np.asarray(wave, np.float64)
    from scipy.signal import resample_poly

    g = gcd(int(rate), int(target))
    return resample_poly(np.asarray(wave, np.float64), target // g, rate // g)


def _error(exc: BaseException) -> str:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def score_clip(reference: np.ndarray, estimate: np.ndarray, sample_rate: int = STOI_RATE
               ) -> tuple[dict[str, float], dict[str, str]]:
    """All four metrics of one clip: (scores, errors), each keyed by metric name; a metric is in exactly one.

    Both signals are cut to the shorter length (predicted and true audio may differ by a hop or so).
    """
    from pesq import pesq
    from pystoi import stoi

    ref = resample(np.asarray(reference, np.float64).reshape(-1), sample_rate, STOI_RATE)
    est = resample(np.asarray(estimate, np.float64).reshape(-1), sample_rate, STOI_RATE)
    n = min(len(ref), len(est))
    ref, est = ref[:n], est[:n]
    scores: dict[str, float] = {}
    errors: dict[str, str] = {}

    def attempt(name: str, fn) -> None:
        try:
            with warnings.catch_warnings():
                # pystoi warns (and returns 1e-5) when no frame is above its silence threshold: make that an error
                warnings.simplefilter("error", RuntimeWarning)
                value = float(fn())
            if not math.isfinite(value):
                raise ValueError(f"non-finite score {value}")
            scores[name] = value
        except Exception as exc:  # noqa: BLE001 - any scoring failure is a counted outcome, not a crash
            errors[name] = _error(exc)

    attempt("stoi", lambda: stoi(ref, est, STOI_RATE, extended=False))
    attempt("estoi", lambda: stoi(ref, est, STOI_RATE, extended=True))
    attempt("pesq_wb_16k", lambda: pesq(STOI_RATE, ref, est, "wb"))
    ref8, est8 = resample(ref, STOI_RATE, 8000), resample(est, STOI_RATE, 8000)
    attempt("pesq_nb_8k", lambda: pesq(8000, ref8, est8, "nb"))
    return scores, errors


@dataclass
class SpeechMetrics:
    """Accumulates per-clip scores; :meth:`summary` gives mean, count and failures per metric.

    ``recognisers`` (WER metric name -> ``Recogniser``) add a word error rate per clip given its transcript; its
    mean is word-weighted (all errors / all reference words), and the words heard are kept in ``transcripts``. A
    transcript outside the GRID grammar, or none, is a counted failure of that metric.
    """

    per_clip: dict[str, dict[str, float]] = field(default_factory=dict)
    failures: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    recognisers: dict[str, Any] = field(default_factory=dict)
    transcripts: dict[str, dict[str, str]] = field(default_factory=dict)  # key -> text and the words heard
    word_counts: dict[str, list[tuple[int, int]]] = field(default_factory=lambda: defaultdict(list))
    signal_metrics: bool = True  # False: the recognisers only (the true audio's WER), no STOI/PESQ in the summary

    def add(self, key: str, reference: np.ndarray | None, estimate: np.ndarray, sample_rate: int = STOI_RATE,
            text: str | None = None) -> dict[str, float]:
        """Scores ``estimate`` against ``reference`` (not read without ``signal_metrics``)."""
        scores, errors = score_clip(reference, estimate, sample_rate) if self.signal_metrics else ({}, {})
        if self.recognisers:
            self._recognise(key, estimate, sample_rate, text, scores, errors)
        self.per_clip[key] = scores
        for name, message in errors.items():
            self.failures[name][message] += 1
        return scores

    def _recognise(self, key: str, estimate: np.ndarray, sample_rate: int, text: str | None,
                   scores: dict[str, float], errors: dict[str, str]) -> None:
        from avtrain.tasks.speech.recognise import is_grid_sentence

        if not text or not is_grid_sentence(text):
            for name in self.recognisers:
                errors[name] = "no transcript" if not text else "transcript outside the GRID grammar"
            return
        heard = self.transcripts.setdefault(key, {"text": text})
        for name, recogniser in self.recognisers.items():
            wrong, words, hypothesis = recogniser.errors(estimate, text, sample_rate)
            scores[name] = wrong / words
            self.word_counts[name].append((wrong, words))
            heard[f"heard_{name}"] = " ".join(hypothesis)

    def summary(self) -> dict[str, dict]:
        from avtrain.tasks.speech.recognise import WER_METRICS

        out: dict[str, dict] = {}
        labels = {**(METRICS if self.signal_metrics else {}),
                  **{name: WER_METRICS.get(name, ("", name))[1] for name in self.recognisers}}
        for name, label in labels.items():
            values = [s[name] for s in self.per_clip.values() if name in s]
            failed = dict(self.failures.get(name, {}))
            if name in self.recognisers:  # word-weighted: every reference word counts once
                counts = self.word_counts.get(name, [])
                mean = sum(w for w, _ in counts) / sum(n for _, n in counts) if counts else None
            else:
                mean = float(np.mean(values)) if values else None
            out[name] = {
                "label": label,
                "mean": mean,
                "count": len(values),
                "failed": sum(failed.values()),
                "failures": failed,
            }
        return out
