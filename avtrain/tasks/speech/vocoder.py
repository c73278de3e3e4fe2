"""Waveforms from predicted spectrograms: Griffin-Lim in plain torch, and example-based synthesis (Mel-synth).

Everything here inverts :mod:`avbridge.spectra` with the clip's own :class:`SpectrogramParams`:

- normalisation: "log" -> exp, "log-minmax" -> the [-1, 1] map undone then exp, "tacotron" -> dB back to amplitude
  (values clipped at the floor stay at the floor: clipping is not invertible);
- mel -> linear magnitude: least squares through the pseudo-inverse of the same Slaney filterbank, negatives
  clamped to zero (no NNLS: it is ~100x slower and buys little once Griffin-Lim re-estimates the phase);
- STFT: the same periodic Hann window, n_fft / win / hop, centred frames; the clip keeps exactly ``frames * hop``
  samples, as the stored wav does;
- pre-emphasis: undone by the matching one-pole IIR filter. The optional 55 Hz high-pass is not undone (it removed
  the content below 55 Hz, which Griffin-Lim cannot bring back and STOI/PESQ do not score).

Griffin-Lim is the fast variant (Perraudin et al. 2013, momentum 0.99, as librosa and torchaudio default to) with
60 iterations by default, VCA-GAN's setting for GRID.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from avbridge.spectra import SpectrogramParams, mel_filterbank

FLOOR = 1e-5  # avbridge.spectra.normalise clamps magnitudes here before the log


def denormalise(spec: torch.Tensor, p: SpectrogramParams) -> torch.Tensor:
    """Inverse of ``avbridge.spectra.normalise``: normalised values -> magnitudes (same shape)."""
    spec = spec.float()
    if p.normalisation == "log":
        return torch.exp(spec)
    if p.normalisation == "log-minmax":
        lo = math.log(FLOOR)
        return torch.exp((spec.clamp(-1, 1) + 1) / 2 * (p.log_max - lo) + lo)
    if p.normalisation == "tacotron":
        db = spec.clamp(0, 1) * -p.min_db + p.min_db + p.ref_db
        return torch.pow(10.0, db / 20)
    raise ValueError(f"unknown normalisation {p.normalisation!r}")


def mel_to_magnitude(mel_mag: torch.Tensor, p: SpectrogramParams) -> torch.Tensor:
    """(..., n_mels, L) mel magnitudes -> (..., n_fft // 2 + 1, L) linear magnitudes by least squares."""
    fb = torch.from_numpy(mel_filterbank(p.sample_rate, p.n_fft, p.n_mels, p.fmin, p.fmax)).double()
    inverse = torch.linalg.pinv(fb).float().to(mel_mag.device)
    return (inverse @ mel_mag.float()).clamp_min(0.0)


def _window(p: SpectrogramParams, device: torch.device) -> torch.Tensor:
    # torch.stft zero-pads a shorter window to n_fft centred, exactly as avbridge.spectra._window does
    return torch.hann_window(p.win_length, periodic=True, dtype=torch.float32, device=device)


def stft(wave: torch.Tensor, p: SpectrogramParams, num_frames: int) -> torch.Tensor:
    """Complex STFT (..., bins, num_frames) with avbridge.spectra's framing (reflect-padded, centred)."""
    spec = torch.stft(wave, p.n_fft, p.hop_length, p.win_length, _window(p, wave.device), center=True,
                      pad_mode="reflect", return_complex=True)
    return spec[..., :num_frames]


def istft(spec: torch.Tensor, p: SpectrogramParams) -> torch.Tensor:
    """Inverse of :func:`stft`: (..., bins, L) -> (..., L * hop) samples."""
    length = spec.shape[-1] * p.hop_length
    return torch.istft(spec, p.n_fft, p.hop_length, p.win_length, _window(p, spec.device), center=True,
                       length=length)


def griffin_lim(magnitude: torch.Tensor, p: SpectrogramParams, n_iter: int = 60, momentum: float = 0.99,
                seed: int = 0) -> torch.Tensor:
    """Fast Griffin-Lim: (..., bins, L) magnitudes -> (..., L * hop) samples (still pre-emphasised, if any)."""
    mag = magnitude.float()
    gen = torch.Generator(device="cpu").manual_seed(seed)
    angles = torch.rand(mag.shape, generator=gen).to(mag.device) * 2 * math.pi
    spec = torch.polar(mag, angles)
    previous = torch.zeros_like(spec)
    for _ in range(n_iter):
        wave = istft(spec, p)
        rebuilt = stft(wave, p, mag.shape[-1])
        accelerated = rebuilt - (momentum / (1 + momentum)) * previous
        previous = rebuilt
        spec = mag * accelerated / accelerated.abs().clamp_min(1e-8)
    return istft(spec, p)


def deemphasis(wave: np.ndarray, coefficient: float) -> np.ndarray:
    """Inverse of avbridge.spectra's pre-emphasis y[n] = x[n] - a x[n-1] (y[0] = x[0])."""
    if coefficient <= 0:
        return wave
    from scipy.signal import lfilter

    return lfilter([1.0], [1.0, -coefficient], wave, axis=-1).astype(np.float32)


def _finish(wave: torch.Tensor, p: SpectrogramParams) -> np.ndarray:
    return deemphasis(wave.detach().cpu().numpy().astype(np.float32), p.preemphasis)


def linear_to_wave(linear: torch.Tensor | np.ndarray, p: SpectrogramParams, n_iter: int = 60,
                   power: float = 1.0, seed: int = 0) -> np.ndarray:
    """Normalised linear spectrogram (..., n_fft // 2 + 1, L) -> float32 waveform (..., L * hop).

    ``power`` > 1 sharpens the magnitudes before phase reconstruction (Tacotron's audio code uses 1.5).
    """
    mag = denormalise(torch.as_tensor(linear), p) ** power
    return _finish(griffin_lim(mag, p, n_iter, seed=seed), p)


def mel_to_wave(mel: torch.Tensor | np.ndarray, p: SpectrogramParams, n_iter: int = 60, power: float = 1.0,
                seed: int = 0) -> np.ndarray:
    """Normalised mel spectrogram (..., n_mels, L) -> float32 waveform (..., L * hop)."""
    mag = mel_to_magnitude(denormalise(torch.as_tensor(mel), p), p) ** power
    return _finish(griffin_lim(mag, p, n_iter, seed=seed), p)


EXEMPLAR_SEARCHES = ("mel", "mel+linear")


class ExemplarBank:
    """Example-based synthesis (the two-tower paper's Mel-synth, Sec. 4.3): every predicted frame is replaced by the
    linear frame of its nearest training exemplar by L2 distance, then Griffin-Lim.

    ``search`` names the features the distance is measured on: ``"mel"`` (the paper's Mel-synth: the predicted mel
    frame against the exemplars' mel frames) or ``"mel+linear"`` (the concatenated (mel, linear) features; the paper
    tried both and found the mel search better "in most cases"). ``mel`` (N, n_mels) and ``linear`` (N, bins) are
    training spectrogram frames (normalised as the model's targets); in the ``mel+linear`` search ``mel_weight``
    scales the mel part of the feature.
    """

    def __init__(self, mel: torch.Tensor | np.ndarray, linear: torch.Tensor | np.ndarray, search: str = "mel",
                 mel_weight: float = 1.0, chunk: int = 4096):
        if search not in EXEMPLAR_SEARCHES:
            raise ValueError(f"exemplar search must be one of {', '.join(EXEMPLAR_SEARCHES)}, got {search!r}")
        mel, linear = torch.as_tensor(mel).float(), torch.as_tensor(linear).float()
        if mel.shape[0] != linear.shape[0]:
            raise ValueError(f"{mel.shape[0]} mel exemplars but {linear.shape[0]} linear ones")
        self.search, self.mel_weight, self.chunk = search, float(mel_weight), chunk
        self.linear = linear
        self.features = self._features(mel, linear)
        self.sq_norms = (self.features ** 2).sum(1)

    def _features(self, mel: torch.Tensor, linear: torch.Tensor | None) -> torch.Tensor:
        """(L, n_mels) / (L, bins) frames -> (L, D) search features."""
        if self.search == "mel":
            return mel
        if linear is None:
            raise ValueError("the mel+linear exemplar search needs the predicted linear spectrogram")
        return torch.cat([mel * self.mel_weight, linear], 1)

    @classmethod
    def from_clips(cls, clips: list[tuple[np.ndarray, np.ndarray]], **kwargs) -> ExemplarBank:
        """From (mel (n_mels, L), linear (bins, L)) pairs, one per training clip."""
        mel = np.concatenate([m.T for m, _ in clips], 0)
        linear = np.concatenate([lin.T for _, lin in clips], 0)
        return cls(mel, linear, **kwargs)

    def nearest(self, mel: torch.Tensor | np.ndarray, linear: torch.Tensor | np.ndarray | None = None
                ) -> torch.Tensor:
        """Indices (L,) of the nearest exemplar for each frame of a predicted (n_mels, L) mel (and (bins, L) linear
        spectrogram, which the mel search does not read)."""
        query = self._features(torch.as_tensor(mel).float().T,
                               None if linear is None else torch.as_tensor(linear).float().T)
        best = []
        for start in range(0, query.shape[0], self.chunk):
            q = query[start : start + self.chunk]
            # ||q - x||^2 = ||q||^2 - 2 q.x + ||x||^2; ||q||^2 is constant per row, so it does not move the argmin
            dist = self.sq_norms[None, :] - 2 * q @ self.features.T
            best.append(dist.argmin(1))
        return torch.cat(best)

    def linear_frames(self, mel: torch.Tensor | np.ndarray, linear: torch.Tensor | np.ndarray | None = None
                      ) -> torch.Tensor:
        """The exemplars' linear frames, (bins, L), ready for :func:`linear_to_wave`."""
        return self.linear[self.nearest(mel, linear)].T

    def synthesise(self, mel: torch.Tensor | np.ndarray, linear: torch.Tensor | np.ndarray | None,
                   p: SpectrogramParams, n_iter: int = 60, power: float = 1.0) -> np.ndarray:
        return linear_to_wave(self.linear_frames(mel, linear), p, n_iter, power)
