"""Verify shards (every sample decodes; audio, video and features agree in length; each file's SHA-256 is the one its
ledger recorded) and draw a contact sheet."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.markup import escape
from rich.table import Table

from avbridge.sample import SampleError, decode_field
from avbridge.sample import check_sample as sample_problems
from avbridge.shardlist import ChecksumError, recorded_checksums, unlisted_tars, verify_shard
from avprep.shards import iter_raw_samples, shard_paths

# What a contact sheet credits, per corpus it shows (the sample JSON's "corpus").
ATTRIBUTIONS = {
    "grid": "GRID corpus, Cooke et al. 2006, CC BY 4.0",
    "lrs3": "LRS3-TED, Afouras et al. 2018 (TED talks, CC BY-NC-ND 4.0)",
    "lrs2": "LRS2-BBC, Afouras et al. 2018 (BBC, non-commercial research only)",
    "lrw": "LRW, Chung & Zisserman 2016 (BBC, non-commercial research only)",
    "lrw1000": "LRW-1000, Yang et al. 2019 (under its data agreement)",
    "tcd-timit": "TCD-TIMIT, Harte & Gillen 2015",
    "folder": "your own videos",
}


def attribution(corpora: set[str]) -> str:
    """The credit line of a sheet showing samples of ``corpora``."""
    return "; ".join(ATTRIBUTIONS.get(c, f"{c} (see its licence)") for c in sorted(corpora))


@dataclass
class VerifyReport:
    """``avprep inspect --verify`` / ``avprep verify``: each ledger-named shard's bytes against its recorded
    SHA-256, and the ``.tar`` files no ledger names (never read as data)."""

    checked: list[str] = field(default_factory=list)  # matched their checksum
    unrecorded: list[str] = field(default_factory=list)  # written before avprep 0.3: no checksum to compare
    bad: list[str] = field(default_factory=list)  # one line each, naming the shard
    missing: list[str] = field(default_factory=list)  # named by a ledger, not on disk
    unlisted: list[str] = field(default_factory=list)  # on disk, named by no ledger
    bytes: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not (self.bad or self.missing)

    def table(self) -> Table:
        t = Table(title="avprep verify", show_header=False)
        rate = self.bytes / 2**20 / self.seconds if self.seconds else 0.0
        t.add_row("shards whose SHA-256 matches", str(len(self.checked)))
        t.add_row("read", f"{self.bytes / 2**20:.1f} MiB in {self.seconds:.1f} s ({rate:.0f} MiB/s)")
        if self.unrecorded:
            t.add_row("no checksum recorded (avprep < 0.3)", str(len(self.unrecorded)))
        for line in self.bad + [f"{n}: named by a ledger, missing" for n in self.missing]:
            t.add_row("[red]bad[/]", escape(line))
        for name in self.unlisted:
            t.add_row("[yellow]not in any ledger (never read)[/]", escape(name))
        return t


def verify_shards(target: Path) -> VerifyReport:
    """Hash every shard its folder's ledgers name and compare with the SHA-256 recorded when it was written."""
    target = Path(target)
    report = VerifyReport()
    folder = target if target.is_dir() else target.parent
    recorded = recorded_checksums(folder)
    report.unlisted = unlisted_tars(folder) if target.is_dir() else []
    names = sorted(recorded) if target.is_dir() else [target.name]
    start = time.perf_counter()
    for name in names:
        path = folder / name
        if not path.exists():
            report.missing.append(name)
            continue
        expected = recorded.get(name, {}).get("sha256")
        try:
            if verify_shard(path, expected):
                report.checked.append(name)
            else:
                report.unrecorded.append(name)
        except ChecksumError as e:
            report.bad.append(str(e))
        report.bytes += path.stat().st_size
    report.seconds = time.perf_counter() - start
    return report


@dataclass
class InspectReport:
    samples: Counter = field(default_factory=Counter)  # per split
    fields: dict = field(default_factory=lambda: defaultdict(Counter))  # split -> field -> count
    seconds: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    duplicates: int = 0
    unlisted: list[str] = field(default_factory=list)  # .tar files no ledger names: not read

    def table(self) -> Table:
        # One column per split, one row per field: a corpus has a handful of splits but a preset up to ten fields,
        # so this way round the names a user types (split and field names) fit an 80-column terminal whole.
        splits = sorted(self.samples)
        names = sorted({f for c in self.fields.values() for f in c})
        t = Table(title="avprep inspect")
        t.add_column("", overflow="fold")  # a narrow terminal folds names, never cuts them to "unli…"
        for split in splits:
            t.add_column(split, justify="right", overflow="fold")
        t.add_row("samples", *[str(self.samples[s]) for s in splits])
        t.add_row("hours", *[f"{self.seconds[s] / 3600:.3f}" for s in splits], end_section=True)
        for name in names:
            t.add_row(name, *[str(self.fields[s].get(name, 0)) for s in splits])
        t.caption = f"{len(self.errors)} errors, {self.duplicates} duplicate keys" + (
            f", {len(self.unlisted)} .tar not in any ledger (not read: {', '.join(self.unlisted[:3])})"
            if self.unlisted else "") + (
            "\n" + escape("\n".join(self.errors[:10])) if self.errors else "")  # messages quote file contents
        return t


