"""Evaluation of a trained speech model on a split: predicted spectrograms -> waveforms (one folder per synthesis
mode) -> STOI, ESTOI, PESQ (wide-band 16 kHz and narrow-band 8 kHz), plus example wavs and mel figures.

Writes ``<run>/eval/<split>/<mode>/speech_metrics.json`` (+ ``speech_per_clip.jsonl``, ``examples/``) per mode and
``<run>/eval/<split>/speech_summary.json`` over all modes, and prints one table.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from avbridge.spectra import SpectrogramParams
from avtrain.config import Recipe
from avtrain.data import MEL_PER_FRAME, build_loader, denormalise_mel, split_size
from avtrain.data.bad_samples import SkipTally
from avtrain.engine.precision import select_device
from avtrain.tasks.speech.scoring import SpeechEvaluator
from avtrain.tasks.speech.vocoder import ExemplarBank
from avtrain.tasks.weights import load_weights


def synthesis_modes(recipe: Recipe, task) -> list[str]:
    """eval.synthesis, else the paper's for the task: the bridging model's mel through Griffin-Lim, the two-tower
    model's Lin-synth and Mel-synth."""
    modes = list(recipe.eval.synthesis or task.default_synthesis)
    for mode in modes:
        if mode in ("linear", "exemplar") and not task.predicts_linear:
            raise ValueError(f"eval.synthesis {mode!r} needs a predicted linear spectrogram: only the two-tower "
                             "model with its post-net has one")
    return modes


def exemplar_bank(recipe: Recipe, clips: int, task) -> ExemplarBank:
    """Mel-synth's exemplars: every spectrogram frame of the first ``clips`` training clips (shard order), searched
    by ``eval.exemplar_search``."""
    d = recipe.data
    pairs: list[tuple[np.ndarray, np.ndarray]] = []
    for batch in build_loader(recipe, d.train_split, train=False, fields=task.fields()):
        for i in range(len(batch["keys"])):
            n = MEL_PER_FRAME * int(batch["lengths"][i])
            mel = denormalise_mel(batch["mel"][i, :, :n].numpy(), d)
            pairs.append((mel, batch["linear"][i, :, :n].numpy()))
            if len(pairs) >= clips:
                return ExemplarBank.from_clips(pairs, search=recipe.eval.exemplar_search)
    if not pairs:
        raise FileNotFoundError(f"no training clips in {d.shards} for the exemplar bank")
    return ExemplarBank.from_clips(pairs, search=recipe.eval.exemplar_search)


@torch.no_grad()
def evaluate_speech(recipe: Recipe, task=None, *, split: str | None = None, checkpoint: str | None = None,
                    console: Console | None = None) -> dict:
    """Free-running prediction of every clip of ``split`` (``task.predict``), each synthesis mode, scores."""
    from avtrain.tasks import task_for

    task = task or task_for(recipe)
    console = console or Console()
    split = split or recipe.data.test_split
    modes = synthesis_modes(recipe, task)
    device = select_device(recipe.trainer.device)
    model, path = load_weights(recipe, task, checkpoint, device)
    e, d = recipe.eval, recipe.data
    bank = exemplar_bank(recipe, e.exemplar_clips, task) if "exemplar" in modes else None
    out_dir = Path(recipe.output_dir) / "eval" / split
    evaluators: dict[str, SpeechEvaluator] = {}
    total = split_size(d.shards, split)
    if e.max_clips:
        total = min(total or e.max_clips, e.max_clips)
    done = 0
    diagonal: list[float] = []
    progress = Progress(TextColumn(f"[bold]{split}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=console, disable=not recipe.trainer.progress)
    with progress:
        bar = progress.add_task("eval", total=total)
        skips = SkipTally()
        for batch in build_loader(recipe, split, train=False, scoring=True, fields=task.fields()):
            skips.add(batch, split)
            for i, pred in enumerate(task.predict(model, batch, device)):
                if e.max_clips and done >= e.max_clips:
                    break
                if pred.diagonal_attention is not None:
                    diagonal.append(pred.diagonal_attention)
                params = SpectrogramParams(**batch["spectrograms"][i])
                n = MEL_PER_FRAME * int(batch["lengths"][i])
                true_mel = denormalise_mel(batch["mel"][i, :, :n].numpy(), d)
                for mode in modes:
                    if mode not in evaluators:
                        evaluators[mode] = SpeechEvaluator(params, out_dir / mode, mode, examples=e.plot_clips,
                                                           n_iter=e.griffin_lim_iters, bank=bank)
                    evaluators[mode].add(pred.key, batch["waves"][i], mel=pred.mel, linear=pred.linear,
                                         true_mel=true_mel)
                done += 1
                progress.advance(bar)
            if e.max_clips and done >= e.max_clips:
                break
    if not evaluators:
        raise FileNotFoundError(f"no clips in split {split!r} of {d.shards}")
    summary = {"split": split, "checkpoint": str(path), "clips": done, "skipped": skips.summary(),
               "modes": {mode: ev.summary() for mode, ev in evaluators.items()}}
    if diagonal:  # has the decoder's attention learnt the frame-to-step alignment? (free-running, test clips)
        summary["attention_diagonal_mass"] = float(np.mean(diagonal))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "speech_summary.json").write_text(json.dumps(summary, indent=1))
    console.print(summary_table(summary))
    if "attention_diagonal_mass" in summary:
        console.print(f"decoder attention within one frame of the diagonal: {summary['attention_diagonal_mass']:.3f} "
                      f"of its weight (free-running; a learnt alignment is near 1)")
    console.print(f"written to {out_dir}")
    return summary


def summary_table(summary: dict) -> Table:
    table = Table(title=f"Speech from silent video: {summary['split']}, {summary['clips']} clips")
    table.add_column("synthesis")
    names = ("stoi", "estoi", "pesq_wb_16k", "pesq_nb_8k")
    for name in names:
        table.add_column(name, justify="right")
    table.add_column("not scored", justify="right")
    for mode, s in summary["modes"].items():
        m = s["metrics"]
        cells = [f"{m[k]['mean']:.3f}" if m[k]["mean"] is not None else "-" for k in names]
        failed = ", ".join(f"{k} {m[k]['failed']}" for k in names if m[k]["failed"]) or "0"
        table.add_row(mode, *cells, failed)
    return table
