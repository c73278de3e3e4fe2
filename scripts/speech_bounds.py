"""Where a speech model's scores sit: the same metrics on a split for references that need no model.

- ceilings (``avtrain.tasks.speech.ceilings``, exactly what ``avtrain eval`` prints beside a result, from the same
  cache): the true audio through the recogniser (WER); the clip's *true* mel through Griffin-Lim and through HiFi-GAN
  (when installed); with ``--mode linear`` the true linear spectrogram through Griffin-Lim;
- floors: the training split's mean frame, repeated over the clip (a prediction that ignores the video but has the
  right average spectrum), through Griffin-Lim (``--mode``) and HiFi-GAN.

    python scripts/speech_bounds.py recipes/grid-s1-speech-bridging-cpu.yaml [--mode mel|linear] [--split test]

Writes ``<output_dir>-bounds.json`` beside the run folder and prints one table (``wer``: the GRID-dictionary
recogniser; ``wer_cmudict``, the bundled dictionary's, is in the JSON and printed too).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from avtrain.config import load_recipe
from avtrain.data import MEL_PER_FRAME, build_loader, denormalise_mel
from avtrain.data.fields import Fields
from avtrain.tasks.speech import hifigan as hg
from avtrain.tasks.speech.ceilings import ceilings, hifigan_fits, scored_clips
from avtrain.tasks.speech.recognise import recognisers
from avtrain.tasks.speech.scoring import SpeechEvaluator

NAMES = ("stoi", "estoi", "pesq_wb_16k", "pesq_nb_8k", "wer", "wer_cmudict")


def mean_frames(recipe, clips: int, linear: bool) -> tuple[np.ndarray, np.ndarray | None]:
    d = recipe.data
    mels, lins = [], []
    for batch in build_loader(recipe, d.train_split, train=False, fields=Fields(linear=linear)):
        for i in range(len(batch["keys"])):
            n = MEL_PER_FRAME * int(batch["lengths"][i])
            mels.append(denormalise_mel(batch["mel"][i, :, :n].numpy(), d))
            if "linear" in batch:
                lins.append(batch["linear"][i, :, :n].numpy())
        if len(mels) >= clips:
            break
    mel = np.concatenate(mels, 1).mean(1, keepdims=True)
    lin = np.concatenate(lins, 1).mean(1, keepdims=True) if lins else None
    return mel, lin


def floors(recipe, split: str, mode: str, train_clips: int, asr: dict, vocoder) -> dict[str, dict]:
    """The training mean frame through Griffin-Lim (``mode``) and, for mels, HiFi-GAN."""
    e = recipe.eval
    linear = mode == "linear"
    mean_mel, mean_lin = mean_frames(recipe, train_clips, linear)
    evaluators: dict[str, SpeechEvaluator] = {}
    for clip in scored_clips(recipe, split, linear):
        mel = np.repeat(mean_mel, clip.mel_frames, 1)
        lin = np.repeat(mean_lin, clip.mel_frames, 1) if mean_lin is not None else None
        if not evaluators:
            evaluators[f"floor_{mode}_griffin_lim"] = SpeechEvaluator(clip.params, None, mode,
                                                                      n_iter=e.griffin_lim_iters, recognisers=asr)
            if vocoder is not None and not linear and hifigan_fits(clip.params):
                evaluators["floor_mel_hifigan"] = SpeechEvaluator(clip.params, None, "hifigan", hifigan=vocoder,
                                                                  recognisers=asr)
        for ev in evaluators.values():
            ev.add(clip.key, clip.wave, mel=mel, linear=lin, text=clip.text)
    labels = {"floor_mel_griffin_lim": "floor: training mean mel, Griffin-Lim",
              "floor_linear_griffin_lim": "floor: training mean linear, Griffin-Lim",
              "floor_mel_hifigan": "floor: training mean mel, HiFi-GAN"}
    return {name: {"label": labels[name], "clips": len(ev.metrics.per_clip), "metrics": ev.metrics.summary()}
            for name, ev in evaluators.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recipe")
    ap.add_argument("--mode", choices=["mel", "linear"], default="mel")
    ap.add_argument("--split", default=None)
    ap.add_argument("--train-clips", type=int, default=200)
    ap.add_argument("--set", action="append", default=[], help="recipe override, as avtrain's --set")
    args = ap.parse_args()
    recipe = load_recipe(args.recipe, args.set)
    split = args.split or recipe.data.test_split
    asr = recognisers()
    vocoder = hg.HifiGan() if hg.available() else None
    t0 = time.time()
    bounds = ceilings(recipe, split, args.mode == "linear", asr, vocoder)
    seconds = {"ceilings": round(time.time() - t0, 1)}
    t0 = time.time()
    rows = {**bounds["rows"], **floors(recipe, split, args.mode, args.train_clips, asr, vocoder)}
    seconds["floors"] = round(time.time() - t0, 1)
    path = Path(f"{recipe.output_dir}-bounds.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"recipe": args.recipe, "split": split, "mode": args.mode, "seconds": seconds,
                                "ceilings_cache": bounds["cache"], "rows": rows}, indent=1))
    table = Table(title=f"{args.recipe}: {split}, Griffin-Lim {recipe.eval.griffin_lim_iters} iterations")
    for col in ("reference", "clips", *NAMES):
        table.add_column(col, justify="left" if col == "reference" else "right")
    for row in rows.values():
        m = row["metrics"]
        table.add_row(row["label"], str(row["clips"]),
                      *[f"{m[k]['mean']:.3f}" if k in m and m[k]["mean"] is not None else "-" for k in NAMES])
    Console().print(table)
    cached = " (ceilings from the cache)" if bounds.get("cached") else ""
    print(f"written to {path}{cached}; seconds: {seconds}")


if __name__ == "__main__":
    main()
