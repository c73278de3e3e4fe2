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
# Shared by every corpus command (defined before the first one); docs/benchmarks.md "Crop codecs" measures them.
_CODEC = typer.Option(None, help="mp4 | jpg | npy: crop storage (preset: mp4); jpg decodes ~2.5x faster than mp4 "
                      "for ~4.5x the bytes, npy is raw")


def _fail(message: str) -> None:
    console.print(f"[red]error:[/] {message}", soft_wrap=True)  # one line, however long
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
    num_partitions: int = typer.Option(1, min=1, help="the corpus is split into this many partitions (machines)"),
    partition: int = typer.Option(0, min=0, help="the partition this run writes, 0 .. num-partitions - 1"),
    backend: str = typer.Option("local", help="local (worker processes) | dask | ray (--jobs clips in flight)"),
    address: Optional[str] = typer.Option(None, help="scheduler of a running dask/ray cluster (default: local)"),
    seed: int = typer.Option(0, help="seed of the shuffled order clips are written in (shards mix clips)"),
    clip_timeout: float = typer.Option(600.0, min=0, help="seconds one clip may take before its worker is "
                                       "killed and the clip rejected as 'timeout' (0: no limit)"),
    max_worker_mem: Optional[float] = typer.Option(None, min=0, help="GiB a worker may use before its clip "
                                                   "is rejected as 'out of memory' (default: 80% of RAM / jobs)"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="print each rejection as it happens"),
    crop_codec: Optional[str] = _CODEC,
) -> None:
    """GRID (Cooke et al. 2006) -> shards per split."""
    from avprep.corpora import grid as grid_corpus

    names = [s.strip() for s in speakers.split(",") if s.strip()] if speakers else None
    _prepare(lambda: grid_corpus.find_clips(root, names, split_scheme), "grid", out, preset,
             grid_corpus.vocabulary if unit == "word" else None, jobs, mean_face, limit, crf, feature_dtype, wave,
             landmarks, shard_mb, shard_clips, progress, retry_failed, num_partitions, partition, unit=unit,
             backend=backend, address=address, selection={"split_scheme": split_scheme}, seed=seed,
             clip_timeout=clip_timeout, max_worker_mem=max_worker_mem, verbose=verbose, crop_codec=crop_codec)


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
def index(out: Path = typer.Argument(..., help="an avprep output folder, possibly written by several partitions")) -> None:
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
    table = Table(title="avprep presets")
    for col in ("name", "hash", "fps / Hz", "mouth", "face", "flow", "spectrogram", "registration"):
        table.add_column(col)
    for p in PRESETS.values():
        crop = lambda c: f"{c.height}x{c.width} {c.color}" if c else "-"  # noqa: E731
        mel = p.mel
        spec = (f"win {mel.win_length} hop {mel.hop_length} n_fft {mel.n_fft} {mel.n_mels} mels {mel.fmin:g}-{mel.fmax:g} Hz"
                f" {mel.normalisation}{' +linear' if p.linear else ''}") if mel else "-"
        reg = p.registration.mode + (f" rows {p.registration.box[0]}-{p.registration.box[1]} cols "
                                     f"{p.registration.box[2]}-{p.registration.box[3]}" if p.registration.box else "")
        table.add_row(p.name, p.hash, f"{p.fps:g} / {p.sample_rate}", crop(p.mouth), crop(p.face),
                      p.flow.method if p.flow else "-", spec, reg)
    Console().print(table)


