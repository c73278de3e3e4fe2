"""The avprep command line, a shell over the library: one command per corpus, plus inspect, index, presets and
download.

A corpus command declares only what is its own (GRID's --speakers and --unit, LRS3's --subsets, ...) and calls its
function in avprep.recipes. Every option the corpus commands share is declared once, from the fields of
avprep.options.PrepOptions (one help text, one default, one set of bounds), and the command builds one PrepOptions
from them. Help is click's plain layout: at 80 columns every option name stays whole.
"""

from __future__ import annotations

import inspect as signatures  # (the name inspect is the command's)
import json
import typing
from collections.abc import Callable
from pathlib import Path

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from avprep import recipes
from avprep.options import PrepOptions, cli_fields

# rich_markup_mode=None: click's help layout, which wraps the help text and never cuts an option's name (rich's
# panels cut --num-partitions to --num-partitio… at 80 columns, beside an empty column for --no-* names).
app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Audio-visual speech corpora to WebDataset shards.")
console = Console(stderr=True)


def _fail(message: str) -> None:
    console.print(f"[red]error:[/] {message}", soft_wrap=True)  # one line, however long
    raise typer.Exit(2)


# --- the options every corpus command shares, declared once ---------------------------------------------------------

_OUT = typer.Option(..., help="output folder for shards, ledger, failure log and index")
_TYPES = typing.get_type_hints(PrepOptions)
_SHARED = [f.name for f in cli_fields()]


def shared_option(name: str, default: object = None) -> typer.models.OptionInfo:
    """The CLI option of the PrepOptions field ``name`` (its help, bounds, flags; its default unless given)."""
    f = next(f for f in cli_fields() if f.name == name)
    meta = f.metadata
    return typer.Option(f.default if default is None else default, *meta["flags"], help=meta["help"],
                        min=meta["min"], max=meta["max"])


