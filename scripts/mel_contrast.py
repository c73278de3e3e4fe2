"""Does sharpening a speech model's predicted log-mels at test time help? (a global-variance-style postfilter)

L1 regression over-smooths: the predicted log-mel varies less around its mean than speech does. This script scales
each clip's predicted log-mel about its own per-bin time mean, ``centre + alpha * (mel - centre)``, for a few alphas,
vocodes each through HiFi-GAN and scores STOI / ESTOI / PESQ / WER against the true audio. Run it on the validation
split (choosing alpha on test clips would be fitting to them); results are in docs/results.md.

    python scripts/mel_contrast.py runs/S60 --split val --alphas 1.0,1.15,1.3,1.5
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from avbridge.spectra import SpectrogramParams
from avtrain.api import load_recipe, task_for
from avtrain.config.recipe import RecipeError
from avtrain.data import build_loader
from avtrain.engine.checkpoint import CheckpointError
from avtrain.tasks.speech.hifigan import HifiGan
from avtrain.tasks.speech.recognise import recognisers
from avtrain.tasks.speech.scoring import SpeechEvaluator
from avtrain.tasks.weights import load_weights


def sharpen(mel: np.ndarray, alpha: float) -> np.ndarray:
    """mel (n_mels, frames), log units -> the same with its deviations from each bin's time mean scaled by alpha."""
    centre = mel.mean(axis=1, keepdims=True)
    return centre + alpha * (mel - centre)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="a trained speech run folder (its config.yaml and checkpoints/best.pt)")
    ap.add_argument("--split", default="val")
    ap.add_argument("--alphas", default="1.0,1.15,1.3,1.5")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    alphas = [float(a) for a in args.alphas.split(",")]
    try:
        recipe = load_recipe(f"{args.run}/config.yaml", ["data.num_workers=0"])
        task = task_for(recipe)
        if not hasattr(task, "predict"):
            raise ValueError(f"{args.run} trains {type(task).__name__}, not a speech model")
        model, _ = load_weights(recipe, task, "best", torch.device("cpu"))
    except (RecipeError, CheckpointError, FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    vocoder, asr = HifiGan("cpu"), recognisers()
    scores: dict[float, SpeechEvaluator] = {}  # alpha -> avtrain eval's scorer, made with the first clip's params
    for batch in build_loader(recipe, args.split, train=False, scoring=True, fields=task.fields()):
        for i, pred in enumerate(task.predict(model, batch, torch.device("cpu"))):
            params = SpectrogramParams(**batch["spectrograms"][i])
            for a in alphas:
                if a not in scores:
                    scores[a] = SpeechEvaluator(params, mode="hifigan", hifigan=vocoder, recognisers=asr)
                scores[a].add(pred.key, batch["waves"][i], mel=sharpen(pred.mel, a), text=batch["texts"][i])
    table = {str(a): {k: v["mean"] for k, v in scores[a].summary()["metrics"].items()} for a in alphas}
    print(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
