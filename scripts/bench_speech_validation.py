"""What a speech recipe's per-epoch validation costs, in CPU seconds of this process (not wall time: the machine may
be shared), for the two free-running measures checkpoint selection could follow, beside a training epoch:

- ``teacher_forced``: the training loss on the validation windows (``data.max_frames`` cuts), the old rule;
- ``free_running_l1``: ``Trainer.validate()`` as it now runs: whole validation clips, the training loss terms plus
  the free-running error (Tacotron decoding without teacher forcing; the two-tower sliding post-net);
- ``griffin_lim_estoi``: per clip, free-running prediction + Griffin-Lim (``eval.griffin_lim_iters``) + ESTOI of
  the model's first synthesis mode (Lin-synth for the two-tower model), times ``--estoi-clips`` clips (and the
  share of that which is Griffin-Lim + ESTOI alone);
- ``train_epoch``: ``--steps`` optimisation steps on training batches, scaled to the split's batches per epoch.

The model is untrained (the costs do not depend on the weights: every decoder runs a fixed number of steps).

    python scripts/bench_speech_validation.py recipes/grid-s1-speech-two-tower-cpu.yaml \\
        --threads 1 --json out/bench-val-two-tower.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from pystoi import stoi

from avbridge.spectra import SpectrogramParams
from avtrain.api import make_trainer
from avtrain.config import load_recipe
from avtrain.data import build_loader, split_size
from avtrain.tasks.speech.scoring import SpeechEvaluator


def cpu(fn):
    start = time.process_time()
    out = fn()
    return time.process_time() - start, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("recipe")
    ap.add_argument("--set", action="append", default=[], dest="overrides")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--estoi-clips", type=int, default=8)
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    recipe = load_recipe(args.recipe, [*args.overrides, "trainer.progress=false", f"trainer.threads={args.threads}",
                                       "data.num_workers=0", "output_dir=/tmp/bench-speech-validation"])
    trainer = make_trainer(recipe)
    task, d = trainer.task, recipe.data
    val_clips = split_size(d.shards, d.valid_split)

    def teacher_forced():
        model = trainer.model.eval()
        with torch.no_grad():
            for batch in build_loader(recipe, d.valid_split, train=False, fields=task.fields()):
                model(batch)

    tf_s, _ = cpu(teacher_forced)
    fr_s, val = cpu(trainer.validate)

    mode = (recipe.eval.synthesis or task.default_synthesis)[0]
    if mode == "exemplar":
        mode = "linear"
    done, synth_s = [], [0.0]

    def estoi():
        model = trainer.model.eval()
        for batch in build_loader(recipe, d.valid_split, train=False, scoring=True, fields=task.fields()):
            for i, pred in enumerate(task.predict(model, batch, trainer.device)):
                start = time.process_time()
                params = SpectrogramParams(**batch["spectrograms"][i])
                wave = SpeechEvaluator(params, None, mode, n_iter=recipe.eval.griffin_lim_iters).synthesise(
                    pred.mel, pred.linear)
                ref = batch["waves"][i][: len(wave)]
                done.append(float(stoi(ref, wave[: len(ref)], params.sample_rate, extended=True)))
                synth_s[0] += time.process_time() - start
                if len(done) >= args.estoi_clips:
                    return

    gl_s, _ = cpu(estoi)

    trainer.model.train()
    batches = iter(trainer.epoch_batches(0))
    first = next(batches)
    trainer.train_step(first)  # warm-up step, not timed

    def steps():
        for _ in range(args.steps):
            trainer.train_step(next(batches))

    st_s, _ = cpu(steps)
    per_epoch = -(-split_size(d.shards, d.train_split) // d.batch_size)
    out = {
        "recipe": args.recipe, "threads": args.threads, "val_clips": val_clips,
        "cpu_s": {"teacher_forced": round(tf_s, 1), "free_running_l1": round(fr_s, 1),
                  f"griffin_lim_estoi_{len(done)}_clips": round(gl_s, 1),
                  "griffin_lim_estoi_per_clip": round(gl_s / max(len(done), 1), 2),
                  "of_which_griffin_lim_and_estoi_per_clip": round(synth_s[0] / max(len(done), 1), 2),
                  "train_epoch": round(st_s / args.steps * per_epoch, 1)},
        "train_batches_per_epoch": per_epoch, "estoi_mode": mode,
        "val": {k: round(v, 4) for k, v in val.items()}, "estoi_mean": float(np.mean(done)) if done else None,
    }
    print(json.dumps(out, indent=1))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
