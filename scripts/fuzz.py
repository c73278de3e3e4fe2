"""The long form of the fuzz tests, printing the tables of docs/reliability.md.

    PYTHONPATH=. python scripts/fuzz.py shards --per-class 60 --seed 0
    PYTHONPATH=. python scripts/fuzz.py videos --count 400 --seed 0

``shards``: real GRID samples made by the real pipeline, mutated per class (tests/fuzzing.py), through
``decode_sample``, the training data module (``data.on_bad_sample: skip``) and ``avprep inspect``.
``videos``: mutated copies of real GRID clips through ``avprep grid`` (a subprocess, as a user runs it).
GRID is read from ../shared/data/grid beside the checkout, or --grid.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import fuzzing  # noqa: E402


def shards(grid: Path, per_class: int, seed: int) -> None:
    from avbridge.sample import SampleError, decode_sample
    from avprep.inspect import check_shards
    from avtrain.config import validate_recipe
    from avtrain.data import build_loader

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folders = fuzzing.make_grid_shards(tmp / "made", grid)
        words, tower = (fuzzing.read_samples(folders[k]) for k in ("words", "tower"))
        pool = words + tower
        count = per_class * len(fuzzing.SHARD_MUTATIONS)
        rows, peaks, fields = [], Counter(), {}
        t0 = time.process_time()
        fuzzed = list(fuzzing.fuzz_samples(pool, count, seed))
        for cls, member, raw in fuzzed:
            outcome, detail, peak = fuzzing.decode_outcome(raw)
            rows.append((cls, outcome, detail))
            peaks[cls] = max(peaks[cls], peak)
            if outcome == "error":
                fields.setdefault(cls, Counter())[detail.split(": ")[1]] += 1
        cpu = time.process_time() - t0
        print(f"## decode_sample: {count} inputs (seed {seed}), {cpu:.1f} s CPU\n")
        print("| mutation | tried | error (named key + field) | decoded | crash | hang | peak traced MiB "
              "| fields named |")
        print("|---|---|---|---|---|---|---|---|")
        for cls, c in fuzzing.shard_table(rows).items():
            named = ", ".join(f"{f} {n}" for f, n in fields.get(cls, Counter()).most_common(4))
            print(f"| {cls} | {sum(c.values())} | {c['error']} | {c['decoded']} | {c['crash']} | {c['hang']} | "
                  f"{peaks[cls] / 2**20:.1f} | {named} |")
        crashes = [(cls, d) for cls, o, d in rows if o in ("crash", "hang")]
        for cls, d in crashes[:10]:
            print(f"\n{cls}: {d}")

        # the data module: the words pool (a lip-reading recipe reads mouth.mp4, mel.npy, json)
        wf = [raw for cls, _, raw in fuzzing.fuzz_samples(words, count, seed + 1)]
        samples = words + wf
        data = tmp / "data"
        fuzzing.write_tar(data / "train-000000.tar", samples[::2])
        fuzzing.write_tar(data / "train-000001.tar", samples[1::2])
        recipe = validate_recipe({"output_dir": "unused", "data": {
            "shards": str(data), "batch_size": 8, "shuffle_buffer": 1, "on_bad_sample": "skip", "num_workers": 2},
            "model_conf": {"num_classes": 51}, "augment_conf": {"crop": 88}})
        kept, skipped = 0, Counter()
        t0 = time.time()
        for batch in build_loader(recipe, "train", train=True):
            kept += len(batch["keys"])
            skipped.update(f for _, f, _ in batch["skipped"])
        print(f"\n## data module (on_bad_sample: skip, 2 workers): {len(samples)} samples ({len(words)} originals, "
              f"{len(wf)} mutated, seed {seed + 1}), {time.time() - t0:.1f} s wall\n")
        print(f"kept {kept}, skipped {sum(skipped.values())} (by field: "
              f"{', '.join(f'{f} {n}' for f, n in skipped.most_common())}), lost "
              f"{len(samples) - kept - sum(skipped.values())}")

        # avprep inspect over all of them
        insp = tmp / "inspect"
        allf = pool + [raw for _, _, raw in fuzzed]
        fuzzing.write_tar(insp / "train-000000.tar", allf[: len(allf) // 2])
        fuzzing.write_tar(insp / "train-000001.tar", allf[len(allf) // 2:])
        report = check_shards(insp)
        flagged = {e.split(".")[0] for e in report.errors}
        bad = set()
        for raw in allf:
            try:
                decode_sample(raw)
            except SampleError:
                bad.add(raw["__key__"])
        print(f"\n## avprep inspect: {len(allf)} samples in 2 shards\n")
        print(f"samples counted {sum(report.samples.values())}, flagged {len(flagged)} (decode_sample refuses "
              f"{len(bad)}; same set: {flagged == bad}), shards unreadable "
              f"{sum('cannot be read' in e for e in report.errors)}")


SOURCES = ["s1/video/bbaf2n.mkv", "s1/video/lrae3s.mkv", "s1/video/pgwr6p.mkv", "s2/video/swwp2s.mpg",
           "s23/video/priazn.mpg"]


def videos(grid: Path, count: int, seed: int, jobs: int) -> None:
    from avprep.inspect import check_shards

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        classes = fuzzing.fuzz_videos([grid / s for s in SOURCES], count, seed, tmp / "grid")
        cmd = [sys.executable, "-m", "avprep", "grid", "--root", str(tmp / "grid"), "--speakers", "s1", "--out",
               str(tmp / "out"), "--no-progress", "--split-scheme", "none", "--jobs", str(jobs)]
        t0 = time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
        wall = time.time() - t0
        table, lost = fuzzing.run_outcomes(tmp / "out", classes)
        report = check_shards(tmp / "out")
        reasons = sorted({o for c in table.values() for o in c if o != "kept"})
        print(f"## avprep grid: {count} damaged clips (seed {seed}) from {len(SOURCES)} real GRID clips, exit "
              f"{proc.returncode}, {wall:.0f} s wall (--jobs {jobs})\n")
        print("| damage | tried | kept | " + " | ".join(r.removeprefix("rejected: ") for r in reasons) + " |")
        print("|---|---|---|" + "---|" * len(reasons))
        for cls, c in table.items():
            print(f"| {cls} | {sum(c.values())} | {c['kept']} | " + " | ".join(str(c[r]) for r in reasons) + " |")
        total = Counter()
        for c in table.values():
            total.update(c)
        print(f"| all | {count} | {total['kept']} | " + " | ".join(str(total[r]) for r in reasons) + " |")
        print(f"\nlost (neither sample nor rejection): {len(lost)}; written samples {sum(report.samples.values())}, "
              f"inspect errors (audio/video/feature lengths disagree, undecodable): {len(report.errors)}")
        if proc.returncode:
            print(proc.stderr[-2000:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["shards", "videos"])
    ap.add_argument("--grid", type=Path, default=REPO.parent / "shared" / "data" / "grid")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--per-class", type=int, default=60, help="shards: inputs per mutation class")
    ap.add_argument("--count", type=int, default=400, help="videos: damaged clips")
    ap.add_argument("--jobs", type=int, default=1, help="videos: avprep grid --jobs")
    a = ap.parse_args()
    if a.what == "shards":
        shards(a.grid, a.per_class, a.seed)
    else:
        videos(a.grid, a.count, a.seed, a.jobs)


if __name__ == "__main__":
    main()
