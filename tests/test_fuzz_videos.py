"""Videos cannot stop a run: seeded damage to real GRID clips (truncation, overwritten and zeroed byte runs, damaged
container headers and structure, dropped or repeated chunks, bit flips, near-empty files) through `avprep grid`.
Every input ends as a sample or a named rejection, the run finishes and resumes, and no written sample has audio and
video of disagreeing lengths. The long form (hundreds of inputs): scripts/fuzz.py videos (docs/reliability.md)."""

from __future__ import annotations

from typer.testing import CliRunner

import fuzzing
from avprep.cli import app
from avprep.inspect import check_shards

SEED, PER_CLASS = 0, 3
SOURCES = ["s1/video/bbaf2n.mkv", "s1/video/lrae3s.mkv", "s1/video/pgwr6p.mkv", "s2/video/swwp2s.mpg",
           "s23/video/priazn.mpg"]


def test_damaged_videos_end_as_samples_or_named_rejections(grid_root, tmp_path):
    sources = [grid_root / s for s in SOURCES]
    count = PER_CLASS * len(fuzzing.VIDEO_MUTATIONS)
    classes = fuzzing.fuzz_videos(sources, count, SEED, tmp_path / "grid")
    args = ["grid", "--root", str(tmp_path / "grid"), "--speakers", "s1", "--out", str(tmp_path / "out"),
            "--no-progress", "--split-scheme", "none"]
    with fuzzing.deadline(600):
        res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    table, lost = fuzzing.run_outcomes(tmp_path / "out", classes)
    assert lost == [] and sum(sum(c.values()) for c in table.values()) == count
    outcomes = {o for c in table.values() for o in c}
    assert "kept" in outcomes and any(o.startswith("rejected: ") for o in outcomes)
    assert not [o for o in outcomes if "internal" in o], table  # a crash inside the pipeline is a defect
    report = check_shards(tmp_path / "out")  # audio, video and features agree in length in every written sample
    assert report.errors == [] and sum(report.samples.values()) == sum(c["kept"] for c in table.values())
    # a re-run resumes: nothing redone, nothing duplicated
    with fuzzing.deadline(300):
        again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and check_shards(tmp_path / "out").duplicates == 0
    assert fuzzing.run_outcomes(tmp_path / "out", classes) == (table, [])
