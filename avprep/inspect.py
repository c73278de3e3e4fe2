"""Verify shards (every sample decodes; audio, video and features agree in length) and draw a contact sheet."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.table import Table

from avbridge.sample import decode_field
from avprep.shards import iter_raw_samples, shard_paths


@dataclass
class InspectReport:
    samples: Counter = field(default_factory=Counter)  # per split
    fields: dict = field(default_factory=lambda: defaultdict(Counter))  # split -> field -> count
    seconds: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    duplicates: int = 0

    def table(self) -> Table:
        names = sorted({f for c in self.fields.values() for f in c})
        t = Table(title="avprep inspect")
        for col in ["split", "samples", "hours"] + names:
            t.add_column(col)
        for split in sorted(self.samples):
            t.add_row(split, str(self.samples[split]), f"{self.seconds[split] / 3600:.3f}",
                      *[str(self.fields[split].get(n, 0)) for n in names])
        t.caption = f"{len(self.errors)} errors, {self.duplicates} duplicate keys" + (
            "\n" + "\n".join(self.errors[:10]) if self.errors else "")
        return t


def check_sample(raw: dict) -> tuple[dict, list[str]]:
    """Decode all fields of one raw sample; return its metadata and the problems found."""
    key = raw["__key__"]
    problems: list[str] = []
    try:
        meta = decode_field("json", raw["json"])
    except Exception as e:  # noqa: BLE001 - any decode failure is a finding, reported per sample
        return {}, [f"{key}: json does not decode ({e})"]
    t, spf = meta["num_frames"], meta["samples_per_frame"]
    per_frame = {"mel.npy": None, "linear.npy": None}
    if meta.get("spectrogram"):
        k = spf // meta["spectrogram"]["hop_length"]
        per_frame = {n: k * t for n in ("mel.npy", "linear.npy", "mel.q8.npz", "linear.q8.npz")}
    for name, data in raw.items():
        if name.startswith("__") or name == "json":
            continue
        try:
            value = decode_field(name, data)
        except Exception as e:  # noqa: BLE001
            problems.append(f"{key}.{name}: does not decode ({type(e).__name__}: {e})")
            continue
        if name.split(".")[0] in ("mouth", "face", "landmarks", "transforms"):
            got, want = len(value), t
        elif name == "flow.npz":
            got, want = len(value), t - 1
        elif name == "wav.flac":
            got, want = len(value), t * spf
        elif name in per_frame:
            got, want = value.shape[1], per_frame[name]
        else:
            continue
        if got != want:
            problems.append(f"{key}.{name}: length {got}, expected {want} for {t} frames")
        if name.endswith((".npy", ".npz")) and value.dtype.kind == "f" and not np.isfinite(value).all():
            problems.append(f"{key}.{name}: non-finite values")
    return meta, problems


def check_shards(target: Path) -> InspectReport:
    report = InspectReport()
    seen: set[str] = set()
    paths = shard_paths(target)
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
                split = meta.get("split", "?")
                report.samples[split] += 1
                report.seconds[split] += meta.get("num_frames", 0) / meta.get("fps", 25)
                report.fields[split].update(n for n in raw if not n.startswith("__"))
        except Exception as e:  # noqa: BLE001 - a truncated or corrupt tar is a finding
            report.errors.append(f"{path.name}: cannot be read ({type(e).__name__}: {e})")
    return report


def contact_sheet(target: Path, out_png: Path, count: int = 6, frames_per_row: int = 6) -> None:
    """A grid: per sample, mouth and face frames spread over the clip, with its mel-spectrogram beneath."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = []
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
        sub.suptitle(f"{raw['__key__']}  [{meta.get('split')}]  \"{meta.get('text', '')}\"  {meta['num_frames']} frames",
                     fontsize=9)
    fig.text(0.99, 0.001, "GRID corpus, Cooke et al. 2006, CC BY 4.0", ha="right", va="bottom", fontsize=6)
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=80)
    plt.close(fig)
