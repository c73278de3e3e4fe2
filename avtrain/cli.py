"""avtrain command line: ``avtrain run RECIPE.yaml [--set k=v ...]``, ``avtrain eval RECIPE.yaml``,
``avtrain sweep-levels RECIPE.yaml [LEVELS ...]`` (MTLAM's Table 1) and
``avtrain synth --checkpoint CKPT --video clip.mpg --out speech.wav`` (speech models) and
``avtrain convert-checkpoint OLD.pt`` (checkpoints written before the weights-only format) and
``avtrain compare --a RUN ... --b RUN ...`` (two arms of evaluated runs, paired clip by clip).

Under torchrun (``torchrun --nproc_per_node 2 -m avtrain.cli run RECIPE.yaml``) every process runs the same command
and the engine joins the process group.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from avtrain.config import Recipe, RecipeError, load_recipe

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Train and evaluate memory-augmented lip reading (associative bridging, MTLAM) and speech "
                       "reconstruction from silent video (bridging speech model, two-tower) from YAML recipes.")
err = Console(stderr=True)

SET_HELP = "Override a recipe value, e.g. --set trainer.epochs=3 --set memory_conf.num_slots=0 (repeatable)."


def _recipe(path: Path, overrides: list[str]) -> Recipe:
    """A recipe file, or a run folder holding the config.yaml a run wrote."""
    if path.is_dir():
        path = path / "config.yaml"
    try:
        return load_recipe(path, overrides)
    except RecipeError as e:
        err.print(f"[red]error:[/red] {escape(str(e))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


@app.command()
def run(
    recipe: Path = typer.Argument(..., help="Recipe YAML (or a run folder with config.yaml)."),
    set_: list[str] | None = typer.Option(None, "--set", "-s", help=SET_HELP),
    resume: bool = typer.Option(True, help="Continue from <output_dir>/checkpoints/last.pt when it exists."),
    evaluate_after: bool = typer.Option(False, "--eval", help="Evaluate on the test split when training ends."),
):
    """Train (or resume) the model a recipe describes."""
    r = _recipe(recipe, set_ or [])
    from avbridge.sample import SampleError
    from avtrain.api import train
    from avtrain.engine.checkpoint import CheckpointError
    from avtrain.engine.runlock import RunInUse

    try:
        result = train(r, resume=resume, console=err)
    except (CheckpointError, SampleError, RunInUse, RecipeError) as e:
        err.print(f"[red]error:[/red] {escape(str(e))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    err.print(f"run {result.run_dir}: epoch {result.epoch}, step {result.step}, "
              f"best val {result.metric_name} {result.best_metric}")
    if evaluate_after and _is_main():
        _evaluate(r)


def _evaluate(r: Recipe, **kwargs) -> dict:
    """The recipe's task evaluates: word accuracy for lip reading, STOI/ESTOI/PESQ for speech models."""
    from avtrain.tasks import task_for

    return task_for(r).evaluate(console=err, **kwargs)


