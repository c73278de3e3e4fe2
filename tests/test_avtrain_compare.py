"""avtrain compare: two arms of evaluated runs, paired clip by clip (the per-clip files avtrain eval writes)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from avtrain.cli import app
from avtrain.compare import compare_metric, compare_runs


def _speech_run(root: Path, name: str, estoi: np.ndarray, wer: np.ndarray) -> Path:
    out = root / name / "eval" / "test" / "mel"
    out.mkdir(parents=True)
    rows = [{"key": f"s1_c{i:03d}", "stoi": 0.5 + e / 4, "estoi": float(e), "wer": float(w)}
            for i, (e, w) in enumerate(zip(estoi, wer))]
    (out / "speech_per_clip.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root / name


def _arms(tmp_path: Path, gain: float, seeds: int = 3, clips: int = 50):
    """Clips differ a lot (0.15-0.45 ESTOI), seeds a little (sd 0.01); arm B adds ``gain`` on every clip."""
    rng = np.random.default_rng(0)
    clip_level = rng.uniform(0.15, 0.45, clips)
    words = rng.integers(0, 7, clips) / 6
    a = [_speech_run(tmp_path, f"a{s}", clip_level + rng.normal(0, 0.01, clips), words) for s in range(seeds)]
    b = [_speech_run(tmp_path, f"b{s}", clip_level + gain + rng.normal(0, 0.01, clips),
                     np.clip(words - (1 / 6 if gain > 0 else 0), 0, 1)) for s in range(seeds)]
    return a, b


def test_a_small_gain_on_every_clip_is_found_and_no_gain_is_not(tmp_path):
    a, b = _arms(tmp_path / "gain", gain=0.01)
    estoi, wer = compare_runs(a, b, ("estoi", "wer"))
    # 0.01 is the seeds' own spread: invisible in the arms' means ± sd, clear clip by clip
    assert abs(estoi.difference - 0.01) < 0.004 and estoi.interval[0] > 0 and estoi.p_value < 0.001
    assert estoi.b_better > 40 and len(estoi.runs_a) == 3 and estoi.sd_a > 0
    assert wer.difference < 0 and wer.b_better > 0 and wer.b_worse == 0  # lower WER is better
    a, b = _arms(tmp_path / "none", gain=0.0)
    same = compare_runs(a, b, ("estoi",))[0]
    assert same.interval[0] < 0 < same.interval[1] and same.p_value > 0.05
    identical = compare_runs(a, a, ("estoi",))[0]
    assert identical.difference == 0 and identical.p_value == 1.0 and identical.b_better == identical.b_worse == 0


def test_one_run_an_arm_of_right_or_wrong_clips_is_mcnemars_test():
    a = [{f"k{i}": {"correct": int(i < 200)} for i in range(300)}]  # 200 / 300
    b = [{f"k{i}": {"correct": int(i < 200 or i >= 280)} for i in range(300)}]  # the same plus 20 more
    r = compare_metric(a, b, "correct", resamples=20000)
    # exact McNemar: 20 discordant pairs all one way, p = 2 * 0.5**20
    assert r.difference == pytest.approx(20 / 300) and r.p_value < 0.001 and (r.b_better, r.b_worse) == (20, 0)
    b = [{f"k{i}": {"correct": int(i < 190 or i >= 290)} for i in range(300)}]  # 10 lost, 10 gained
    r = compare_metric(a, b, "correct")
    assert r.difference == 0 and r.p_value > 0.5 and (r.b_better, r.b_worse) == (10, 10)


def test_runs_scored_on_other_clips_are_refused(tmp_path):
    a = [{"k1": {"estoi": 0.3}, "k2": {"estoi": 0.2}}]
    with pytest.raises(ValueError, match="not scored on the same clips .1 missing, 1 extra"):
        compare_metric(a, [{"k1": {"estoi": 0.3}, "k3": {"estoi": 0.2}}], "estoi")
    with pytest.raises(ValueError, match="metric 'stoi' is missing"):
        compare_metric(a, a, "stoi")


def test_a_per_clip_file_that_scores_a_clip_twice_is_refused(tmp_path):
    # a clip scored twice means the evaluation read it twice: keeping either row would hide that, and the run's
    # metrics.json (which counted it twice) would disagree with the comparison
    run = tmp_path / "run"
    (run / "eval" / "test").mkdir(parents=True)
    rows = [{"key": "s1_a_w0", "correct": 1}, {"key": "s1_a_w1", "correct": 0}, {"key": "s1_a_w0", "correct": 0}]
    (run / "eval" / "test" / "per_clip.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValueError, match="per_clip.jsonl, line 3: clip s1_a_w0 is scored twice .first on line 1."):
        compare_runs([run], [run])


def test_cli_prints_both_arms_whole_at_80_columns_and_writes_json(tmp_path):
    a, b = _arms(tmp_path, gain=0.01)
    names = ["N = 150, official memory, 7 epochs", "N = 0, no memory, 7 epochs"]
    args = ["compare", *sum((["--a", str(r)] for r in a), []), *sum((["--b", str(r)] for r in b), []),
            "--name-a", names[0], "--name-b", names[1], "--json", str(tmp_path / "c.json")]
    res = CliRunner().invoke(app, args, env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    assert all(name in res.output for name in names) and all(str(r) in res.output for r in a + b)
    assert max(len(line) for line in res.output.splitlines() if "│" in line) <= 80
    for metric in ("stoi", "estoi", "wer"):  # the speech defaults
        assert any(line.startswith(f"│ {metric} ") for line in res.output.splitlines())
    saved = json.loads((tmp_path / "c.json").read_text())
    assert [m["metric"] for m in saved["metrics"]] == ["stoi", "estoi", "wer"]
    assert len(saved["metrics"][1]["runs_b"]) == 3
    res = CliRunner().invoke(app, ["compare", "--a", str(a[0]), "--b", str(tmp_path / "nothing")])
    assert res.exit_code == 2 and "no per-clip scores" in res.output and "avtrain eval" in res.output
    scores = b[0] / "eval" / "test" / "mel" / "speech_per_clip.jsonl"
    torn = '{"key": "s1_c000"}\n{"stoi": 0.4, "est'  # a file cut mid-row
    for damaged, message in (("", "no clips"), (torn, "line 2: not a per-clip row")):
        scores.write_text(damaged)
        res = CliRunner().invoke(app, ["compare", "--a", str(a[0]), "--b", str(b[0])], env={"COLUMNS": "200"})
        assert res.exit_code == 2 and message in res.output and len(res.output.strip().splitlines()) == 1, res.output
