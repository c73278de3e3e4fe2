"""STFT, mel and linear spectrograms in numpy, shared by avprep (stored features) and avtrain (recomputed features).

Frames are aligned to video: with ``hop`` samples per spectrogram frame and ``samples_per_frame`` per video frame,
a clip of T video frames gives exactly ``T * samples_per_frame / hop`` spectrogram frames (4 per frame at 16 kHz,
25 fps, hop 160). The signal is reflect-padded by n_fft // 2 on both sides (centred frames) and the one extra
trailing frame a centred STFT yields is dropped, so frame k is centred on sample k * hop.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Literal

import numpy as np

Normalisation = Literal["log", "log-minmax", "tacotron"]


@dataclass(frozen=True)
class SpectrogramParams:
    sample_rate: int = 16000
    n_fft: int = 800
    win_length: int = 800
    hop_length: int = 160
    n_mels: int = 80
    fmin: float = 0.0
    fmax: float = 8000.0
    # "log": ln(max(S, 1e-5)); "log-minmax": the same mapped from [ln 1e-5, log_max] onto [-1, 1], clipped;
    # "tacotron": 20 log10(max(S, 1e-5)) - ref_db, mapped from [min_db, 0] onto [0, 1], clipped (Keith Ito's
    # Tacotron audio code, which the two-tower paper uses: "peak-normalised to [0, 1]").
    normalisation: Normalisation = "log"
    log_max: float = 2.0
    ref_db: float = 20.0
    min_db: float = -100.0
    preemphasis: float = 0.0  # 0.97 in the VCA-GAN and Tacotron recipes; 0 = off
    highpass_hz: float = 0.0  # 55 Hz in VCA-GAN; 0 = off

    def to_dict(self) -> dict:
        return asdict(self)

    def value_range(self) -> tuple[float, float]:
        """Bounds of the normalised values (what 8-bit storage quantises over)."""
        if self.normalisation == "log":
            return float(np.log(1e-5)), self.log_max
        return (-1.0, 1.0) if self.normalisation == "log-minmax" else (0.0, 1.0)

    def validate(self) -> None:
        if self.win_length > self.n_fft:
            raise ValueError(f"win_length {self.win_length} > n_fft {self.n_fft}")
        if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            raise ValueError(f"need 0 <= fmin < fmax <= sample_rate/2, got fmin={self.fmin} fmax={self.fmax}")


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    # Slaney's auditory toolbox scale (librosa's default, htk=False): linear below 1 kHz, log above.
    f = np.asarray(f, np.float64)
    mel = f / (200.0 / 3)
    log_region = f >= 1000.0
    mel[log_region] = 15.0 + np.log(f[log_region] / 1000.0) / (np.log(6.4) / 27.0)
    return mel


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, np.float64)
    f = m * (200.0 / 3)
    log_region = m >= 15.0
    f[log_region] = 1000.0 * np.exp((np.log(6.4) / 27.0) * (m[log_region] - 15.0))
    return f


@lru_cache(maxsize=16)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Slaney-normalised triangular filters, (n_mels, n_fft // 2 + 1); equal to librosa.filters.mel defaults."""
    fft_freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    mel_points = _mel_to_hz(np.linspace(_hz_to_mel(np.array([fmin]))[0], _hz_to_mel(np.array([fmax]))[0], n_mels + 2))
    fdiff = np.diff(mel_points)
    ramps = mel_points[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_points[2 : n_mels + 2] - mel_points[:n_mels]))[:, None]
    return weights.astype(np.float32)


@lru_cache(maxsize=16)
def _window(win_length: int, n_fft: int) -> np.ndarray:
    window = np.hanning(win_length + 1)[:-1]  # periodic Hann, as torch.hann_window / scipy 'hann' (fftbins)
    pad = (n_fft - win_length) // 2
    return np.pad(window, (pad, n_fft - win_length - pad)).astype(np.float32)


def _condition(wave: np.ndarray, p: SpectrogramParams) -> np.ndarray:
    wave = np.asarray(wave, np.float32)
    if p.highpass_hz > 0:
        from scipy.signal import butter, sosfilt

        sos = butter(4, p.highpass_hz, btype="highpass", fs=p.sample_rate, output="sos")
        wave = sosfilt(sos, wave).astype(np.float32)
    if p.preemphasis > 0:
        wave = np.append(wave[:1], wave[1:] - p.preemphasis * wave[:-1]).astype(np.float32)
    return wave


def magnitude(wave: np.ndarray, p: SpectrogramParams, num_frames: int | None = None) -> np.ndarray:
    """|STFT| as (n_fft // 2 + 1, frames); ``num_frames`` trims to exactly that many frames."""
    wave = _condition(wave, p)
    pad = p.n_fft // 2
    padded = np.pad(wave, (pad, pad), mode="reflect" if len(wave) > pad else "constant")
    count = 1 + (len(padded) - p.n_fft) // p.hop_length
    idx = np.arange(p.n_fft)[None, :] + p.hop_length * np.arange(count)[:, None]
    frames = padded[idx] * _window(p.win_length, p.n_fft)[None, :]
    spec = np.abs(np.fft.rfft(frames, axis=1)).T.astype(np.float32)
    if num_frames is not None:
        if spec.shape[1] < num_frames:
            raise ValueError(f"signal gives {spec.shape[1]} frames, {num_frames} asked")
        spec = spec[:, :num_frames]
    return spec


def normalise(spec: np.ndarray, p: SpectrogramParams) -> np.ndarray:
    floor = 1e-5
    if p.normalisation == "log":
        return np.log(np.maximum(spec, floor))
    if p.normalisation == "log-minmax":
        lo = np.log(floor)
        return np.clip((np.log(np.maximum(spec, floor)) - lo) / (p.log_max - lo) * 2 - 1, -1, 1)
    if p.normalisation == "tacotron":
        db = 20 * np.log10(np.maximum(spec, floor)) - p.ref_db
        return np.clip((db - p.min_db) / -p.min_db, 0, 1)
    raise ValueError(f"unknown normalisation {p.normalisation!r}")


def mel_spectrogram(wave: np.ndarray, p: SpectrogramParams, num_frames: int | None = None) -> np.ndarray:
    """Normalised mel spectrogram (n_mels, frames), float32."""
    mag = magnitude(wave, p, num_frames)
    fb = mel_filterbank(p.sample_rate, p.n_fft, p.n_mels, p.fmin, p.fmax)
    return normalise(fb @ mag, p).astype(np.float32)


def linear_spectrogram(wave: np.ndarray, p: SpectrogramParams, num_frames: int | None = None) -> np.ndarray:
    """Normalised linear-magnitude spectrogram (n_fft // 2 + 1, frames), float32."""
    return normalise(magnitude(wave, p, num_frames), p).astype(np.float32)