@app.command("eval")
def eval_(
    recipe: Path = typer.Argument(..., help="Recipe YAML or run folder (its output_dir holds the checkpoints)."),
    set_: list[str] | None = typer.Option(None, "--set", "-s", help=SET_HELP),
    split: str | None = typer.Option(None, help="Split to evaluate (default: data.test_split)."),
    checkpoint: str | None = typer.Option(None, help="best, last, or a checkpoint path (default: eval.checkpoint). "
                                                     "Any other is scored under eval/<split>-<name>/."),
    flip: bool | None = typer.Option(None, "--flip/--no-flip", help="Horizontal-flip test-time augmentation."),
):
    """Lip reading: top-1 accuracy (± flip TTA), most confused pairs, addressing-vector figure. Speech models:
    STOI, ESTOI, PESQ (wide-band and narrow-band) and WER per synthesis mode, beside the ceilings of the same clips
    (true audio, true mel through each vocoder), example wavs and mel figures."""
    r = _recipe(recipe, set_ or [])
    try:
        _evaluate(r, split=split, checkpoint=checkpoint, flip_tta=flip)
    except (FileNotFoundError, ValueError) as e:
        err.print(f"[red]error:[/red] {escape(str(e))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


@app.command("sweep-levels")
def sweep_levels_(
    recipe: Path = typer.Argument(..., help="An MTLAM recipe (model: mtlam)."),
    levels: list[str] | None = typer.Argument(
        None, help='Level sets, one argument each: "" (or -) = baseline, 2, 1,2 ... '
                   'Default: the rows of the paper\'s Table 1: "" 1 2 3 1,2 2,3 1,2,3.'),
    set_: list[str] | None = typer.Option(None, "--set", "-s", help=SET_HELP),
    out: Path | None = typer.Option(None, help="Table path without suffix (default: <output_dir>-levels)."),
    gather: bool = typer.Option(False, "--gather", help="Train nothing: put the rows that earlier sweep-levels "
                                                        "calls finished (their sweep.json) into one table."),
):
    """Train and evaluate one run per set of MTLAM memory levels; print and write the table (Table 1)."""
    from avtrain.engine.checkpoint import CheckpointError
    from avtrain.engine.runlock import RunInUse
    from avtrain.tasks.lipreading.mtlam_sweep import PAPER_LRW_TOP1, gather_levels, parse_levels, sweep_levels

    try:
        level_sets = [parse_levels(t) for t in levels] if levels else list(PAPER_LRW_TOP1)
        (gather_levels if gather else sweep_levels)(recipe, level_sets, set_ or [], table_path=out, console=err)
    except (RecipeError, RunInUse, CheckpointError) as e:
        err.print(f"[red]error:[/red] {escape(str(e))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


@app.command()
def synth(
    checkpoint: Path = typer.Option(..., help="A speech model's checkpoint (runs/<name>/checkpoints/best.pt)."),
    video: Path = typer.Option(..., help="A talking-face video (any container PyAV reads; audio not needed)."),
    out: Path = typer.Option(..., help="The wav to write."),
    synthesis: str | None = typer.Option(None, help="mel | linear (default: mel for the bridging model, "
                                                       "linear = Lin-synth for the two-tower model)."),
    vocoder: str | None = typer.Option(None, help="griffin-lim | hifigan, for a mel (default: as avtrain eval, "
                                                     "hifigan where installed and the mels fit it)."),
    iters: int | None = typer.Option(None, help="Griffin-Lim iterations (default: the recipe's eval value)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    any_fps: bool = typer.Option(False, "--any-fps", help="Accept a video at another frame rate than the "
                                                          "checkpoint's: its frames are dropped or repeated."),
):
    """Reconstruct speech from one video: avprep's per-clip pipeline, the model, a vocoder (HiFi-GAN or
    Griffin-Lim)."""
    from avtrain.tasks.speech.synth import SynthError, synthesise

    try:
        res = synthesise(checkpoint, video, out, mode=synthesis, n_iter=iters, device=device, vocoder=vocoder,
                         any_fps=any_fps)
    except (SynthError, RecipeError) as e:
        err.print(f"[red]error:[/red] {escape(str(e))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    from avtrain.tasks.speech.evaluate import SYNTHESIS_LABELS

    line = f"wrote {res.out}: {res.seconds:.2f} s from {res.frames} frames ({SYNTHESIS_LABELS[res.mode]})"
    if res.silent:
        line += " (silent video)"
    elif res.scores:
        line += " against the video's own audio: " + ", ".join(f"{k} {v:.3f}" for k, v in res.scores.items())
    err.print(line, highlight=False)


@app.command("convert-checkpoint")
def convert_checkpoint(
    checkpoint: Path = typer.Argument(..., help="A checkpoint written by an older avtrain."),
    out: Path | None = typer.Option(None, help="Where to write the converted checkpoint (default: in place)."),
):
    """Rewrite a checkpoint in the current format (tensors and plain values only). Reading it runs no code from
    the file: only older avtrain checkpoints (numpy RNG state) are accepted, anything else is refused."""
    from avtrain.engine.checkpoint import CheckpointError, convert

    try:
        path = convert(checkpoint, out)
    except CheckpointError as e:
        err.print(f"[red]error:[/red] {escape(str(e))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    err.print(f"wrote {path}", highlight=False)


@app.command("mel-stats")
def mel_stats(
    shards: Path = typer.Argument(..., help="A shard folder (index.json and <split>-NNNNNN.tar)."),
    split: str = typer.Option("train", help="The split to measure (the training split: no test clip is seen)."),
):
    """Print per-bin means and standard deviations of a split's stored log-mels as recipe lines (data.mel_mean,
    data.mel_std): standardising each bin gives every band the same weight in the loss."""
    from avtrain.data.mel_stats import mel_statistics, recipe_lines

    try:
        mean, std, frames = mel_statistics(shards, split)
    except (FileNotFoundError, KeyError) as e:
        err.print(f"[red]error:[/red] {escape(str(e))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    err.print(f"{shards} split {split}: {frames} mel frames, {len(mean)} bins", highlight=False)
    typer.echo(recipe_lines(mean, std))


@app.command("compare")
def compare_(
    a: list[Path] = typer.Option(..., "--a", help="A run folder of arm A (repeat for each seed)."),
    b: list[Path] = typer.Option(..., "--b", help="A run folder of arm B (repeat for each seed)."),
    metric: list[str] | None = typer.Option(None, "--metric", "-m",
                                            help="stoi, estoi, pesq_nb_8k, wer, correct, ... (default: stoi, estoi "
                                                 "and wer for speech, correct for lip reading)."),
    split: str = typer.Option("test", help="The evaluated split."),
    mode: str = typer.Option("mel", help="Speech: the synthesis mode whose scores to compare (mel, hifigan, lin)."),
    name_a: str = typer.Option("A", help="What to call arm A in the table."),
    name_b: str = typer.Option("B", help="What to call arm B in the table."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the figures here."),
):
    """Compare two arms of evaluated runs clip by clip: each arm's mean ± sd over its runs, and B - A per clip with
    a bootstrap 95 % interval and a paired permutation test (avtrain/compare.py)."""
    import json

    import numpy as np
    from rich.table import Table

    from avtrain.compare import compare_runs

    try:
        results = compare_runs(a, b, tuple(metric) if metric else None, split=split, mode=mode)
    except (FileNotFoundError, ValueError) as e:
        err.print(f"[red]error:[/red] {escape(str(e))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None

    def arm(values: list[float], sd: float) -> str:
        return f"{np.mean(values):.4f}" + ("" if np.isnan(sd) else f" ± {sd:.4f}")

    # Two narrow tables and the arms' names on lines of their own, so that nothing a user typed is folded at 80
    # columns.
    out = Console()
    for label, name, runs in (("A", name_a, a), ("B", name_b, b)):
        out.print(f"{label} = {name}: {', '.join(str(r) for r in runs)}", highlight=False, soft_wrap=True)
    means = Table(title="each run's mean over the clips; mean ± sd over an arm's runs")
    means.add_column("metric", no_wrap=True)
    means.add_column(f"A, runs: {len(a)}", no_wrap=True)
    means.add_column(f"B, runs: {len(b)}", no_wrap=True)
    paired = Table(title=f"B - A clip by clip ({results[0].clips} {split} clips, each arm averaged over its runs)")
    paired.add_column("metric", no_wrap=True)
    for col in ("B - A", "95 % interval", "p", "B better / worse"):
        paired.add_column(col, justify="right", no_wrap=True)
    for r in results:
        means.add_row(r.metric, arm(r.runs_a, r.sd_a), arm(r.runs_b, r.sd_b))
        paired.add_row(r.metric, f"{r.difference:+.4f}", f"[{r.interval[0]:+.4f}, {r.interval[1]:+.4f}]",
                       f"{r.p_value:.4f}", f"{r.b_better} / {r.b_worse}")
    out.print(means)
    out.print(paired)
    if json_out:
        json_out.write_text(json.dumps({"a": [str(p) for p in a], "b": [str(p) for p in b], "split": split,
                                        "mode": mode, "metrics": [r.to_dict() for r in results]}, indent=1))


@app.command()
def check(recipe: Path = typer.Argument(...), set_: list[str] | None = typer.Option(None, "--set", "-s",
                                                                                      help=SET_HELP)):
    """Validate a recipe and print it with every default filled in."""
    typer.echo(_recipe(recipe, set_ or []).to_yaml())


def _is_main() -> bool:
    import os

    return int(os.environ.get("RANK", "0")) == 0


if __name__ == "__main__":
    app()
