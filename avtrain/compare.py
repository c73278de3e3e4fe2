"""Paired comparison of two arms of evaluated runs on the same clips (say N = 150 against N = 0, three seeds each).

One seed of 50 or 300 test clips cannot separate two recipes a few hundredths apart; pairing by clip can, because
clips differ from each other far more than the two arms differ on one clip. For each metric: every run's mean, each
arm's mean and standard deviation over its runs (the seed-to-seed spread), and the per-clip difference B - A of the
two arms' seed-averaged scores, with a bootstrap 95 % interval over clips and a two-sided sign-flip permutation test
(exact in the limit; on 0/1 scores with one run an arm it is McNemar's test). Reads what ``avtrain eval`` writes:
``eval/<split>/<mode>/speech_per_clip.jsonl`` (speech: stoi, estoi, pesq_*, wer) or ``eval/<split>/per_clip.jsonl``
(word lip reading: ``correct``, 0 or 1; sentence lip reading: ``wer``, ``cer``).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

LOWER_IS_BETTER = ("wer", "wer_cmudict", "cer")
SPEECH_METRICS = ("stoi", "estoi", "wer")
LIPREADING_METRICS = ("correct", "cer")


def per_clip_file(run: Path, split: str = "test", mode: str = "mel") -> Path:
    """The per-clip scores ``avtrain eval`` wrote into a run folder (speech: under the synthesis mode)."""
    for path in (run / "eval" / split / mode / "speech_per_clip.jsonl", run / "eval" / split / "per_clip.jsonl"):
        if path.is_file():
            return path
    raise FileNotFoundError(f"{run}: no per-clip scores under eval/{split}/ (run `avtrain eval` on it first; "
                            f"speech runs keep them under eval/{split}/{mode}/)")


def load_scores(run: Path, split: str = "test", mode: str = "mel") -> dict[str, dict]:
    """Clip key -> that clip's row."""
    path = per_clip_file(run, split, mode)
    scores, first_line = {}, {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                row = json.loads(line)
                key = row["key"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ValueError(f"{path}, line {n}: not a per-clip row with a key (rerun `avtrain eval`)") from None
            if key in scores:  # the evaluation read this clip twice; keeping either row would hide it
                raise ValueError(f"{path}, line {n}: clip {key} is scored twice (first on line {first_line[key]}): "
                                 "the evaluation read it twice (`avprep inspect` on the shards lists duplicate keys)")
            scores[key], first_line[key] = row, n
    if not scores:
        raise ValueError(f"{path}: no clips (rerun `avtrain eval`)")
    return scores


@dataclass(frozen=True)
class MetricComparison:
    metric: str
    runs_a: list[float]  # each run's mean over the clips
    runs_b: list[float]
    difference: float  # mean over clips of B - A (each arm averaged over its runs first)
    interval: tuple[float, float]  # bootstrap 95 % over clips
    p_value: float  # two-sided sign-flip permutation test of the per-clip differences
    clips: int
    b_better: int  # clips on which B scores better (lower for WER), after averaging over runs
    b_worse: int
    higher_is_better: bool

    @property
    def mean_a(self) -> float:
        return float(np.mean(self.runs_a))

    @property
    def mean_b(self) -> float:
        return float(np.mean(self.runs_b))

    @property
    def sd_a(self) -> float:
        return float(np.std(self.runs_a, ddof=1)) if len(self.runs_a) > 1 else math.nan

    @property
    def sd_b(self) -> float:
        return float(np.std(self.runs_b, ddof=1)) if len(self.runs_b) > 1 else math.nan

    def to_dict(self) -> dict:
        return {**asdict(self), "mean_a": self.mean_a, "sd_a": self.sd_a, "mean_b": self.mean_b, "sd_b": self.sd_b}


def _matrix(arm: list[dict[str, dict]], keys: list[str], metric: str) -> np.ndarray:
    try:
        return np.array([[float(run[k][metric]) for k in keys] for run in arm])
    except KeyError:
        raise ValueError(f"metric {metric!r} is missing from some clip's scores; these have: "
                         f"{sorted(next(iter(arm[0].values())))}") from None


def compare_metric(a: list[dict[str, dict]], b: list[dict[str, dict]], metric: str, *, resamples: int = 10000,
                   seed: int = 0) -> MetricComparison:
    """``a`` and ``b``: one ``load_scores`` result per run. Every run must hold the same clips."""
    if not a or not b:
        raise ValueError("each arm needs at least one run")
    keys = sorted(a[0])
    expected = set(keys)
    for run in a + b:
        if set(run) != expected:
            missing, extra = len(expected - set(run)), len(set(run) - expected)
            raise ValueError(f"the runs were not scored on the same clips ({missing} missing, {extra} extra against "
                             f"the first run's {len(keys)}): a paired comparison needs the same split and checkpoint "
                             "selection")
    ma, mb = _matrix(a, keys, metric), _matrix(b, keys, metric)
    d = mb.mean(0) - ma.mean(0)
    rng = np.random.default_rng(seed)
    boot = d[rng.integers(0, len(d), (resamples, len(d)))].mean(1)
    signs = rng.choice(np.array([-1.0, 1.0]), (resamples, len(d)))
    extreme = int((np.abs((signs * d).mean(1)) >= abs(d.mean()) - 1e-12).sum())
    higher = metric not in LOWER_IS_BETTER
    gain = d if higher else -d
    return MetricComparison(metric=metric, runs_a=[float(x) for x in ma.mean(1)], runs_b=[float(x) for x in mb.mean(1)],
                            difference=float(d.mean()),
                            interval=(float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))),
                            p_value=(extreme + 1) / (resamples + 1), clips=len(keys), b_better=int((gain > 0).sum()),
                            b_worse=int((gain < 0).sum()), higher_is_better=higher)


def default_metrics(scores: dict[str, dict]) -> tuple[str, ...]:
    row = next(iter(scores.values()))
    return tuple(m for m in (*SPEECH_METRICS, *LIPREADING_METRICS) if m in row)


def compare_runs(runs_a: list[Path], runs_b: list[Path], metrics: tuple[str, ...] | None = None, *,
                 split: str = "test", mode: str = "mel", resamples: int = 10000,
                 seed: int = 0) -> list[MetricComparison]:
    a = [load_scores(r, split, mode) for r in runs_a]
    b = [load_scores(r, split, mode) for r in runs_b]
    return [compare_metric(a, b, m, resamples=resamples, seed=seed) for m in (metrics or default_metrics(a[0]))]
