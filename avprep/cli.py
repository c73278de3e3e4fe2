"""The avprep command line: one thin command per corpus, plus inspect and presets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Audio-visual speech corpora to WebDataset shards.")
console = Console(stderr=True)


def _fail(message: str) -> None:
    console.print(f"[red]error:[/] {message}")
    raise typer.Exit(2)


@app.command()
def grid(
    root: Path = typer.Option(..., help="GRID folder holding s1, s2, ... (official layouts or the avbridge sample)"),
    out: Path = typer.Option(..., help="output folder for shards, ledger, failure log and index"),
    speakers: Optional[str] = typer.Option(None, help="comma-separated, e.g. s1,s2,s4,s29 (default: all found)"),
    preset: str = typer.Option("bridging-grid", help="see `avprep presets`"),
    unit: str = typer.Option("sentence", help="sentence: one sample per clip; word: one per aligned word"),
    split_scheme: str = typer.Option("speaker-dependent", help="speaker-dependent | speaker-independent | none"),
    jobs: int = typer.Option(1, min=1, help="parallel processes"),
    mean_face: Optional[Path] = typer.Option(None, help="reuse a mean_face.npy from another run"),
    limit: Optional[int] = typer.Option(None, min=1, help="only the first N clips (sorted by key), for a quick look"),
    crf: Optional[int] = typer.Option(None, min=0, max=51, help="x264 CRF of the crops (preset: 18)"),
    feature_dtype: Optional[str] = typer.Option(None, help="float16 | uint8: spectrogram storage (preset: float16)"),
    wave: Optional[bool] = typer.Option(None, "--wave/--no-wave", help="store the waveform (preset: yes)"),
    landmarks: Optional[str] = typer.Option(None, help="subset | full | none: landmarks stored (preset: subset)"),
    shard_mb: int = typer.Option(100, min=1, help="close a shard after this many MiB"),
    shard_clips: int = typer.Option(250, min=1, help="close a shard after this many source clips"),
    progress: bool = typer.Option(True, help="show the progress bar"),
    retry_failed: bool = typer.Option(False, help="process clips an earlier run rejected again"),
) -> None:
    """GRID (Cooke et al. 2006) -> shards per split."""
    from avprep.corpora import grid as grid_corpus
    from avprep.prepare import prepare
    from pydantic import ValidationError

    from avprep.presets import get_preset, with_overrides

    try:
        chosen = with_overrides(get_preset(preset), video_crf=crf, feature_dtype=feature_dtype, store_wave=wave,
                                landmarks=landmarks)
        names = [s.strip() for s in speakers.split(",") if s.strip()] if speakers else None
        clips = grid_corpus.find_clips(root, names, split_scheme)
    except ValidationError as e:
        _fail("; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()))
    except (KeyError, ValueError, FileNotFoundError) as e:
        _fail(str(e.args[0] if e.args else e))
    if limit:
        clips = clips[:limit]
    vocab = tuple(grid_corpus.vocabulary()) if unit == "word" else ()
    try:
        report = prepare(clips, "grid", out, chosen, unit=unit, vocabulary=vocab, jobs=jobs, mean_face=mean_face,
                         shard_bytes=shard_mb * 2**20, shard_clips=shard_clips, console=console, progress=progress,
                         retry_failed=retry_failed)
    except ValueError as e:
        _fail(str(e))
    Console().print(report.table())


@app.command()
def inspect(
    shards: Path = typer.Argument(..., help="an output folder of avprep, or one .tar shard"),
    preview: Optional[Path] = typer.Option(None, help="write a contact sheet PNG of crops and mel-spectrograms"),
    preview_samples: int = typer.Option(6, min=1, help="samples in the contact sheet"),
) -> None:
    """Decode every sample, check audio/video lengths agree, count per split and field."""
    from avprep.inspect import check_shards, contact_sheet

    report = check_shards(shards)
    Console().print(report.table())
    if preview:
        contact_sheet(shards, preview, preview_samples)
        console.print(f"contact sheet: {preview}")
    if report.errors:
        raise typer.Exit(1)


@app.command()
def presets(as_json: bool = typer.Option(False, "--json", help="print the full parameters as JSON")) -> None:
    """List the named presets and their parameters."""
    from avprep.presets import PRESETS

    if as_json:
        print(json.dumps({n: {"hash": p.hash, **p.to_dict()} for n, p in PRESETS.items()}, indent=2))
        return
    table = Table(title="avprep presets")
    for col in ("name", "hash", "mouth", "face", "flow", "spectrogram", "registration"):
        table.add_column(col)
    for p in PRESETS.values():
        crop = lambda c: f"{c.height}x{c.width} {c.color}" if c else "-"  # noqa: E731
        mel = p.mel
        spec = (f"win {mel.win_length} hop {mel.hop_length} n_fft {mel.n_fft} {mel.n_mels} mels {mel.fmin:g}-{mel.fmax:g} Hz"
                f" {mel.normalisation}{' +linear' if p.linear else ''}") if mel else "-"
        table.add_row(p.name, p.hash, crop(p.mouth), crop(p.face), p.flow.method if p.flow else "-", spec, p.registration.mode)
    Console().print(table)
