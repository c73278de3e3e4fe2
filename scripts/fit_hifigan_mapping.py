"""Fit the level offsets that map our log mels (bridging-grid: 16 kHz, n_fft 800, hop 160) onto HiFi-GAN's input
(22.05 kHz, n_fft 1024, hop 256), on true training audio, and optionally score the candidate mappings.

For each training clip: the true waveform -> 22.05 kHz (resample_poly 441/320) -> HiFi-GAN's own log mel (its
framing: reflect padding of (n_fft - hop) / 2, uncentred frames, so frame j is centred on sample 256 j + 128);
the clip's stored mel.npy, interpolated at those frame centres (avtrain.tasks.speech.hifigan.resample_frames).
The offset of a bin is the mean difference (HiFi-GAN's - ours) over the frames where neither is at the 1e-5 floor;
the scalar offset is the same mean over all bins' frames.

    python scripts/fit_hifigan_mapping.py out/grid-s1-sentence --clips 200 [--compare val --compare-clips 49]

Prints the constants for avtrain/tasks/speech/hifigan.py (OFFSETS, SCALAR_OFFSET); ``--compare SPLIT`` scores the
true mels of SPLIT through HiFi-GAN with no offset, the scalar and the per-bin offsets, and HiFi-GAN's own mel of
the true audio (what a perfect mapping would reach): STOI, ESTOI, PESQ wb/nb, WER (GRID grammar).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from avbridge.sample import decode_sample
from avbridge.shardlist import shard_names
from avbridge.spectra import SpectrogramParams, mel_filterbank
from avtrain.tasks.speech.hifigan import HIFIGAN, HifiGan, check_params, resample_frames
from avtrain.tasks.speech.metrics import resample

FLOOR = math.log(1e-5)


def clips(shards: Path, split: str, limit: int):
    """(key, 16 kHz waveform, stored log mel, params, transcript) of the first ``limit`` clips of a split."""
    import webdataset as wds

    urls = [str(shards / name) for name in shard_names(shards, split)]
    done = 0
    for raw in wds.WebDataset(urls, shardshuffle=False, empty_check=False):
        s = decode_sample(raw, fields=("mel.npy", "wav.flac", "json"))
        params = SpectrogramParams(**s["json"]["spectrogram"])
        yield raw["__key__"], s["wav.flac"], s["mel.npy"], params, s["json"].get("text", "")
        done += 1
        if done >= limit:
            return


def hifigan_mel(wave22: np.ndarray) -> np.ndarray:
    """HiFi-GAN's training features of a 22.05 kHz waveform: (80, frames), ln(max(mel |STFT|, 1e-5))."""
    p = HIFIGAN
    x = torch.from_numpy(np.asarray(wave22, np.float32))[None, None]
    pad = (p.n_fft - p.hop_length) // 2
    x = torch.nn.functional.pad(x, (pad, pad), mode="reflect")[0, 0]
    spec = torch.stft(x, p.n_fft, p.hop_length, p.win_length, torch.hann_window(p.win_length), center=False,
                      return_complex=True).abs()
    fb = torch.from_numpy(mel_filterbank(p.sample_rate, p.n_fft, p.n_mels, p.fmin, p.fmax))
    return torch.log((fb @ spec).clamp_min(1e-5)).numpy()


def pair(wave: np.ndarray, mel: np.ndarray, params: SpectrogramParams) -> tuple[np.ndarray, np.ndarray]:
    """(HiFi-GAN's mel of the true audio, ours interpolated at its frame centres), the same number of frames."""
    target = hifigan_mel(resample(wave, params.sample_rate, HIFIGAN.sample_rate))
    ours = resample_frames(mel, params, target.shape[1])
    return target, ours


def fit(shards: Path, split: str, limit: int) -> tuple[np.ndarray, float, int]:
    total = np.zeros(80)
    count = np.zeros(80)
    n = 0
    for _, wave, mel, params, _ in clips(shards, split, limit):
        check_params(params)
        target, ours = pair(wave, mel, params)
        live = (target > FLOOR + 1e-3) & (ours > FLOOR + 1e-3)
        total += np.where(live, target - ours, 0.0).sum(1)
        count += live.sum(1)
        n += 1
    return total / np.maximum(count, 1), float(total.sum() / count.sum()), n


def compare(shards: Path, split: str, limit: int, offsets: np.ndarray, scalar: float) -> dict[str, dict]:
    from avtrain.tasks.speech.metrics import SpeechMetrics
    from avtrain.tasks.speech.recognise import recognisers

    asr = recognisers()
    variants = {"none": 0.0, "scalar": scalar, "per-bin": offsets, "HiFi-GAN's own mel (upper bound)": None}
    vocoder = HifiGan(offsets=0.0)
    metrics = {name: SpeechMetrics(recognisers=asr) for name in variants}
    for key, wave, mel, params, text in clips(shards, split, limit):
        for name, offset in variants.items():
            if offset is None:
                target = hifigan_mel(resample(wave, params.sample_rate, HIFIGAN.sample_rate))
                with torch.no_grad():
                    w22 = vocoder.generator(torch.from_numpy(target)[None])[0, 0].numpy()
                est = resample(w22, HIFIGAN.sample_rate, params.sample_rate)[: len(wave)]
            else:
                vocoder.offsets = offset
                est = vocoder(mel, params)
            metrics[name].add(key, wave, est, params.sample_rate, text=text)
    return {name: m.summary() for name, m in metrics.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("shards", type=Path)
    ap.add_argument("--split", default="train")
    ap.add_argument("--clips", type=int, default=200)
    ap.add_argument("--compare", default=None, help="score the mappings on this split's true mels")
    ap.add_argument("--compare-clips", type=int, default=50)
    ap.add_argument("--json", type=Path, default=None, help="write the fit (and comparison) here")
    args = ap.parse_args()
    t0 = time.time()
    offsets, scalar, n = fit(args.shards, args.split, args.clips)
    print(f"fitted on {n} {args.split} clips of {args.shards} in {time.time() - t0:.0f} s")
    print("OFFSETS: tuple[float, ...] = (")
    for i in range(0, 80, 10):
        print("    " + ", ".join(f"{v:.3f}" for v in offsets[i : i + 10]) + ",")
    print(")")
    print(f"SCALAR_OFFSET: float = {scalar:.3f}")
    out = {"shards": str(args.shards), "split": args.split, "clips": n, "offsets": offsets.round(4).tolist(),
           "scalar_offset": round(scalar, 4)}
    if args.compare:
        t0 = time.time()
        scores = compare(args.shards, args.compare, args.compare_clips, offsets, scalar)
        out["compare"] = {"split": args.compare, "seconds": round(time.time() - t0), **scores}
        names = ("stoi", "estoi", "pesq_wb_16k", "pesq_nb_8k", "wer", "wer_cmudict")
        table = Table(title=f"true {args.compare} mels through HiFi-GAN, by level mapping")
        for col in ("mapping", *names):
            table.add_column(col, justify="left" if col == "mapping" else "right")
        for name, s in scores.items():
            table.add_row(name, *[f"{s[k]['mean']:.3f}" if s.get(k, {}).get("mean") is not None else "-"
                                  for k in names])
        Console().print(table)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