def _parameter(name: str, annotation: object, default: object) -> signatures.Parameter:
    return signatures.Parameter(name, signatures.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def corpus_command(name: str, root_help: str, without: tuple[str, ...] = ()) -> Callable:
    """Register ``fn(root, out, options, **own)`` as ``avprep NAME``: --root (help ``root_help``) and --out, fn's own
    options, then every shared one but those ``without`` (--preset defaulting to the corpus's preset). The command
    builds one PrepOptions, calls fn, prints the report it returns, and turns a refusal into one line, exit code 2."""

    def register(fn: Callable) -> Callable:
        hints = typing.get_type_hints(fn)
        own = [_parameter(p.name, hints[p.name], p.default) for p in signatures.signature(fn).parameters.values()
               if p.name not in ("root", "out", "options")]
        shared = [_parameter(n, str if n == "preset" else _TYPES[n],
                             shared_option(n, recipes.DEFAULT_PRESETS[name] if n == "preset" else None))
                  for n in _SHARED if n not in without]

        def command(root: Path, out: Path, **values: object) -> None:
            try:
                options = PrepOptions(**{k: values.pop(k) for k in _SHARED if k in values})
                report = fn(root, out, options, **values)
            except ValidationError as e:  # a storage override the preset refuses
                _fail("; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()))
            except (KeyError, ValueError, FileNotFoundError) as e:
                _fail(str(e.args[0] if e.args else e))
            Console().print(report.table())

        command.__signature__ = signatures.Signature([_parameter("root", Path, typer.Option(..., help=root_help)),
                                                      _parameter("out", Path, _OUT), *own, *shared])
        command.__doc__, command.__name__ = fn.__doc__, fn.__name__
        # The command list's line: "GRID (Cooke et al. 2006) -> shards" (click would cut the first sentence at "al.").
        app.command(name, short_help=fn.__doc__.split(" -> ")[0] + " -> shards")(command)
        return fn

    return register


# --- one command per corpus: only what is its own ------------------------------------------------------------------

@corpus_command("grid", "GRID folder holding s1, s2, ... (official layouts or the avbridge sample)")
def grid(
    root: Path, out: Path, options: PrepOptions,
    speakers: str | None = typer.Option(None, help="comma-separated, e.g. s1,s2,s4,s29 (default: all found)"),
    unit: str = typer.Option("sentence", help="sentence: one sample per clip; word: one per aligned word"),
    split_scheme: str = typer.Option("speaker-dependent", help="speaker-dependent | speaker-independent | none"),
    word_context: int = typer.Option(0, min=0, help="--unit word: video frames kept on each side of the word "
                                     "(the word's own frames are the JSON's word_span)"),
):
    """GRID (Cooke et al. 2006) -> shards per split."""
    return recipes.prepare_grid(root, out, speakers=speakers, unit=unit, split_scheme=split_scheme,
                                word_context=word_context, options=options)


@corpus_command("lrw", "LRW's lipread_mp4 folder (WORD/{train,val,test}/WORD_NNNNN.mp4 + .txt)")
def lrw(
    root: Path, out: Path, options: PrepOptions,
    words: str | None = typer.Option(None, help="comma-separated word folders (default: all 500)"),
    splits: str = typer.Option("train,val,test", help="comma-separated splits to prepare"),
):
    """LRW (Chung & Zisserman 2016) word clips -> shards per split, labelled with their word class. Presets:
    bridging-lrw (LRW's fixed box) or bridging-lrw-registered (landmarks)."""
    return recipes.prepare_lrw(root, out, words=words, splits=splits, options=options)


@corpus_command("lrw1000", "LRW1000_Public (images/, audio/, info/)", without=("mean_face", "landmarks"))
def lrw1000(
    root: Path, out: Path, options: PrepOptions,
    splits: str = typer.Option("train,val,test", help="comma-separated splits to prepare"),
    audio_lead: float = typer.Option(0.0, min=0.0, help="seconds the audio files start before the word"),
):
    """LRW-1000 (pre-cropped lip images + audio) -> shards per split, the video span matched to the audio."""
    return recipes.prepare_lrw1000(root, out, splits=splits, audio_lead=audio_lead, options=options)


@corpus_command("tcd-timit", "TCD-TIMIT folder holding volunteers/ and/or lipspeakers/")
def tcd_timit(
    root: Path, out: Path, options: PrepOptions,
    speakers: str = typer.Option("lipspeakers", help="lipspeakers | volunteers | all | comma-separated ids "
                                 "(e.g. Lipspkr1,01M)"),
    camera: str = typer.Option("straightcam", help="straightcam | 30degcam"),
    test_fraction: float = typer.Option(0.1, help="per speaker, the share of clips in the test split"),
):
    """TCD-TIMIT (Harte & Gillen 2015) -> shards, 29.97 fps kept by the two-tower preset, 90/10 split per speaker
    (drawn with --seed, which also seeds the write order)."""
    return recipes.prepare_tcd_timit(root, out, speakers=speakers, camera=camera, test_fraction=test_fraction,
                                     options=options)


_MAX_SECONDS = typer.Option(15.0, min=1.0, help="cut pretrain clips at word boundaries into segments of at most this "
                            "many seconds (AV-HuBERT's 15; auto-avsr uses 24)")


@corpus_command("lrs3", "LRS3 folder holding pretrain/, trainval/, test/ (ID/NNNNN.mp4 + .txt)")
def lrs3(
    root: Path, out: Path, options: PrepOptions,
    subsets: str | None = typer.Option(None, help="comma-separated: pretrain, trainval, test (default: all present)"),
    max_seconds: float = _MAX_SECONDS,
):
    """LRS3-TED (Afouras et al. 2018) -> shards per subset, text and word timings from the .txt, pretrain cut."""
    return recipes.prepare_lrs3(root, out, subsets=subsets, max_seconds=max_seconds, options=options)


@corpus_command("lrs2", "LRS2 folder holding mvlrs_v1/{main,pretrain} and train/val/test/pretrain.txt")
def lrs2(
    root: Path, out: Path, options: PrepOptions,
    splits: str | None = typer.Option(None, help="comma-separated: pretrain, train, val, test (default: every list "
                                      "present)"),
    max_seconds: float = _MAX_SECONDS,
):
    """LRS2-BBC (Afouras et al. 2018) -> shards per split list, text and word timings from the .txt, pretrain cut."""
    return recipes.prepare_lrs2(root, out, splits=splits, max_seconds=max_seconds, options=options)


@corpus_command("folder", "a folder of talking-face videos (searched recursively)")
def folder(
    root: Path, out: Path, options: PrepOptions,
    manifest: Path | None = typer.Option(None, help="CSV with columns path[,text,speaker,split,audio]"),
    split: str = typer.Option("train", help="split of clips the manifest gives none for"),
):
    """Any folder of talking-face videos -> shards; transcripts from NAME.txt sidecars or a CSV manifest."""
    return recipes.prepare_folder(root, out, manifest=manifest, split=split, options=options)


# --- the other commands ---------------------------------------------------------------------------------------------

@app.command()
def inspect(
    shards: Path = typer.Argument(..., help="an output folder of avprep, or one .tar shard"),
    preview: Path | None = typer.Option(None, help="write a contact sheet PNG of crops and mel-spectrograms"),
    preview_samples: int = typer.Option(6, min=1, help="samples in the contact sheet"),
    verify: bool = typer.Option(False, "--verify", help="also check every shard's SHA-256 against its ledger and "
                                "report .tar files no ledger names"),
) -> None:
    """Decode every sample, check audio/video lengths agree, count per split and field."""
    from avprep.inspect import check_shards, contact_sheet, verify_shards

    verified = None
    if verify:
        verified = verify_shards(shards)
        Console().print(verified.table())
    report = check_shards(shards)
    Console().print(report.table())
    if preview:
        contact_sheet(shards, preview, preview_samples)
        console.print(f"contact sheet: {preview}")
    if report.errors or (verified is not None and not verified.ok):
        raise typer.Exit(1)


@app.command("verify")
def verify_command(
    shards: Path = typer.Argument(..., help="an avprep output folder"),
) -> None:
    """Check every shard's SHA-256 and sample count against its ledger (no decoding: disk speed), and report
    .tar files no ledger names."""
    from avprep.inspect import verify_shards

    verified = verify_shards(shards)
    Console().print(verified.table())
    if not verified.ok:
        raise typer.Exit(1)


@app.command()
def index(
    out: Path = typer.Argument(..., help="an avprep output folder, possibly written by several partitions"),
) -> None:
    """Rebuild index.json from every partition's ledger and failure log (run once all partitions are done)."""
    from avprep.shards import write_index

    if not out.is_dir():
        _fail(f"{out} is not a folder")
    summary = write_index(out)
    table = Table(title=f"{out / 'index.json'}", show_header=False)
    for split, info in sorted(summary["splits"].items()):
        table.add_row(split, f"{info['samples']} samples, {info['clips']} clips, {len(info['shards'])} shards, "
                             f"{info['seconds'] / 3600:.3f} h")
    table.add_row("rejected", str(summary["rejected"]))
    Console().print(table)


@app.command()
def presets(as_json: bool = typer.Option(False, "--json", help="print the full parameters as JSON")) -> None:
    """List the named presets and their parameters."""
    from avprep.presets import PRESETS

    if as_json:
        print(json.dumps({n: {"hash": p.hash, **p.to_dict()} for n, p in PRESETS.items()}, indent=2))
        return
    # Two columns: the name (and hash) a user types after --preset, never cut, and the parameters, wrapped. Eight
    # columns cut the names to "bridgi..." at 80 columns.
    table = Table(title="avprep presets", show_lines=True)
    table.add_column("name / hash", no_wrap=True, min_width=max(len(n) for n in PRESETS))
    table.add_column("parameters", overflow="fold")
    for p in PRESETS.values():
        crop = lambda c: f"{c.height}x{c.width} {c.color}" if c else "-"  # noqa: E731
        mel = p.mel
        spec = (f"win {mel.win_length} hop {mel.hop_length} n_fft {mel.n_fft} {mel.n_mels} mels "
                f"{mel.fmin:g}-{mel.fmax:g} Hz {mel.normalisation}{' +linear' if p.linear else ''}") if mel else "-"
        reg = p.registration.mode + (f" rows {p.registration.box[0]}-{p.registration.box[1]} cols "
                                     f"{p.registration.box[2]}-{p.registration.box[3]}" if p.registration.box else "")
        lines = [f"{p.fps:g} fps, {p.sample_rate} Hz", f"mouth {crop(p.mouth)}, face {crop(p.face)}",
                 f"flow {p.flow.method if p.flow else '-'}", f"spectrogram {spec}", f"registration {reg}"]
        table.add_row(f"{p.name}\n{p.hash}", "\n".join(lines))
    Console().print(table)


download_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                           help="Download a corpus from its official archive.")
app.add_typer(download_app, name="download")


@download_app.command("grid")
def download_grid(
    out: Path = typer.Option(..., help="folder to unpack into (then: avprep grid --root OUT)"),
    speakers: str = typer.Option(..., help="comma-separated, e.g. s1,s2,s4,s29"),
    base_url: str | None = typer.Option(None, help="where sN/video/sN.mpg_vcd.zip and sN/align/sN.tar are "
                                        "served (default: the corpus's site)"),
    checksums: Path | None = typer.Option(None, help="sha256sum-format file (default: SHA256SUMS on the server "
                                          "if there is one, else sizes are checked)"),
    alignments: bool = typer.Option(True, help="also fetch the word alignments"),
    retries: int = typer.Option(3, min=0, help="resume attempts after a dropped connection"),
    progress: bool = shared_option("progress"),
) -> None:
    """GRID videos (and alignments) per speaker: resumable, checksummed, unpacked into the layout `avprep grid`
    reads."""
    from avprep import download as dl

    try:
        archives = dl.grid_archives(recipes.names(speakers) or [], alignments)
        sums = dl.read_checksums(checksums.read_text()) if checksums else None
        folders = dl.download(archives, out, base_url or dl.GRID_BASE_URL, sums, retries, progress, console)
    except (ValueError, OSError, dl.DownloadError) as e:
        _fail(str(e))
    console.print(f"unpacked {len(folders)} archive(s) into {out}; next: avprep grid --root {out} --out SHARDS")
