"""What the data module does with a sample it cannot use: ``data.on_bad_sample: raise | skip``.

``raise`` (the default) stops at the first bad sample with one line naming its key, the field and the shard (a
``SampleError`` raised in the process iterating the loader, also when the sample was read by a worker process).
``skip`` drops it and counts it: the reasons travel with the next batch (``batch["skipped"]``, so they cross data-loader
worker processes), the engine reports them per split at the end of every epoch (console and ``train_log.jsonl``), and
``avtrain eval`` in its metrics. A stream in which every sample is bad raises even under ``skip``: that is a wrong
recipe or a wrong folder, not a few damaged files.

A sample is bad when :func:`avbridge.sample.decode_sample` refuses it (a member that does not decode, an unknown or
dotted member name, a missing or malformed JSON, wrong dtype, shape or length, non-finite values), when turning it
into model inputs fails, or when its inputs could not be batched with the others (a video frame size or number of
mel bins unlike the stream's first sample, a mel that does not cover the frames).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from rich.markup import escape

from avbridge.sample import SampleError

POLICIES = ("raise", "skip")


def _where(raw: dict) -> str:
    url = raw.get("__url__")
    return f" [{Path(str(url)).name}]" if url else ""


def _signature(out: dict, per_frame: int) -> dict[str, tuple]:
    """The shapes a batch needs equal across samples; ValueError (field, reason) if the sample is inconsistent."""
    video, mel = out["video"], out["mel"]
    t = video.shape[0]
    if video.ndim not in (3, 4) or t < 1:
        raise SampleError(out["key"], "video", f"shape {video.shape}, expected (T, H, W[, C]) with T >= 1")
    if mel.ndim != 2 or mel.shape[1] != per_frame * t:
        raise SampleError(out["key"], "mel", f"shape {mel.shape}, expected (bins, {per_frame * t}) for {t} frames")
    sig = {"video": video.shape[1:], "mel": mel.shape[:1]}
    if "flow" in out:
        if out["flow"].shape[:1] != (t - 1,):
            raise SampleError(out["key"], "flow", f"shape {out['flow'].shape}, expected {t - 1} steps")
        sig["flow"] = out["flow"].shape[1:]
    if "linear" in out:
        if out["linear"].ndim != 2 or out["linear"].shape[1] != per_frame * t:
            raise SampleError(out["key"], "linear", f"shape {out['linear'].shape}, expected (bins, {per_frame * t})")
        sig["linear"] = out["linear"].shape[:1]
    for name in ("video", "mel", "flow", "linear"):
        if name in out and out[name].dtype.kind == "f" and not np.isfinite(out[name]).all():
            raise SampleError(out["key"], name, "non-finite values")
    return sig


class Guarded:
    """A webdataset stage: raw samples -> model inputs via ``load``, bad ones raised or skipped per ``policy``."""

    def __init__(self, load: Callable[[dict], dict], policy: str, per_frame: int):
        if policy not in POLICIES:
            raise ValueError(f"on_bad_sample must be one of {', '.join(POLICIES)}, got {policy!r}")
        self.load, self.policy, self.per_frame = load, policy, per_frame

    def __call__(self, src: Iterator[dict]) -> Iterator[dict]:
        held: dict | None = None  # one good sample held back, so skips after it can still ride along
        pending: list[tuple] = []
        first: dict | None = None
        for raw in src:
            try:
                out = self.load(raw)
                sig = _signature(out, self.per_frame)
                if first is None:
                    first = sig
                for name, shape in sig.items():
                    if first.get(name) != shape:
                        raise SampleError(out["key"], name, f"shape {shape} unlike the stream's first sample's "
                                                            f"{first.get(name)}: cannot be batched with it")
            except Exception as e:  # noqa: BLE001 - every failure is this sample's, named and then raised or counted
                err = e if isinstance(e, SampleError) else SampleError(
                    raw.get("__key__"), "sample", f"cannot be loaded ({type(e).__name__}: {e})")
                if self.policy == "raise":
                    # travels as data and is raised by RaisingLoader in the main process: raised here, inside a
                    # data-loader worker, it would arrive as a RuntimeError holding the worker's traceback
                    yield {"__bad__": (err.key, err.field, err.reason + _where(raw))}
                    return
                pending.append((str(err.key), err.field, err.reason + _where(raw)))
                continue
            if held is not None:
                yield held
            out["skipped"], pending = pending, []
            held = out
        if held is not None:
            held["skipped"] = held["skipped"] + pending
            yield held
        elif pending:
            key, field, reason = pending[0]
            raise RuntimeError(f"every sample read was bad ({len(pending)} skipped under data.on_bad_sample: skip); "
                               f"the first: sample {key}: {field}: {reason}")


class WithSkips:
    """Wrap a collate function so the batch carries the skips of its samples (``batch["skipped"]``)."""

    def __init__(self, collate: Callable[[list[dict]], dict]):
        self.collate = collate

    def __call__(self, samples: list[dict]) -> dict:
        bad = next((s["__bad__"] for s in samples if "__bad__" in s), None)
        if bad is not None:
            return {"__bad__": bad}
        batch = self.collate(samples)
        batch["skipped"] = [s for sample in samples for s in sample.get("skipped", ())]
        return batch


class RaisingLoader:
    """Iterates a data loader's batches; a bad sample under ``raise`` becomes one SampleError here, in the caller's
    process, with its one-line message (key, field, shard)."""

    def __init__(self, loader):
        self.loader = loader

    def __iter__(self) -> Iterator[dict]:
        for batch in self.loader:
            if "__bad__" in batch:
                raise SampleError(*batch["__bad__"])
            yield batch

    def __getattr__(self, name: str):
        return getattr(self.loader, name)


class SkipTally:
    """Skipped samples per split over an epoch (or an evaluation), reported and then reset."""

    def __init__(self):
        self.by_split: dict[str, list[tuple]] = {}

    def add(self, batch: dict, split: str) -> None:
        if batch.get("skipped"):
            self.by_split.setdefault(split, []).extend(batch["skipped"])

    def summary(self) -> dict[str, Any]:
        return {split: {"samples": len(items), "by_field": dict(Counter(f for _, f, _ in items)),
                        "first": f"sample {items[0][0]}: {items[0][1]}: {items[0][2]}"}
                for split, items in self.by_split.items()}

    def report(self, console, epoch: int, log_path: Path | None = None) -> dict[str, Any]:
        summary = self.summary()
        for split, s in summary.items():
            fields = ", ".join(f"{f} {n}" for f, n in sorted(s["by_field"].items()))
            console.log(escape(f"epoch {epoch}: skipped {s['samples']} bad {split} samples (data.on_bad_sample: "
                               f"skip; {fields}); first: {s['first']}"), highlight=False)
        if summary and log_path is not None:
            with open(log_path, "a") as f:
                f.write(json.dumps({"epoch": epoch, "skipped": summary}) + "\n")
        self.by_split = {}
        return summary
