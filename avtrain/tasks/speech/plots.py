"""Listening and looking material for speech reconstruction: predicted wavs and predicted-vs-true mel figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_wav(path: str | Path, wave: np.ndarray, sample_rate: int) -> Path:
    """16-bit PCM wav; peaks above full scale are scaled down rather than clipped (Griffin-Lim can overshoot)."""
    import soundfile as sf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wave = np.asarray(wave, np.float32).reshape(-1)
    peak = float(np.abs(wave).max()) if wave.size else 0.0
    if peak > 1.0:
        wave = wave / peak
    sf.write(str(path), wave, sample_rate, subtype="PCM_16")
    return path


def plot_mel_pair(predicted: np.ndarray, true: np.ndarray, path: str | Path, title: str = "",
                  frames_per_second: float = 100.0) -> Path:
    """Predicted and true (n_mels, L) spectrograms stacked on one colour scale, plus their absolute difference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    predicted, true = np.asarray(predicted, np.float32), np.asarray(true, np.float32)
    n = min(predicted.shape[1], true.shape[1])
    predicted, true = predicted[:, :n], true[:, :n]
    lo, hi = float(min(true.min(), predicted.min())), float(max(true.max(), predicted.max()))
    extent = (0, n / frames_per_second, 0, true.shape[0])
    fig, axes = plt.subplots(3, 1, figsize=(10, 7), sharex=True, layout="constrained")
    for ax, data, name in ((axes[0], true, "true"), (axes[1], predicted, "predicted")):
        im = ax.imshow(data, origin="lower", aspect="auto", vmin=lo, vmax=hi, extent=extent, cmap="magma")
        ax.set_ylabel(f"{name}\nmel bin")
    fig.colorbar(im, ax=axes[:2], shrink=0.8)
    diff = axes[2].imshow(np.abs(predicted - true), origin="lower", aspect="auto", extent=extent, cmap="viridis")
    axes[2].set_ylabel("|difference|\nmel bin")
    axes[2].set_xlabel("seconds")
    fig.colorbar(diff, ax=axes[2], shrink=0.8)
    mae = float(np.abs(predicted - true).mean())
    fig.suptitle(f"{title}  (mean |diff| {mae:.3f})".strip())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_examples(out_dir: str | Path, key: str, predicted_mel: np.ndarray, true_mel: np.ndarray,
                   predicted_wave: np.ndarray, sample_rate: int, true_wave: np.ndarray | None = None
                   ) -> dict[str, Path]:
    """``{key}_pred.wav``, ``{key}_true.wav`` (when given) and ``{key}_mel.png`` under ``out_dir``."""
    out_dir = Path(out_dir)
    files = {"pred_wav": write_wav(out_dir / f"{key}_pred.wav", predicted_wave, sample_rate),
             "mel_png": plot_mel_pair(predicted_mel, true_mel, out_dir / f"{key}_mel.png", key)}
    if true_wave is not None:
        files["true_wav"] = write_wav(out_dir / f"{key}_true.wav", true_wave, sample_rate)
    return files