def _prepare(find, corpus: str, out: Path, preset: str, vocabulary, jobs: int, mean_face: Optional[Path],
             limit: Optional[int], crf: Optional[int], feature_dtype: Optional[str], wave: Optional[bool],
             landmarks: Optional[str], shard_mb: int, shard_clips: int, progress: bool, retry_failed: bool,
             num_partitions: int = 1, partition: int = 0, unit: str = "sentence", backend: str = "local",
             address: Optional[str] = None, selection: Optional[dict] = None, seed: int = 0,
             clip_timeout: float = 600.0, max_worker_mem: Optional[float] = None, verbose: bool = False,
             crop_codec: Optional[str] = None) -> None:
    """What every corpus command does once it knows how to find its clips: validate, discover, prepare, report.

    ``selection``: the command's options that choose clips or splits (checked when a run resumes); the speakers
    found are added to it."""
    from pydantic import ValidationError

    from avprep.prepare import prepare
    from avprep.presets import get_preset, with_overrides
    from avprep.shards import Partition

    try:
        part = Partition(partition, num_partitions)
        chosen = with_overrides(get_preset(preset), video_crf=crf, feature_dtype=feature_dtype, store_wave=wave,
                                landmarks=landmarks, crop_codec=crop_codec)
        clips = find()
        vocab = tuple(vocabulary()) if vocabulary else ()
    except ValidationError as e:
        _fail("; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()))
    except (KeyError, ValueError, FileNotFoundError) as e:
        _fail(str(e.args[0] if e.args else e))
    selection = {**(selection or {}), "speakers": sorted({c.speaker for c in clips})}
    if limit:
        clips = clips[:limit]
    try:
        report = prepare(clips, corpus, out, chosen, unit=unit, vocabulary=vocab, jobs=jobs, mean_face=mean_face,
                         shard_bytes=shard_mb * 2**20, shard_clips=shard_clips, console=console, progress=progress,
                         retry_failed=retry_failed, partition=part, backend=backend, address=address,
                         selection=selection, limit=limit, seed=seed, clip_timeout=clip_timeout or None,
                         max_worker_rss=None if max_worker_mem is None else int(max_worker_mem * 2**30),
                         verbose=verbose)
    except ValueError as e:
        _fail(str(e))
    Console().print(report.table())


# Options every corpus command shares (typer reads them from the signature, so each command lists them).
_OUT = typer.Option(..., help="output folder for shards, ledger, failure log and index")
_JOBS = typer.Option(1, min=1, help="parallel processes")
_MEAN_FACE = typer.Option(None, help="reuse a mean_face.npy from another run (mean-face presets)")
_LIMIT = typer.Option(None, min=1, help="only the first N clips (sorted by key), for a quick look")
_CRF = typer.Option(None, min=0, max=51, help="x264 CRF of the crops (preset: 18)")
_DTYPE = typer.Option(None, help="float16 | uint8: spectrogram storage (preset: float16)")
_WAVE = typer.Option(None, "--wave/--no-wave", help="store the waveform (preset: yes)")
_LANDMARKS = typer.Option(None, help="subset | full | none: landmarks stored (preset's choice)")
_SHARD_MB = typer.Option(100, min=1, help="close a shard after this many MiB")
_SHARD_CLIPS = typer.Option(250, min=1, help="close a shard after this many source clips")
_PROGRESS = typer.Option(True, help="show the progress bar")
_RETRY = typer.Option(False, help="process clips an earlier run rejected again")
_PARTITIONS = typer.Option(1, min=1, help="the corpus is split into this many partitions (machines)")
_PARTITION = typer.Option(0, min=0, help="the partition this run writes, 0 .. num-partitions - 1")
_BACKEND = typer.Option("local", help="local (worker processes) | dask | ray (--jobs clips in flight on the cluster)")
_ADDRESS = typer.Option(None, help="scheduler of a running dask/ray cluster (default: start a local one)")
_SEED = typer.Option(0, help="seed of the shuffled order clips are written in (shards mix clips)")
_CLIP_TIMEOUT = typer.Option(600.0, min=0, help="seconds one clip may take before its worker is killed and the "
                             "clip rejected as 'timeout' (0: no limit)")
_MAX_MEM = typer.Option(None, min=0, help="GiB a worker may use before its clip is rejected as 'out of memory' "
                        "(default: 80% of RAM / jobs)")
_VERBOSE = typer.Option(False, "--verbose", "-v", help="print each rejection as it happens")


def _run_options(seed: int, clip_timeout: float, max_worker_mem: Optional[float], verbose: bool) -> dict:
    return {"seed": seed, "clip_timeout": clip_timeout, "max_worker_mem": max_worker_mem, "verbose": verbose}


def _split_list(value: Optional[str]) -> Optional[list[str]]:
    return [s.strip() for s in value.split(",") if s.strip()] if value else None


@app.command()
def lrw(
    root: Path = typer.Option(..., help="LRW's lipread_mp4 folder (WORD/{train,val,test}/WORD_NNNNN.mp4 + .txt)"),
    out: Path = _OUT,
    preset: str = typer.Option("bridging-lrw", help="bridging-lrw (fixed box) | bridging-lrw-registered (landmarks)"),
    words: Optional[str] = typer.Option(None, help="comma-separated word folders (default: all 500)"),
    splits: str = typer.Option("train,val,test", help="comma-separated splits to prepare"),
    jobs: int = _JOBS, mean_face: Optional[Path] = _MEAN_FACE, limit: Optional[int] = _LIMIT,
    crf: Optional[int] = _CRF, feature_dtype: Optional[str] = _DTYPE, wave: Optional[bool] = _WAVE,
    landmarks: Optional[str] = _LANDMARKS, shard_mb: int = _SHARD_MB, shard_clips: int = _SHARD_CLIPS,
    progress: bool = _PROGRESS, retry_failed: bool = _RETRY, num_partitions: int = _PARTITIONS,
    partition: int = _PARTITION, backend: str = _BACKEND, address: Optional[str] = _ADDRESS,
    seed: int = _SEED, clip_timeout: float = _CLIP_TIMEOUT, max_worker_mem: Optional[float] = _MAX_MEM,
    verbose: bool = _VERBOSE, crop_codec: Optional[str] = _CODEC,
) -> None:
    """LRW (Chung & Zisserman 2016) word clips -> shards per split, labelled with their word class."""
    from avprep.corpora import lrw as corpus

    _prepare(lambda: corpus.find_clips(root, _split_list(words), tuple(_split_list(splits) or ())), "lrw", out,
             preset, lambda: corpus.vocabulary(root), jobs, mean_face, limit, crf, feature_dtype, wave, landmarks,
             shard_mb, shard_clips, progress, retry_failed, num_partitions, partition,
             backend=backend, address=address, selection={"words": _split_list(words), "splits": splits},
             crop_codec=crop_codec, **_run_options(seed, clip_timeout, max_worker_mem, verbose))


@app.command()
def lrw1000(
    root: Path = typer.Option(..., help="LRW1000_Public (images/, audio/, info/)"),
    out: Path = _OUT,
    preset: str = typer.Option("bridging-lrw1000", help="see `avprep presets`"),
    splits: str = typer.Option("train,val,test", help="comma-separated splits to prepare"),
    audio_lead: float = typer.Option(0.0, min=0.0, help="seconds the audio files start before the word"),
    jobs: int = _JOBS, limit: Optional[int] = _LIMIT,
    crf: Optional[int] = _CRF, feature_dtype: Optional[str] = _DTYPE, wave: Optional[bool] = _WAVE,
    shard_mb: int = _SHARD_MB, shard_clips: int = _SHARD_CLIPS,
    progress: bool = _PROGRESS, retry_failed: bool = _RETRY, num_partitions: int = _PARTITIONS,
    partition: int = _PARTITION, backend: str = _BACKEND, address: Optional[str] = _ADDRESS,
    seed: int = _SEED, clip_timeout: float = _CLIP_TIMEOUT, max_worker_mem: Optional[float] = _MAX_MEM,
    verbose: bool = _VERBOSE, crop_codec: Optional[str] = _CODEC,
) -> None:
    """LRW-1000 (pre-cropped lip images + audio) -> shards per split, the video span matched to the audio."""
    from avprep.corpora import lrw1000 as corpus

    _prepare(lambda: corpus.find_clips(root, tuple(_split_list(splits) or ()), audio_lead), "lrw1000", out, preset,
             lambda: corpus.vocabulary(root), jobs, None, limit, crf, feature_dtype, wave, None, shard_mb,
             shard_clips, progress, retry_failed, num_partitions, partition,
             backend=backend, address=address, selection={"splits": splits, "audio_lead": audio_lead},
             crop_codec=crop_codec, **_run_options(seed, clip_timeout, max_worker_mem, verbose))


@app.command("tcd-timit")
def tcd_timit(
    root: Path = typer.Option(..., help="TCD-TIMIT folder holding volunteers/ and/or lipspeakers/"),
    out: Path = _OUT,
    speakers: str = typer.Option("lipspeakers", help="lipspeakers | volunteers | all | comma-separated ids "
                                 "(e.g. Lipspkr1,01M)"),
    preset: str = typer.Option("two-tower-tcd-timit", help="see `avprep presets`"),
    camera: str = typer.Option("straightcam", help="straightcam | 30degcam"),
    test_fraction: float = typer.Option(0.1, help="per speaker, the share of clips in the test split"),
    seed: int = typer.Option(0, help="seed of the reproducible random split (and of the shuffled write order)"),
    jobs: int = _JOBS, mean_face: Optional[Path] = _MEAN_FACE, limit: Optional[int] = _LIMIT,
    crf: Optional[int] = _CRF, feature_dtype: Optional[str] = _DTYPE, wave: Optional[bool] = _WAVE,
    landmarks: Optional[str] = _LANDMARKS, shard_mb: int = _SHARD_MB, shard_clips: int = _SHARD_CLIPS,
    progress: bool = _PROGRESS, retry_failed: bool = _RETRY, num_partitions: int = _PARTITIONS,
    partition: int = _PARTITION, backend: str = _BACKEND, address: Optional[str] = _ADDRESS,
    clip_timeout: float = _CLIP_TIMEOUT, max_worker_mem: Optional[float] = _MAX_MEM,
    verbose: bool = _VERBOSE, crop_codec: Optional[str] = _CODEC,
) -> None:
    """TCD-TIMIT (Harte & Gillen 2015) -> shards, 29.97 fps kept by the two-tower preset, 90/10 split per speaker."""
    from avprep.corpora import tcd_timit as corpus

    _prepare(lambda: corpus.find_clips(root, speakers, camera, test_fraction, seed), "tcd-timit", out, preset, None,
             jobs, mean_face, limit, crf, feature_dtype, wave, landmarks, shard_mb, shard_clips, progress,
             retry_failed, num_partitions, partition,
             backend=backend, address=address,
             selection={"speaker_set": speakers, "camera": camera, "test_fraction": test_fraction, "split_seed": seed},
             crop_codec=crop_codec, **_run_options(seed, clip_timeout, max_worker_mem, verbose))


_MAX_SECONDS = typer.Option(15.0, min=1.0, help="cut pretrain clips at word boundaries into segments of at most this "
                             "many seconds (AV-HuBERT's 15; auto-avsr uses 24)")


@app.command()
def lrs3(
    root: Path = typer.Option(..., help="LRS3 folder holding pretrain/, trainval/, test/ (ID/NNNNN.mp4 + .txt)"),
    out: Path = _OUT,
    preset: str = typer.Option("bridging-lrw-registered", help="see `avprep presets`"),
    subsets: Optional[str] = typer.Option(None, help="comma-separated: pretrain, trainval, test (default: all present)"),
    max_seconds: float = _MAX_SECONDS,
    jobs: int = _JOBS, mean_face: Optional[Path] = _MEAN_FACE, limit: Optional[int] = _LIMIT,
    crf: Optional[int] = _CRF, feature_dtype: Optional[str] = _DTYPE, wave: Optional[bool] = _WAVE,
    landmarks: Optional[str] = _LANDMARKS, shard_mb: int = _SHARD_MB, shard_clips: int = _SHARD_CLIPS,
    progress: bool = _PROGRESS, retry_failed: bool = _RETRY, num_partitions: int = _PARTITIONS,
    partition: int = _PARTITION, backend: str = _BACKEND, address: Optional[str] = _ADDRESS,
    seed: int = _SEED, clip_timeout: float = _CLIP_TIMEOUT, max_worker_mem: Optional[float] = _MAX_MEM,
    verbose: bool = _VERBOSE, crop_codec: Optional[str] = _CODEC,
) -> None:
    """LRS3-TED (Afouras et al. 2018) -> shards per subset, text and word timings from the .txt, pretrain cut."""
    from avprep.corpora import lrs3 as corpus

    chosen = tuple(_split_list(subsets) or ()) or None
    _prepare(lambda: corpus.find_clips(root, chosen, max_seconds), "lrs3", out, preset, None, jobs, mean_face, limit,
             crf, feature_dtype, wave, landmarks, shard_mb, shard_clips, progress, retry_failed, num_partitions,
             partition, backend=backend, address=address,
             selection={"subsets": list(chosen) if chosen else None, "max_seconds": max_seconds},
             crop_codec=crop_codec, **_run_options(seed, clip_timeout, max_worker_mem, verbose))


@app.command()
def lrs2(
    root: Path = typer.Option(..., help="LRS2 folder holding mvlrs_v1/{main,pretrain} and train/val/test/pretrain.txt"),
    out: Path = _OUT,
    preset: str = typer.Option("bridging-lrw-registered", help="see `avprep presets`"),
    splits: Optional[str] = typer.Option(None, help="comma-separated: pretrain, train, val, test (default: every list "
                                         "present)"),
    max_seconds: float = _MAX_SECONDS,
    jobs: int = _JOBS, mean_face: Optional[Path] = _MEAN_FACE, limit: Optional[int] = _LIMIT,
    crf: Optional[int] = _CRF, feature_dtype: Optional[str] = _DTYPE, wave: Optional[bool] = _WAVE,
    landmarks: Optional[str] = _LANDMARKS, shard_mb: int = _SHARD_MB, shard_clips: int = _SHARD_CLIPS,
    progress: bool = _PROGRESS, retry_failed: bool = _RETRY, num_partitions: int = _PARTITIONS,
    partition: int = _PARTITION, backend: str = _BACKEND, address: Optional[str] = _ADDRESS,
    seed: int = _SEED, clip_timeout: float = _CLIP_TIMEOUT, max_worker_mem: Optional[float] = _MAX_MEM,
    verbose: bool = _VERBOSE, crop_codec: Optional[str] = _CODEC,
) -> None:
    """LRS2-BBC (Afouras et al. 2018) -> shards per split list, text and word timings from the .txt, pretrain cut."""
    from avprep.corpora import lrs2 as corpus

    chosen = tuple(_split_list(splits) or ()) or None
    _prepare(lambda: corpus.find_clips(root, chosen, max_seconds), "lrs2", out, preset, None, jobs, mean_face, limit,
             crf, feature_dtype, wave, landmarks, shard_mb, shard_clips, progress, retry_failed, num_partitions,
             partition, backend=backend, address=address,
             selection={"splits": list(chosen) if chosen else None, "max_seconds": max_seconds},
             crop_codec=crop_codec, **_run_options(seed, clip_timeout, max_worker_mem, verbose))


@app.command()
def folder(
    root: Path = typer.Option(..., help="a folder of talking-face videos (searched recursively)"),
    out: Path = _OUT,
    manifest: Optional[Path] = typer.Option(None, help="CSV with columns path[,text,speaker,split,audio]"),
    split: str = typer.Option("train", help="split of clips the manifest gives none for"),
    preset: str = typer.Option("bridging-grid", help="see `avprep presets`"),
    jobs: int = _JOBS, mean_face: Optional[Path] = _MEAN_FACE, limit: Optional[int] = _LIMIT,
    crf: Optional[int] = _CRF, feature_dtype: Optional[str] = _DTYPE, wave: Optional[bool] = _WAVE,
    landmarks: Optional[str] = _LANDMARKS, shard_mb: int = _SHARD_MB, shard_clips: int = _SHARD_CLIPS,
    progress: bool = _PROGRESS, retry_failed: bool = _RETRY, num_partitions: int = _PARTITIONS,
    partition: int = _PARTITION, backend: str = _BACKEND, address: Optional[str] = _ADDRESS,
    seed: int = _SEED, clip_timeout: float = _CLIP_TIMEOUT, max_worker_mem: Optional[float] = _MAX_MEM,
    verbose: bool = _VERBOSE, crop_codec: Optional[str] = _CODEC,
) -> None:
    """Any folder of talking-face videos (transcripts from NAME.txt sidecars or a CSV manifest) -> shards."""
    from avprep.corpora import folder as corpus

    _prepare(lambda: corpus.find_clips(root, manifest, split), "folder", out, preset, None, jobs, mean_face, limit,
             crf, feature_dtype, wave, landmarks, shard_mb, shard_clips, progress, retry_failed, num_partitions, partition,
             backend=backend, address=address,
             selection={"manifest": str(manifest) if manifest else None, "split": split},
             crop_codec=crop_codec, **_run_options(seed, clip_timeout, max_worker_mem, verbose))


download_app = typer.Typer(no_args_is_help=True, help="Download a corpus from its official archive.")
app.add_typer(download_app, name="download")


@download_app.command("grid")
def download_grid(
    out: Path = typer.Option(..., help="folder to unpack into (then: avprep grid --root OUT)"),
    speakers: str = typer.Option(..., help="comma-separated, e.g. s1,s2,s4,s29"),
    base_url: Optional[str] = typer.Option(None, help="where sN/video/sN.mpg_vcd.zip and sN/align/sN.tar are "
                                           "served (default: the corpus's site)"),
    checksums: Optional[Path] = typer.Option(None, help="sha256sum-format file (default: SHA256SUMS on the server "
                                             "if there is one, else sizes are checked)"),
    alignments: bool = typer.Option(True, help="also fetch the word alignments"),
    retries: int = typer.Option(3, min=0, help="resume attempts after a dropped connection"),
    progress: bool = _PROGRESS,
) -> None:
    """GRID videos (and alignments) per speaker: resumable, checksummed, unpacked into the layout `avprep grid` reads."""
    from avprep import download as dl

    try:
        archives = dl.grid_archives(_split_list(speakers) or [], alignments)
        sums = dl.read_checksums(checksums.read_text()) if checksums else None
        folders = dl.download(archives, out, base_url or dl.GRID_BASE_URL, sums, retries, progress, console)
    except (ValueError, OSError, dl.DownloadError) as e:
        _fail(str(e))
    console.print(f"unpacked {len(folders)} archive(s) into {out}; next: avprep grid --root {out} --out SHARDS")
