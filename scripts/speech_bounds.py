"""Where a speech model's scores sit: the same metrics on a split for two references that need no model.

- ceiling: Griffin-Lim on the clip's *true* spectrogram (what a perfect prediction reaches with this vocoder);
- floor: Griffin-Lim on the training split's mean frame, repeated over the clip (a prediction that ignores the
  video but has the right average spectrum).

    python scripts/speech_bounds.py recipes/grid-s1-speech-bridging-cpu.yaml [--mode mel|linear] [--split test]

Writes ``<output_dir>-bounds.json`` beside the run folder and prints one table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from avbridge.spectra import SpectrogramParams
from avtrain.config import load_recipe
from avtrain.data import MEL_PER_FRAME, build_loader, denormalise_mel
from avtrain.tasks.speech.scoring import SpeechEvaluator


def mean_frames(recipe, clips: int) -> tuple[np.ndarray, np.ndarray | None]:
    d = recipe.data
    mels, lins = [], []
    for batch in build_loader(recipe, d.train_split, train=False):
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recipe")
    ap.add_argument("--mode", choices=["mel", "linear"], default="mel")
    ap.add_argument("--split", default=None)
    ap.add_argument("--train-clips", type=int, default=200)
    args = ap.parse_args()
    recipe = load_recipe(args.recipe)
    d, e = recipe.data, recipe.eval
    split = args.split or d.test_split
    mean_mel, mean_lin = mean_frames(recipe, args.train_clips)
    evaluators: dict[str, SpeechEvaluator] = {}
    for batch in build_loader(recipe, split, train=False, scoring=True):
        for i, key in enumerate(batch["keys"]):
            params = SpectrogramParams(**batch["spectrograms"][i])
            n = MEL_PER_FRAME * int(batch["lengths"][i])
            true_mel = denormalise_mel(batch["mel"][i, :, :n].numpy(), d)
            true_lin = batch["linear"][i, :, :n].numpy() if "linear" in batch else None
            floor_lin = np.repeat(mean_lin, n, 1) if mean_lin is not None else None
            for name, mel, lin in (("ceiling", true_mel, true_lin), ("floor", np.repeat(mean_mel, n, 1), floor_lin)):
                if name not in evaluators:
                    evaluators[name] = SpeechEvaluator(params, None, args.mode, n_iter=e.griffin_lim_iters)
                evaluators[name].add(key, batch["waves"][i], mel=mel, linear=lin)
    out = {name: ev.summary() for name, ev in evaluators.items()}
    path = Path(f"{recipe.output_dir}-bounds.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"recipe": args.recipe, "split": split, "mode": args.mode, **out}, indent=1))
    table = Table(title=f"{args.recipe}: {split}, synthesis {args.mode}, Griffin-Lim {e.griffin_lim_iters} iterations")
    names = ("stoi", "estoi", "pesq_wb_16k", "pesq_nb_8k")
    for col in ("reference", *names):
        table.add_column(col, justify="left" if col == "reference" else "right")
    for name, s in out.items():
        m = s["metrics"]
        table.add_row(f"{name} ({s['clips']} clips)",
                      *[f"{m[k]['mean']:.3f}" if m[k]["mean"] is not None else "-" for k in names])
    Console().print(table)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