def check_sample(raw: dict) -> tuple[dict, list[str]]:
    """Decode all fields of one raw sample; return its metadata and the problems found ("key.field: reason").

    The checks are avbridge's sample contract (:func:`avbridge.sample.check_sample`): every member decodes within
    its size bounds, is a known field of the stored dtype and shape, holds finite values, and agrees in length with
    the JSON's ``num_frames``."""
    try:
        meta, _, problems = sample_problems(raw)
    except SampleError as e:  # the key or the JSON: nothing else can be checked
        return {}, [f"{e.key}.{e.field}: {e.reason}"]
    return meta, [f"{e.key}.{e.field}: {e.reason}" for e in problems]


def _fps(meta: dict) -> float:
    fps = meta.get("fps")
    return float(fps) if isinstance(fps, (int, float)) and not isinstance(fps, bool) and fps > 0 else 25.0


def check_shards(target: Path) -> InspectReport:
    report = InspectReport()
    seen: set[str] = set()
    paths = shard_paths(target)
    report.unlisted = unlisted_tars(target) if Path(target).is_dir() else []
    if not paths:
        report.errors.append(f"no shards found at {target}")
    for path in paths:
        try:
            for raw in iter_raw_samples(path):
                key = raw["__key__"]
                if key in seen:
                    report.duplicates += 1
                    report.errors.append(f"{key}: duplicate key (again in {path.name})")
                seen.add(key)
                meta, problems = check_sample(raw)
                report.errors.extend(problems)
                split = meta.get("split") if isinstance(meta.get("split"), str) else "?"
                report.samples[split] += 1
                if not problems:  # a bad sample's JSON may hold anything
                    report.seconds[split] += meta["num_frames"] / _fps(meta)
                report.fields[split].update(n for n in raw if not n.startswith("__"))
        except Exception as e:  # noqa: BLE001 - a truncated or corrupt tar is a finding
            report.errors.append(f"{path.name}: cannot be read ({type(e).__name__}: {e})")
    return report


def contact_sheet(target: Path, out_png: Path, count: int = 6, frames_per_row: int = 6) -> None:
    """A grid: per sample, mouth and face frames spread over the clip, with its mel-spectrogram beneath."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples, corpora = [], set()
    for path in shard_paths(target):
        for raw in iter_raw_samples(path):
            samples.append(raw)
            if len(samples) >= count:
                break
        if len(samples) >= count:
            break
    if not samples:
        raise ValueError(f"no samples found at {target}")
    fig = plt.figure(figsize=(2 * frames_per_row, 3.6 * len(samples)), constrained_layout=True)
    rows = fig.subfigures(len(samples), 1)
    rows = np.atleast_1d(rows)
    for sub, raw in zip(rows, samples):
        meta = decode_field("json", raw["json"])
        corpora.add(str(meta.get("corpus", "?")))
        crops = [decode_field(f"{v}.{c}", raw[f"{v}.{c}"]) for v in ("mouth", "face") for c in ("mp4", "jpg", "npy")
                 if f"{v}.{c}" in raw]
        axes = sub.subplots(len(crops) + 1, frames_per_row, gridspec_kw={"height_ratios": [1] * len(crops) + [1.2]})
        axes = np.atleast_2d(axes)
        for r, video in enumerate(crops):
            picks = np.linspace(0, len(video) - 1, frames_per_row).round().astype(int)
            for c, i in enumerate(picks):
                ax = axes[r, c]
                ax.imshow(video[i], cmap="gray" if video.ndim == 3 else None, vmin=0, vmax=255)
                ax.set_xticks([]), ax.set_yticks([])
                if r == 0:
                    ax.set_title(f"frame {i}", fontsize=7)
        gs = axes[-1, 0].get_gridspec()
        for ax in axes[-1]:
            ax.remove()
        mel_ax = sub.add_subplot(gs[-1, :])
        mel_field = next((n for n in ("mel.npy", "mel.q8.npz") if n in raw), None)
        if mel_field:
            mel_ax.imshow(decode_field(mel_field, raw[mel_field]), origin="lower", aspect="auto", cmap="magma")
            mel_ax.set_ylabel("mel", fontsize=7)
        mel_ax.set_xlabel("spectrogram frame", fontsize=7)
        mel_ax.tick_params(labelsize=6)
        sub.suptitle(f"{raw['__key__']}  [{meta.get('split')}]  \"{meta.get('text', '')}\"  "
                     f"{meta['num_frames']} frames", fontsize=9)
    fig.text(0.99, 0.001, attribution(corpora), ha="right", va="bottom", fontsize=6)
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=80)
    plt.close(fig)
