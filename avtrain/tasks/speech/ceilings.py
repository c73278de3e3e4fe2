"""The ceilings printed beside every speech result: the same metrics, on the same clips, for references that need
no model:

``true_audio``               the clip's own recording through the recogniser (WER only: the signal metrics of a
                             signal against itself say nothing)
``true_mel_griffin_lim``     the clip's true mel through Griffin-Lim (what a perfect mel prediction reaches with it)
``true_mel_hifigan``         the true mel through HiFi-GAN (when installed and the mels are bridging-grid's)
``true_linear_griffin_lim``  the true linear spectrogram through Griffin-Lim (models that predict one)

They depend on the shards, the split and the settings only, and HiFi-GAN costs seconds a clip on a CPU, so they are
cached per shard folder: ``<shards>/ceilings/<split>-<digest>.json``, the digest over the split's shard files (names,
sizes, modification times), the clip cap, the Griffin-Lim iterations, the HiFi-GAN mapping and the recognisers. A
shard folder that cannot be written to is scored every time.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avbridge.shardlist import shard_names
from avbridge.spectra import SpectrogramParams
from avtrain.config import Recipe
from avtrain.data import MEL_PER_FRAME, build_loader, denormalise_mel
from avtrain.data.fields import Fields
from avtrain.tasks.speech.metrics import SpeechMetrics
from avtrain.tasks.speech.scoring import SpeechEvaluator

VERSION = 1  # bump when what a ceiling measures changes: old cache files are then ignored
LABELS = {
    "true_audio": "ceiling: true audio",
    "true_mel_griffin_lim": "ceiling: true mel, Griffin-Lim",
    "true_mel_hifigan": "ceiling: true mel, HiFi-GAN",
    "true_linear_griffin_lim": "ceiling: true linear, Griffin-Lim",
}


def settings(recipe: Recipe, split: str, linear: bool, recognisers: dict, hifigan=None) -> dict:
    """Everything a ceiling depends on besides the code."""
    root = Path(recipe.data.shards)
    files = []
    for name in shard_names(root, split):
        stat = (root / name).stat() if (root / name).exists() else None
        files.append([name, stat.st_size if stat else None, stat.st_mtime_ns if stat else None])
    out = {"version": VERSION, "split": split, "shards": files, "max_clips": recipe.eval.max_clips,
           "on_bad_sample": recipe.data.on_bad_sample, "griffin_lim_iters": recipe.eval.griffin_lim_iters,
           "linear": linear, "recognisers": {k: r.dictionary for k, r in recognisers.items()}}
    if hifigan is not None:
        out["hifigan_offsets"] = hifigan.mapping()
    return out


def cache_path(recipe: Recipe, conf: dict) -> Path:
    digest = hashlib.sha256(json.dumps(conf, sort_keys=True).encode()).hexdigest()[:12]
    return Path(recipe.data.shards) / "ceilings" / f"{conf['split']}-{digest}.json"


def hifigan_fits(params: SpectrogramParams) -> bool:
    from avtrain.tasks.speech import hifigan as hg

    try:
        hg.check_params(params)
    except ValueError:
        return False
    return hg.available()


@dataclass
class ScoredClip:
    """One clip of a split as the scoring loader gives it: the batch it sits in and its index there."""

    key: str
    batch: dict
    index: int
    params: SpectrogramParams
    mel_frames: int  # spectrogram frames of the clip (MEL_PER_FRAME x its video frames)
    wave: np.ndarray
    text: str


def scored_clips(recipe: Recipe, split: str, linear: bool) -> Iterator[ScoredClip]:
    """The clips ``avtrain eval`` scores, in its order and up to its ``eval.max_clips``."""
    done = 0
    for batch in build_loader(recipe, split, train=False, scoring=True, fields=Fields(linear=linear)):
        for i, key in enumerate(batch["keys"]):
            if recipe.eval.max_clips and done >= recipe.eval.max_clips:
                return
            yield ScoredClip(key, batch, i, SpectrogramParams(**batch["spectrograms"][i]),
                             MEL_PER_FRAME * int(batch["lengths"][i]), batch["waves"][i], batch["texts"][i])
            done += 1


def score_ceilings(recipe: Recipe, split: str, linear: bool, recognisers: dict, hifigan=None) -> dict:
    """Score every ceiling on the clips ``avtrain eval`` scores (same loader, same cap): {name: summary}."""
    d, e = recipe.data, recipe.eval
    rows: dict[str, SpeechEvaluator | SpeechMetrics] = {}
    for clip in scored_clips(recipe, split, linear):
        params, n, wave, text = clip.params, clip.mel_frames, clip.wave, clip.text
        true_mel = denormalise_mel(clip.batch["mel"][clip.index, :, :n].numpy(), d)
        if not rows:
            if recognisers:
                rows["true_audio"] = SpeechMetrics(recognisers=recognisers, signal_metrics=False)
            rows["true_mel_griffin_lim"] = SpeechEvaluator(params, None, "mel", n_iter=e.griffin_lim_iters,
                                                           recognisers=recognisers)
            if hifigan is not None and hifigan_fits(params):
                rows["true_mel_hifigan"] = SpeechEvaluator(params, None, "hifigan", hifigan=hifigan,
                                                           recognisers=recognisers)
            if linear:
                rows["true_linear_griffin_lim"] = SpeechEvaluator(params, None, "linear", n_iter=e.griffin_lim_iters,
                                                                  recognisers=recognisers)
        for name, row in rows.items():
            if isinstance(row, SpeechMetrics):
                row.add(clip.key, None, wave, params.sample_rate, text=text)
            else:
                lin = clip.batch["linear"][clip.index, :, :n].numpy() if name == "true_linear_griffin_lim" else None
                row.add(clip.key, wave, mel=true_mel, linear=lin, text=text)
    out = {}
    for name, row in rows.items():
        metrics = row if isinstance(row, SpeechMetrics) else row.metrics
        out[name] = {"label": LABELS[name], "clips": len(metrics.per_clip), "metrics": metrics.summary()}
    return out


def ceilings(recipe: Recipe, split: str, linear: bool, recognisers: dict, hifigan=None, console=None) -> dict:
    """The split's ceilings, from the shard folder's cache when it has them:
    {"cache": path or None, "cached": bool, "rows": {name: {"label", "clips", "metrics"}}}."""
    conf = settings(recipe, split, linear, recognisers, hifigan)
    path = cache_path(recipe, conf)
    if path.is_file():
        try:
            cached = json.loads(path.read_text())
            if cached.get("settings") == conf:
                return {"cache": str(path), "cached": True, "rows": cached["rows"]}
        except (OSError, ValueError, KeyError):
            pass  # unreadable or torn: score again and rewrite it
    if console is not None:
        console.print(f"scoring the ceilings of these clips once (cached in {path.parent})", highlight=False)
    rows = score_ceilings(recipe, split, linear, recognisers, hifigan)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"settings": conf, "rows": rows}, indent=1))
        tmp.replace(path)
    except OSError:
        return {"cache": None, "cached": False, "rows": rows}
    return {"cache": str(path), "cached": False, "rows": rows}
